"""Every module path and dotted name that the README, the book and the notes name exists.

The package was laid out anew once (top-level modules moved into ``cli/``, ``weights/``,
``book/``, ...); a reader who types ``python -m transfer_lib.book.suite`` or opens
``transfer_lib/train/profiles.py`` from a page must find it. Results files under
``book/results/`` are records of their day and are not scanned.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "book" / "results.md", ROOT / "data" / "README.md",
        ROOT / "Makefile", ROOT / "book" / "README.md", *sorted((ROOT / "book" / "src").glob("*.py")),
        *sorted((ROOT / "benchmarks").glob("*.py")), *sorted((ROOT / "transfer_lib").rglob("*.py"))]
PATH_RE = re.compile(r"transfer_lib/[\w/]+\.py")
DOTTED_RE = re.compile(r"(?<![\w/.])transfer_lib(?:\.\w+)+")
FROM_RE = re.compile(r"from (transfer_lib[\w.]*) import ([\w, ]+)")


def _resolve(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_readme_is_a_guide_of_at_most_200_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_paths_and_modules_exist(doc):
    text = doc.read_text()
    missing = [p for p in sorted(set(PATH_RE.findall(text))) if not (ROOT / p).is_file()]
    named = set(DOTTED_RE.findall(text)) | {f"{module}.{name.split(' as ')[0].strip()}"
                                            for module, names in FROM_RE.findall(text)
                                            for name in names.split(",") if name.strip()}
    unresolved = [d for d in sorted(named) if not _resolve(d)]
    assert not missing and not unresolved, f"{doc.name}: no such file {missing}, no such name " \
                                           f"{unresolved}"


def test_the_check_would_see_a_moved_module():
    assert not _resolve("transfer_lib.profiles.project_root")
    assert _resolve("transfer_lib.train.profiles.project_root")
    assert not _resolve("transfer_lib.data.faces.no_such_function")
