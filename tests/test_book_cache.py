"""book/conftest.py: make test runs every chapter once (nbval), the book build reads its outputs."""

import importlib.util
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("book_conftest", ROOT / "book" / "conftest.py")
book_conftest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(book_conftest)


def _notebook(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"),
                                         nbformat.v4.new_code_cell("print(1)"),
                                         nbformat.v4.new_code_cell("2")])
    path = tmp_path / "c.ipynb"
    nbformat.write(nb, path)
    return path


def test_outputs_go_into_the_code_cells_in_order(tmp_path):
    path = _notebook(tmp_path)
    outs = {0: [dict(output_type="stream", name="stdout", text="1\n")],
            1: [dict(output_type="execute_result", data={"text/plain": "2"}, metadata={},
                     execution_count=7)]}
    nb = book_conftest.executed_notebook(path, outs)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].outputs[0].text == "1\n" and code[1].outputs[0].data["text/plain"] == "2"
    assert [c.execution_count for c in code] == [1, 2]
    assert code[1].outputs[0].execution_count == 2


def test_a_chapter_that_did_not_run_to_its_end_is_not_cached(tmp_path):
    path = _notebook(tmp_path)
    assert book_conftest.executed_notebook(path, {0: []}) is None


def test_the_test_config_reads_the_cache_and_finds_the_extensions(tmp_path):
    out = tmp_path / "config.yml"
    book_conftest.write_test_config(out, tmp_path / "cache", ROOT / "_config.yml")
    config = yaml.safe_load(out.read_text())
    base = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert base["execute"]["execute_notebooks"] == "force"  # make run never reads the cache
    assert config["execute"]["execute_notebooks"] == "cache"
    assert config["execute"]["cache"] == str((tmp_path / "cache").resolve())
    for folder in config["sphinx"]["local_extensions"].values():
        assert Path(folder).is_absolute() and Path(folder).is_dir()
