"""The validation split chooses best.pt: on a data set without one of its own (a RAF-DB copy,
val carved from train) through the per-image pipeline, and when a run from before the
validation split is resumed."""

import json

import torch

from tests.data.conftest import write_rafdb
from transfer_lib.data.base import VAL_CARVED
from transfer_lib.train import train
from transfer_lib.weights.checkpoint import load_checkpoint, save_atomic

SMOKE = dict(profile="smoke", progress=False, max_steps=1)


def test_carved_val_chooses_best_pt_on_a_rafdb_copy(tmp_path):
    root = write_rafdb(tmp_path / "RAF-DB", n_train=70, n_test=7)  # 10 images a class
    out = tmp_path / "run"
    summary = train(out=str(out), data=str(root), fast=False, epochs=1, **SMOKE)
    assert summary["pipeline"] == "per-image"
    assert summary["val_source"] == VAL_CARVED and summary["best_selected_on"] == "validation"
    # one image of each class carved from train; train is the rest, test untouched
    assert summary["split_sizes"] == {"train": 63, "val": 7, "test": 7}
    assert json.loads((out / "config.json").read_text())["val_source"] == VAL_CARVED
    line = json.loads((out / "metrics.jsonl").read_text())
    assert line["val_accuracy"] == summary["best_val_accuracy"]
    assert line["test_accuracy"] == summary["best_accuracy"] == summary["final_accuracy"]
    best = load_checkpoint(out / "best.pt")
    assert best["val_source"] == VAL_CARVED and best["selected_on"] == "validation"
    assert int(torch.tensor(summary["confusion_matrix"]).sum()) == 7  # the final figure: test


def test_resuming_a_run_from_before_val_chooses_best_pt_again(tmp_path, capsys):
    out = tmp_path / "run"
    train(out=str(out), epochs=1, **SMOKE)
    last = load_checkpoint(out / "last.pt")
    del last["best_selected_on"]
    last["best_accuracy"] = 2.0  # a test accuracy no validation accuracy could beat
    save_atomic(last, out / "last.pt")
    line = json.loads((out / "metrics.jsonl").read_text())  # an old run's line: no val figures
    del line["val_accuracy"], line["val_mean_class_accuracy"]
    (out / "metrics.jsonl").write_text(json.dumps(line) + "\n")
    capsys.readouterr()
    summary = train(out=str(out), epochs=2, resume=True, new_recipe=True, **SMOKE)
    assert "written before best.pt was chosen on the validation split" in capsys.readouterr().err
    assert load_checkpoint(out / "best.pt")["epoch"] == summary["best_epoch"] == 2
    assert load_checkpoint(out / "last.pt")["best_selected_on"] == "validation"


def test_a_best_pt_from_before_val_is_described_as_chosen_on_test(tmp_path):
    from transfer_lib.train import BEST_SELECTED_ON_TEST
    from transfer_lib.weights.checkpoint import describe_checkpoint

    summary = {"complete": True, "best_accuracy": 0.8, "best_epoch": 3, "final_accuracy": 0.7,
               "final_epoch": 4, "best_selected_on": BEST_SELECTED_ON_TEST}  # an old summary
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    info = describe_checkpoint(tmp_path / "best.pt", {"epoch": 3, "accuracy": 0.8})
    assert info["kind"] == "best" and info["selected_on"] == "test"
    assert "highest test accuracy (80.00 %)" in info["note"] and "optimistic" in info["note"]
    assert "best 80.00 % (epoch 3), final 70.00 %" in info["note"]
    new = {"epoch": 3, "accuracy": 0.8, "val_accuracy": 0.75, "selected_on": "validation",
           "val_source": "file"}
    summary.update(best_selected_on="validation", best_val_accuracy=0.75)
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    info = describe_checkpoint(tmp_path / "best.pt", new)
    assert info["selected_on"] == "validation" and info["run_best_val_accuracy"] == 0.75
    assert "highest validation accuracy (75.00 %; val: the data set's own validation list)" \
        in info["note"]
    assert "best.pt (epoch 3) test 80.00 % (validation 75.00 %), final 70.00 %" in info["note"]
