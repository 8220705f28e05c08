import json

import pytest
import torch
from torch import nn

from transfer_lib.cli import main
from transfer_lib.evaluate import evaluate, format_metrics, metrics_from_confusion
from transfer_lib.train import train
from transfer_lib.utils.errors import TransferError


def test_metrics_from_confusion():
    cm = torch.tensor([[8, 2, 0], [1, 1, 0], [0, 0, 0]])
    m = metrics_from_confusion(cm, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(9 / 12)
    assert m["per_class_accuracy"] == {"a": 0.8, "b": 0.5, "c": None}
    assert m["mean_class_accuracy"] == pytest.approx(0.65)
    assert m["confusion_matrix"] == cm.tolist() and m["num_samples"] == 12
    assert "mean class accuracy" in format_metrics(m)


def test_class_table_names_each_data_sets_own_labels():
    from transfer_lib.data.affectnet import AFFECTNET_CLASSES
    from transfer_lib.data.ferplus import FERPLUS_CLASSES
    from transfer_lib.data.labels import class_table, describe_class, label_kind
    from transfer_lib.models.config import RAFDB_CLASSES

    assert [r["dataset_label"] for r in class_table(RAFDB_CLASSES)] == [1, 2, 3, 4, 5, 6, 7]
    assert describe_class(RAFDB_CLASSES, 0) == "0 Surprise (RAF-DB label 1)"
    assert [r["dataset_label"] for r in class_table(AFFECTNET_CLASSES[:7])] == list(range(7))
    assert class_table(AFFECTNET_CLASSES)[7] == {"index": 7, "name": "Contempt",
                                                 "dataset_label": 7}
    assert label_kind(AFFECTNET_CLASSES) == "AffectNet expression"
    assert [r["dataset_label"] for r in class_table(FERPLUS_CLASSES)][:3] == [
        "neutral", "happiness", "surprise"]
    assert label_kind(FERPLUS_CLASSES) == "FERPlus column"
    # unknown classes (or a known set in another order) get no data-set label
    assert label_kind(RAFDB_CLASSES[::-1]) is None
    assert class_table(["a", "b"])[1] == {"index": 1, "name": "b", "dataset_label": None}
    m = metrics_from_confusion(torch.eye(7, dtype=torch.int64), FERPLUS_CLASSES[:7])
    assert m["dataset_label_kind"] is None  # FERPlus has 8 classes: 7 of them are no data set
    m = metrics_from_confusion(torch.eye(8, dtype=torch.int64), FERPLUS_CLASSES)
    text = format_metrics(m)
    assert "FERPlus column" in text
    assert next(line for line in text.splitlines() if " Contempt " in line).split()[:3] == [
        "7", "Contempt", "contempt"]


class Constant(nn.Module):
    def __init__(self, k, n=3):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.k, self.n = k, n

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.n)
        out[:, self.k] = 1 + x[:, 0, 0, 0] * 0
        return out + self.w


def test_evaluate_counts_and_flip():
    data = [(torch.zeros(4, 3, 2, 2), torch.tensor([0, 0, 1, 2]))]
    m = evaluate(Constant(0), data, class_names=["a", "b", "c"], tta="flip")
    assert m["accuracy"] == 0.5 and m["confusion_matrix"][1] == [1, 0, 0]
    assert m["mean_class_accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(TransferError, match="none, flip"):
        evaluate(Constant(0), data, class_names=["a", "b", "c"], tta="crop")
    with pytest.raises(TransferError, match="out of range"):
        evaluate(Constant(0), [(torch.zeros(1, 3, 2, 2), torch.tensor([5]))],
                 class_names=["a", "b", "c"])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ev") / "run"
    summary = train(profile="smoke", epochs=1, out=str(out), progress=False)
    return out / "best.pt", summary


def test_eval_cli_reproduces_the_training_figure(checkpoint, tmp_path, capsys):
    ckpt, summary = checkpoint
    from transfer_lib.train.profiles import PROFILES

    data = str(__import__("transfer_lib.data.synth", fromlist=["x"]).ensure_synthetic(
        PROFILES["smoke"].synthetic_root, train=48, test=21))
    js = tmp_path / "m.json"
    assert main(["eval", "--data", data, "--checkpoint", str(ckpt), "--json", str(js)]) == 0
    printed = capsys.readouterr().out
    m = json.loads(js.read_text())
    assert m["accuracy"] == pytest.approx(summary["final_accuracy"])
    assert m["confusion_matrix"] == summary["confusion_matrix"]
    assert "mean class accuracy" in printed and "Happiness" in printed
    # every class with its index and RAF-DB's own label number (the synthetic set uses RAF-DB's)
    assert m["classes"][3] == {"index": 3, "name": "Happiness", "dataset_label": 4}
    assert [c["dataset_label"] for c in m["classes"]] == list(range(1, 8))
    assert m["dataset_label_kind"] == "RAF-DB label" and "RAF-DB label" in printed
    row = next(line for line in printed.splitlines() if " Happiness " in line)
    assert row.split()[:3] == ["3", "Happiness", "4"]
    # which weights were scored: best.pt, picked on the validation split, with the run's best
    # (its test and validation accuracy) and final
    assert m["checkpoint"]["kind"] == "best" and m["checkpoint"]["epoch"] == 1
    assert m["checkpoint"]["selected_on"] == "validation"
    assert m["checkpoint"]["run_final_accuracy"] == summary["final_accuracy"]
    assert m["checkpoint"]["run_best_accuracy"] == summary["best_accuracy"]
    assert m["checkpoint"]["run_best_val_accuracy"] == summary["best_val_accuracy"]
    assert "highest validation accuracy" in printed and "never on the test split" in printed
    assert "highest test accuracy" not in printed
    assert "final" in m["checkpoint"]["note"]
    # --split val scores the split best.pt was chosen on: its figure is the run's
    assert main(["eval", "--data", data, "--checkpoint", str(ckpt), "--split", "val",
                 "--json", str(js)]) == 0
    capsys.readouterr()
    assert json.loads(js.read_text())["accuracy"] == pytest.approx(summary["best_val_accuracy"])
    assert main(["eval", "--data", data, "--checkpoint", str(ckpt), "--tta", "flip"]) == 0
    assert main(["eval", "--data", data, "--checkpoint", str(ckpt.parent / "last.pt"),
                 "--json", str(js)]) == 0
    assert json.loads(js.read_text())["checkpoint"]["kind"] == "last"


def test_eval_cli_errors(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path), "--checkpoint", str(tmp_path / "x.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["eval", "--data", str(tmp_path), "--official", str(tmp_path / "w.pdparams")]) == 2
    assert "--official file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["eval", "--data", str(tmp_path)])  # neither --checkpoint nor --official
    assert e.value.code == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_eval_cli_missing_data(checkpoint, tmp_path, capsys):
    ckpt, _ = checkpoint
    assert main(["eval", "--data", str(tmp_path / "none"), "--checkpoint", str(ckpt)]) == 2
    assert "data set folder not found" in capsys.readouterr().err


def test_eval_json_on_a_full_disk_keeps_the_old_report(checkpoint, tmp_path, capsys, monkeypatch):
    import errno

    import transfer_lib.utils.atomic as atomic
    from transfer_lib.train.profiles import PROFILES

    ckpt, _ = checkpoint
    data = str(__import__("transfer_lib.data.synth", fromlist=["x"]).ensure_synthetic(
        PROFILES["smoke"].synthetic_root, train=48, test=21))
    js = tmp_path / "m.json"
    assert main(["eval", "--data", data, "--checkpoint", str(ckpt), "--json", str(js)]) == 0
    old = js.read_bytes()
    assert json.loads(old)["provenance"]["kernels"] in ("pinned", "native")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    assert main(["eval", "--data", data, "--checkpoint", str(ckpt), "--json", str(js)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "disk is full" in err and "Traceback" not in err
    assert js.read_bytes() == old  # the previous report, whole
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temporary left
