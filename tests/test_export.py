"""``python -m transfer_lib export``: a checkpoint in the library's format becomes an ONNX file
whose logits onnxruntime reproduces, at any batch size; bad inputs fail clearly."""

from __future__ import annotations

import json
import pickle

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from transfer_lib import export
from transfer_lib.checkpoint import save_atomic
from transfer_lib.cli import main
from transfer_lib.models import build_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny TransFER with a non-zero head, saved as `train` saves best.pt."""
    model = build_model("transfer", "tiny").eval()
    with torch.no_grad():  # the head starts at zero: give it weights so logits differ
        model.head.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    path = tmp_path_factory.mktemp("export") / "best.pt"
    save_atomic({"model": model.state_dict(), "config": model.config.to_dict(), "epoch": 3,
                 "accuracy": 0.5}, path)
    return path, model


def test_export_checkpoint_runs_in_onnxruntime(tiny, tmp_path, capsys):
    path, model = tiny
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(path), "--onnx", str(out)]) == 0
    printed = capsys.readouterr().out
    diff = float(printed.split("PyTorch (fp32, batches of 1 and 3): ")[1].split()[0])
    assert diff < 1e-4 and f"wrote {out}" in printed
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary file left
    # a batch size the check did not use: the batch axis is dynamic
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    s = model.config.input_size
    x = torch.randn(5, 3, s, s, generator=torch.Generator().manual_seed(1))
    got = session.run(["logits"], {"images": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (5, 7) and np.abs(expected).max() > 1e-2
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["class_names"]) == list(model.config.class_names)
    assert json.loads(meta["classes"])[3] == {"index": 3, "name": "Happiness", "dataset_label": 4}
    assert json.loads(meta["mean"]) == list(model.config.mean)
    assert json.loads(meta["input_size"]) == s


def test_export_refuses_a_difference_over_atol(tiny, tmp_path, capsys, monkeypatch):
    path, _ = tiny
    monkeypatch.setattr(export, "compare_onnx", lambda *a, **k: 3e-4)
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(path), "--onnx", str(out)]) == 1
    captured = capsys.readouterr()
    assert "0.0003" in captured.out and "nothing was written" in captured.err
    assert list(tmp_path.iterdir()) == []


def test_export_official_goes_through_the_converter(tiny, tmp_path, capsys, monkeypatch):
    """--official loads with load_official_transfer (tested on the Paddle layout in
    test_pretrained.py); a tiny model stands in for the 65 M-parameter one here."""
    _, model = tiny
    import transfer_lib.pretrained as pretrained

    calls = []
    monkeypatch.setattr(pretrained, "load_official_transfer",
                        lambda p, verbose=True: calls.append(p) or model)
    (tmp_path / "w.pdparams").write_bytes(b"stand-in")
    assert main(["export", "--official", str(tmp_path / "w.pdparams"), "--onnx",
                 str(tmp_path / "a.onnx")]) == 0
    assert calls == [str(tmp_path / "w.pdparams")] and (tmp_path / "a.onnx").is_file()


def test_export_errors_are_clear(tiny, tmp_path, capsys):
    path, _ = tiny
    out = str(tmp_path / "m.onnx")
    assert main(["export", "--checkpoint", str(tmp_path / "absent.pt"), "--onnx", out]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    torch.save({"cls_token": torch.zeros(1, 1, 4)}, tmp_path / "timm.pth")  # foreign weights
    assert main(["export", "--checkpoint", str(tmp_path / "timm.pth"), "--onnx", out]) == 2
    assert "not a transfer_lib checkpoint" in capsys.readouterr().err
    with open(tmp_path / "w.pdparams", "wb") as f:  # the authors' file given as --checkpoint
        pickle.dump({"head.fc.weight": np.zeros((768, 7), np.float32)}, f, protocol=2)
    assert main(["export", "--checkpoint", str(tmp_path / "w.pdparams"), "--onnx", out]) == 2
    assert "--official" in capsys.readouterr().err
    assert main(["export", "--official", str(tmp_path / "absent.pdparams"), "--onnx", out]) == 2
    assert "--official file not found" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(path), "--onnx", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
