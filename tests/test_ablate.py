import json

import pytest

from transfer_lib.ablate import ROWS, ablate, markdown_table
from transfer_lib.cli import main
from transfer_lib.errors import TransferError


def test_rows_cover_the_paper_and_the_comparisons():
    assert {"vit_fer", "local", "local_mad", "transfer", "transfer_token", "local_dropout",
            "local_dropblock", "local_spatial"} == set(ROWS)
    assert ROWS["local_dropblock"].variant == "local_mad"


def test_ablate_smoke_then_skip(tmp_path, monkeypatch, capsys):
    out = tmp_path / "abl"
    rc = main(["ablate", "--profile", "smoke", "--seeds", "2", "--rows", "vit_fer,transfer_token",
               "--epochs", "1", "--max-steps", "1", "--out", str(out), "--no-progress"])
    assert rc == 0
    result = json.loads((out / "ablation.json").read_text())
    assert [r["row"] for r in result["rows"]] == ["vit_fer", "transfer_token"]
    for r in result["rows"]:
        assert len(r["accuracy"]) == 2 and r["accuracy_std"] is not None
        assert r["paper_accuracy"] is None  # synthetic data: no paper figure
    assert result["rows"][1]["msad_mode"] == "token"
    assert (out / "transfer_token" / "seed1" / "summary.json").is_file()
    md = (out / "ablation.md").read_text()
    assert "| `vit_fer` |" in md and "90.91" in md and "not reproduced" in md

    def boom(*a, **k):
        raise AssertionError("a complete run was trained again")

    monkeypatch.setattr("transfer_lib.train.train", boom)
    again = ablate("smoke", 2, ["vit_fer", "transfer_token"], out, progress=False,
                   epochs=1, max_steps=1)
    assert again["rows"] == result["rows"]
    # another recipe in the same folder is refused, not silently answered with the old runs
    with pytest.raises(TransferError, match="another recipe"):
        ablate("smoke", 2, ["vit_fer"], out, progress=False, epochs=2, max_steps=1)


def test_paper_figure_only_on_real_rafdb():
    row = {"row": "transfer", "description": "d", "accuracy_mean": 1.0, "accuracy_std": 0.0,
           "mean_class_accuracy_mean": 1.0, "mean_class_accuracy_std": 0.0, "paper_accuracy": 90.91}
    md = markdown_table({"profile": "paper", "data": "data/RAF-DB", "dataset": "rafdb",
                         "seeds": 1, "rows": [row]})
    assert "| 90.91 |" in md


@pytest.mark.parametrize("argv, words", [
    (["--rows", "vit_fer,bogus"], ["bogus", "local_mad", "transfer_token"]),
    (["--seeds", "0"], ["--seeds 0"]),
])
def test_bad_ablate_arguments(argv, words, tmp_path, capsys):
    assert main(["ablate", "--profile", "smoke", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err
