"""The package's layout by audience holds: the library at the top, the book's helpers in
``book/``, benchmarks in ``bench/``; the library never leans on the book's helpers."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "transfer_lib"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return {n for n in names if n.startswith("transfer_lib")}


def test_at_most_14_top_level_entries():
    entries = [p.name for p in PKG.iterdir() if p.name != "__pycache__"]
    assert len(entries) <= 14, sorted(entries)


def test_the_library_does_not_import_the_books_helpers_or_the_benchmarks():
    library = [p for p in PKG.rglob("*.py")
               if p.relative_to(PKG).parts[0] not in ("book", "bench", "cli")]
    leaning = {str(p.relative_to(PKG)): sorted(n for n in _imports(p)
                                                if n.startswith(("transfer_lib.book",
                                                                 "transfer_lib.bench")))
               for p in library}
    assert not {k: v for k, v in leaning.items() if v}


def test_utils_stand_alone():
    for path in (PKG / "utils").glob("*.py"):
        outside = {n for n in _imports(path) if not n.startswith("transfer_lib.utils")}
        assert not outside, (path.name, outside)
