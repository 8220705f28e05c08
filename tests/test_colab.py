"""The Colab path, proven: what the setup cell does on Colab, done here.

A fresh virtual environment stands in for a Colab runtime: it sees torch, torchvision and
ipykernel (Colab has them before any cell runs) and nothing else of this checkout's environment.
A kernel in it executes chapter 1 and chapter 6 (the chapter that trains) at the smoke profile
with ``COLAB_RELEASE_TAG`` set, so their setup cell runs its Colab branch as written: it clones
the repository (a git copy of this checkout stands in for the published one), pip-installs it
with the extras the cell names, and mounts Drive through a stub of ``google.colab.drive``.
Then every module any chapter imports must import in that environment, so a package missing from
the extras fails here and not on a reader's Colab.

Needs pip to reach a package index (as on Colab); about two minutes on 2 cores, most of it pip.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import json
import os
import re
import shutil
import subprocess
import venv
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = ("01_preface", "06_transfer")  # the first chapter and the one that trains
INHERITED = ("torch", "torchvision", "ipykernel")  # what a Colab runtime has before the cell

DRIVE_STUB = '''\
import os


def mount(mountpoint, **kwargs):
    """Stands in for Colab's Drive: an empty MyDrive, and a line in $DRIVE_STUB_LOG."""
    os.makedirs(os.path.join(mountpoint, "MyDrive"), exist_ok=True)
    with open(os.environ["DRIVE_STUB_LOG"], "a") as log:
        log.write(mountpoint + "\\n")
'''


def _make_notebooks():
    spec = importlib.util.spec_from_file_location("make_notebooks", BOOK / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _closure(names: tuple[str, ...]) -> list[md.Distribution]:
    """The installed distributions ``names`` need, with what they need, recursively (following
    the extras a requirement asks for: torch's CUDA libraries come through cuda-toolkit's)."""
    seen: dict[str, md.Distribution] = {}
    done: set[tuple[str, str]] = set()
    todo = [(n, "") for n in names]
    while todo:
        name, extra = todo.pop()
        name = re.sub(r"[-_.]+", "-", name).lower()
        if (name, extra) in done:
            continue
        done.add((name, extra))
        try:
            dist = seen.get(name) or md.distribution(name)
        except md.PackageNotFoundError:
            continue  # an optional or platform-specific requirement not installed here
        seen[name] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": extra}):
                todo += [(req.name, "")] + [(req.name, e) for e in req.extras]
    return list(seen.values())


def _runtime_like_colab(where: Path) -> Path:
    """A virtual environment seeing only :data:`INHERITED` (and what they need) from this one,
    through a ``.pth`` file pointing at a folder of links; returns its python."""
    venv.EnvBuilder(with_pip=True, symlinks=True).create(where / "venv")
    python = where / "venv" / "bin" / "python"
    site = Path(subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    shared = where / "inherited"  # outside the venv: pip will not uninstall from it
    shared.mkdir()
    for dist in _closure(INHERITED):
        base = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or []}:
            if top not in ("..", "__pycache__") and not (shared / top).exists() \
                    and (base / top).exists():
                (shared / top).symlink_to(base / top)
    (site / "inherited.pth").write_text(f"{shared}\n")
    return python


def _repository_copy(where: Path) -> Path:
    """A git repository holding this checkout's files as they are now (committed or not, but
    not ignored), for the setup cell to clone in place of the published one."""
    repo = where / "repository"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if src.is_file() and not src.is_symlink():  # data/ links to shared data sets: not code
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "-c",
           "init.defaultBranch=main"]
    for args in (["init", "--quiet"], ["add", "-A"], ["commit", "--quiet", "-m", "snapshot"]):
        subprocess.run(git + args, cwd=repo, check=True)
    return repo


def _chapter_imports() -> set[str]:
    """Top-level modules imported by any chapter's code."""
    names = set()
    for path in sorted(BOOK.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            tree = ast.parse(cell.source)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names - {"google"}  # google.colab exists on Colab only


@pytest.mark.slow
def test_chapters_run_as_on_colab(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    python = _runtime_like_colab(tmp_path)
    repository = _repository_copy(tmp_path)
    stub = tmp_path / "stub" / "google" / "colab"  # google is a namespace package
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("")
    (stub / "drive.py").write_text(DRIVE_STUB)
    kernels = tmp_path / "jupyter" / "kernels" / "colab"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "colab-like", "language": "python"}))
    content = tmp_path / "content"  # Colab's working directory
    content.mkdir()
    log = tmp_path / "drive.log"
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab-test")
    monkeypatch.setenv("TRANSFER_PROFILE", "smoke")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "stub"))  # not this checkout
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("DRIVE_STUB_LOG", str(log))
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("PIP_COMPILE", "0")  # no .pyc for what pip installs: saves CPU time
    monkeypatch.delenv("TRANSFER_RAFDB", raising=False)

    make = _make_notebooks()
    url = make.repository_url()
    mounts = []
    for chapter in CHAPTERS:
        nb = nbformat.read(BOOK / f"{chapter}.ipynb", as_version=4)
        setup = next(c for c in nb.cells if "setup" in c.metadata.get("tags", []))
        assert setup.source == make.setup_source(url, drive=make.needs_drive(chapter))
        # the cell as it is, cloning this checkout instead of the published repository
        assert setup.source.count(f'REPOSITORY = "{url}"') == 1
        setup.source = setup.source.replace(f'REPOSITORY = "{url}"',
                                            f'REPOSITORY = "{repository.as_uri()}"')
        NotebookClient(nb, kernel_name="colab", timeout=600,
                       resources={"metadata": {"path": str(content)}}).execute()
        mounts.append(log.read_text().count("\n") if log.exists() else 0)

    # Drive asks for authorisation: mounted by the chapter that can use RAF-DB, not by chapter 1
    assert mounts == [0, 1]
    installed = subprocess.run([python, "-c", "import transfer_lib; print(transfer_lib.__file__)"],
                               capture_output=True, text=True, cwd=tmp_path,
                               env={**os.environ, "PYTHONPATH": ""})
    assert installed.returncode == 0 and "site-packages" in installed.stdout, installed.stderr
    clone = content / "transfer-book"  # chapters run inside the clone: runs/ lands there
    assert (clone / "runs" / "book" / "smoke" / "transfer" / "summary.json").is_file()
    modules = sorted(_chapter_imports())
    check = subprocess.run([python, "-c", "import importlib.util, sys\n"
                            "missing = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]\n"
                            "print(' '.join(missing))"] + modules,
                           capture_output=True, text=True, cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": ""})
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == [], f"chapters import modules the cell does not install: {check.stdout}"
