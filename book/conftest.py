"""pytest hooks for the chapters under nbval: run every chapter once in ``make test``.

``make test`` executes every chapter under nbval, then builds the book. Without these hooks
the build executes every chapter a second time. With ``TRANSFER_NB_CACHE=DIR`` set, each chapter
whose code cells all ran and passed is written, with the outputs nbval received from its kernel,
into the jupyter-cache at DIR; the test build's configuration (``python book/conftest.py
CONFIG DIR`` writes it from ``_config.yml``) reads that cache (``execute_notebooks: cache``).
The cache matches a chapter by its code, so a chapter that changed, failed or was not run
has no entry and the build executes it itself. ``make run`` keeps ``_config.yml``'s
``force``: it never reads this cache.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

CACHE_ENV = "TRANSFER_NB_CACHE"

#: notebook path -> {cell number: outputs}; a notebook with a failed cell maps to None
_RUNS: dict[Path, dict[int, list] | None] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if type(item).__name__ != "IPyNbCell" or not os.environ.get(CACHE_ENV):
        return
    path = Path(str(item.parent.fspath)).resolve()
    cells = _RUNS.setdefault(path, {})
    if cells is None:
        return
    if report.failed or report.skipped:
        _RUNS[path] = None
    elif report.when == "call":
        cells[item.cell_num] = list(item.test_outputs or [])


def executed_notebook(path: Path, outputs: dict[int, list]):
    """The notebook at ``path`` with ``outputs`` in its code cells, or None where a code cell
    has none recorded (the chapter did not run to its end)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    if sorted(outputs) != list(range(len(code))):
        return None
    for number, cell in enumerate(code):
        cell.outputs = [nbformat.from_dict(dict(out)) for out in outputs[number]]
        cell.execution_count = number + 1
        for out in cell.outputs:
            if out.output_type == "execute_result":
                out.execution_count = number + 1
    nbformat.validate(nb)
    return nb


def pytest_sessionfinish(session):
    folder = os.environ.get(CACHE_ENV)
    if not folder or not _RUNS:
        return
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(folder)
    for path, outputs in _RUNS.items():
        nb = executed_notebook(path, outputs) if outputs is not None else None
        if nb is not None:
            cache.cache_notebook_bundle(CacheBundleIn(nb, str(path)), check_validity=False,
                                        overwrite=True)


def write_test_config(config_out: str | Path, cache: str | Path,
                      source: str | Path = "_config.yml") -> None:
    """``_config.yml`` with the build reading the chapters from ``cache``."""
    import yaml

    source = Path(source).resolve()
    config = yaml.safe_load(source.read_text())
    config.setdefault("execute", {}).update(execute_notebooks="cache",
                                            cache=str(Path(cache).resolve()))
    # jupyter-book takes the extensions' folders relative to the configuration file
    extensions = config.get("sphinx", {}).get("local_extensions") or {}
    for name, folder in extensions.items():
        extensions[name] = str(source.parent / folder)
    Path(config_out).parent.mkdir(parents=True, exist_ok=True)
    Path(config_out).write_text(yaml.safe_dump(config, sort_keys=False))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python book/conftest.py CONFIG_OUT CACHE_DIR")
    write_test_config(sys.argv[1], sys.argv[2])
