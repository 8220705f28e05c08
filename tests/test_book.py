"""The book's notebooks: committed clean, one setup cell everywhere, listed in the toc, asserting.

Executing the chapters is CI's job (``TRANSFER_PROFILE=smoke pytest --nbval-lax book/`` and the
Jupyter Book build); these checks are static and take well under a second.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))


def _make_notebooks():
    spec = importlib.util.spec_from_file_location("make_notebooks", BOOK / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _setup_cells(nb):
    return [c for c in nb.cells if "setup" in c.get("metadata", {}).get("tags", [])]


def test_the_chapters_are_numbered_without_gaps():
    """Nine chapters and three appendices (10: engineering, 11: the claims ledger, 12: how the
    results were made)."""
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, 13)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs"
            assert cell.execution_count is None, f"{path.name}: a cell has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_starts_with_a_title_and_the_setup_cell(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert _setup_cells(nb) == [first_code], f"{path.name}: the first code cell must be the setup cell"


def test_setup_cells_are_identical_and_carry_the_repository_url():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    make = _make_notebooks()
    sources = {p.stem: _setup_cells(nbformat.read(p, as_version=4))[0].source for p in NOTEBOOKS}
    for stem, source in sources.items():  # the same cell, but for whether it mounts Drive
        assert source == make.setup_source(url, drive=make.needs_drive(stem)), stem
        assert f'REPOSITORY = "{url}"' in source
        assert "google.colab" in source and "TRANSFER_RAFDB" in source
        assert '".[chapters]"' in source and "REPOSITORY" in source.split("git")[-1]
    assert len(set(sources.values())) == 2
    # Drive asks for authorisation on every mount: only chapters that can use RAF-DB or weights
    assert not make.needs_drive("01_preface") and make.needs_drive("06_transfer")


def test_url_is_written_only_in_the_config():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    for path in [*BOOK.glob("src/*.py"), BOOK / "make_notebooks.py", BOOK / "intro.md"]:
        assert url not in path.read_text(), f"{path.relative_to(ROOT)} restates the repository URL"


def test_toc_lists_exactly_the_notebooks():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    listed = {f for f in files if (ROOT / f"{f}.ipynb").exists()}
    assert sorted(listed) == [f"book/{p.stem}" for p in NOTEBOOKS]
    others = [f for f in files if f not in listed] + [toc["root"]]
    assert all((ROOT / f"{f}.md").exists() for f in others), others


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_chapter_asserts(path):
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "\nassert " in f"\n{code}" or "\n    assert " in code, f"{path.name} asserts nothing"


def test_notebooks_match_their_sources():
    """Regenerating (``python book/make_notebooks.py``) reproduces every committed notebook."""
    stale = [p.name for p, text in _make_notebooks().expected_notebooks().items()
             if not p.exists() or p.read_text() != text]
    assert not stale, f"run `python book/make_notebooks.py`: stale {stale}"


def test_book_config_executes_and_fails_on_errors():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["only_build_toc_files"] is True
    assert config["execute"]["execute_notebooks"] in ("force", "cache")
    assert config["execute"]["allow_errors"] is False
    assert config["execute"]["timeout"] > 0
    assert config["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")
    assert "book/references.bib" in config["bibtex_bibfiles"]
    excluded = " ".join(config["exclude_patterns"])
    for folder in (".venv", "_build", "data", "runs", "benchmarks"):
        assert folder in excluded
