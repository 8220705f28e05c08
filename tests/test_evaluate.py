import json

import pytest
import torch
from torch import nn

from transfer_lib.cli import main
from transfer_lib.errors import TransferError
from transfer_lib.evaluate import evaluate, format_metrics, metrics_from_confusion
from transfer_lib.train import train


def test_metrics_from_confusion():
    cm = torch.tensor([[8, 2, 0], [1, 1, 0], [0, 0, 0]])
    m = metrics_from_confusion(cm, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(9 / 12)
    assert m["per_class_accuracy"] == {"a": 0.8, "b": 0.5, "c": None}
    assert m["mean_class_accuracy"] == pytest.approx(0.65)
    assert m["confusion_matrix"] == cm.tolist() and m["num_samples"] == 12
    assert "mean class accuracy" in format_metrics(m)


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
    from transfer_lib.profiles import PROFILES

    data = str(__import__("transfer_lib.data.synth", fromlist=["x"]).ensure_synthetic(
        PROFILES["smoke"].synthetic_root, train=48, test=21))
    js = tmp_path / "m.json"
    assert main(["eval", "--data", data, "--checkpoint", str(ckpt), "--json", str(js)]) == 0
    printed = capsys.readouterr().out
    m = json.loads(js.read_text())
    assert m["accuracy"] == pytest.approx(summary["final_accuracy"])
    assert m["confusion_matrix"] == summary["confusion_matrix"]
    assert "mean class accuracy" in printed and "Happiness" in printed
    assert main(["eval", "--data", data, "--checkpoint", str(ckpt), "--tta", "flip"]) == 0


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
