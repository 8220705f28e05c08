"""Write the book's notebooks and stamp the same setup cell into every chapter.

    .venv/bin/python book/make_notebooks.py           # regenerate and restamp
    .venv/bin/python book/make_notebooks.py --check   # exit 1 if anything would change

Two kinds of chapter live in ``book/``:

* chapters with a source in ``book/src/NN_name.py`` (percent format: ``# %%`` starts a code
  cell, ``# %% [markdown]`` a markdown cell whose lines drop their leading ``# ``, and
  ``# %% [setup]`` marks where the setup cell goes) are written from that source, so that
  regenerating reproduces the committed ``.ipynb`` exactly;
* chapters without one (edited as notebooks) keep their cells; only their setup cell (the
  first cell tagged ``setup``) is replaced and their outputs are cleared.

The setup cell carries the repository URL read from ``_config.yml`` (``repository.url``), the
one place it is written down, and mounts Google Drive only in chapters not listed in
``WITHOUT_DRIVE``. A code cell takes tags from its header, ``# %% tags=["hide-input"]``: the
book then folds its source behind a toggle (plotting and bookkeeping cells).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
SOURCES = BOOK / "src"
SETUP_TAG = "setup"

SETUP_TEMPLATE = '''\
# Setup: the same cell opens every chapter. On Colab it fetches the book's repository (the
# library and the results the chapters read), installs it with everything the chapters import
# (the [chapters] extra) and, where the chapter can use RAF-DB or pretrained weights, mounts
# Google Drive to look for them; anywhere else it does nothing.
import os
import sys

REPOSITORY = "{url}"
MOUNT_DRIVE = {drive}  # Colab only: {drive_why}
if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
    import subprocess

    if not os.path.isfile("pyproject.toml"):  # work inside a clone of the repository
        if not os.path.isdir("transfer-book"):
            subprocess.run(["git", "clone", "--quiet", "--depth", "1", REPOSITORY,
                            "transfer-book"], check=True)
        os.chdir("transfer-book")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", ".[chapters]"], check=True)
    if MOUNT_DRIVE:
        from google.colab import drive

        drive.mount("/content/drive")
        if os.path.isdir("/content/drive/MyDrive/RAF-DB"):
            os.environ.setdefault("TRANSFER_RAFDB", "/content/drive/MyDrive/RAF-DB")
# Before torch loads: transfer_lib pins PyTorch's CPU kernels (AVX2, 2 threads), so a seed gives
# the same numbers on every x86 CPU; TRANSFER_NATIVE=1 keeps the CPU's own, faster kernels.
import transfer_lib  # noqa: E402,F401'''

# Chapters that use neither RAF-DB nor a pretrained file: their setup cell does not mount Drive,
# which asks the reader for authorisation every time.
WITHOUT_DRIVE = ("01_preface", "04_local_cnn", "12_how_results_were_made")
DRIVE_WHY = {
    True: "RAF-DB and weights are looked for in /content/drive/MyDrive",
    False: "this chapter needs neither RAF-DB nor pretrained weights",
}

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python", "pygments_lexer": "ipython3"}


def repository_url(config: Path = ROOT / "_config.yml") -> str:
    """``repository.url`` from the book's ``_config.yml``."""
    return yaml.safe_load(config.read_text())["repository"]["url"]


def needs_drive(chapter: str) -> bool:
    """Whether the setup cell of ``chapter`` (a notebook's stem, e.g. ``06_transfer``) mounts Drive."""
    return chapter not in WITHOUT_DRIVE


def setup_source(url: str | None = None, drive: bool = True) -> str:
    """The source of the setup cell, with the repository URL filled in."""
    return SETUP_TEMPLATE.format(url=url or repository_url(), drive=drive, drive_why=DRIVE_WHY[drive])


def setup_cell(url: str | None = None, cell_id: str = "setup",
               drive: bool = True) -> nbformat.NotebookNode:
    # hide-input: the page shows a toggle instead of the Colab plumbing
    cell = nbformat.v4.new_code_cell(setup_source(url, drive),
                                     metadata={"tags": [SETUP_TAG, "hide-input"]})
    cell.id = cell_id
    return cell


def parse_percent(text: str) -> list[tuple[str, str, list[str]]]:
    """(kind, source, tags) of every cell of a percent-format file; kind is code, markdown or
    setup. ``# %% tags=["a", "b"]`` gives a code cell tags."""
    cells: list[tuple[str, list[str], list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            head = line[4:].strip()
            tags: list[str] = []
            if head.startswith("tags="):
                tags = yaml.safe_load(head[len("tags="):])
                head = ""
            kind = {"": "code", "[markdown]": "markdown", "[setup]": "setup"}[head]
            cells.append((kind, [], tags))
        elif cells:
            cells[-1][1].append(line)
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"text before the first cell: {line!r}")
    out = []
    for kind, lines, tags in cells:
        if kind == "markdown":
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
        src = "\n".join(lines).strip("\n")
        out.append((kind, src, tags))
    return out


def notebook_from_source(path: Path, url: str | None = None) -> nbformat.NotebookNode:
    """The notebook written from a percent-format source."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO})
    prefix = path.stem.split("_")[0]
    for i, (kind, src, tags) in enumerate(parse_percent(path.read_text())):
        cell_id = f"c{prefix}-{i:02d}"
        if kind == "setup":
            cell = setup_cell(url, cell_id, needs_drive(path.stem))
        elif kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(src)
        else:
            cell = nbformat.v4.new_code_cell(src, metadata={"tags": tags} if tags else {})
        cell.id = cell_id
        nb.cells.append(cell)
    return nb


def restamp(nb: nbformat.NotebookNode, url: str | None = None,
            drive: bool = True) -> nbformat.NotebookNode:
    """``nb`` with its setup cell replaced by the current one and every output cleared."""
    found = False
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if not found and SETUP_TAG in cell.get("metadata", {}).get("tags", []):
            nb.cells[i] = setup_cell(url, cell.get("id", "setup"), drive)
            found = True
    if not found:
        raise ValueError("no cell tagged 'setup'")
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    """The notebook as committed: nbformat's JSON with a final newline."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def expected_notebooks(url: str | None = None) -> dict[Path, str]:
    """What every notebook in book/ should contain, as text."""
    url = url or repository_url()
    out = {}
    for src in sorted(SOURCES.glob("[0-9][0-9]_*.py")):
        out[BOOK / f"{src.stem}.ipynb"] = render(notebook_from_source(src, url))
    for path in sorted(BOOK.glob("[0-9][0-9]_*.ipynb")):
        if path not in out:
            out[path] = render(restamp(nbformat.read(path, as_version=4), url, needs_drive(path.stem)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report what would change")
    args = parser.parse_args(argv)
    stale = []
    for path, text in expected_notebooks().items():
        if not path.exists() or path.read_text() != text:
            stale.append(path)
            if not args.check:
                path.write_text(text)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
