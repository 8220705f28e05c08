"""Checkpoints: weights that cannot predict (NaN, inf) are refused where eval, predict and export
load them; files are written with the user's permissions (umask), atomically."""

from __future__ import annotations

import errno
import math
import os
import stat

import pytest
import torch
from PIL import Image

from tests.data.conftest import write_rafdb
from transfer_lib.cli import main
from transfer_lib.models import build_model
from transfer_lib.utils.errors import CheckpointError
from transfer_lib.weights.checkpoint import check_finite_weights, model_and_checkpoint, save_atomic


def _checkpoint(path, spoil=None):
    """A tiny TransFER saved as `train` saves best.pt; ``spoil(state_dict)`` edits its weights."""
    model = build_model("transfer", "tiny")
    state = model.state_dict()
    if spoil is not None:
        spoil(state)
    save_atomic({"model": state, "config": model.config.to_dict(), "epoch": 1, "accuracy": 0.5},
                path)
    return path


def _all_nan(state):
    for value in state.values():
        if value.is_floating_point():
            value.fill_(math.nan)


def test_finite_weights_load(tmp_path):
    model, ckpt = model_and_checkpoint(_checkpoint(tmp_path / "ok.pt"))
    assert ckpt["epoch"] == 1 and not model.training


@pytest.mark.parametrize("spoil, words", [
    (_all_nan, "hold NaN or infinite values"),
    (lambda s: s["head.weight"].view(-1)[3].fill_(math.inf), "1 of its"),  # one value is enough
    (lambda s: next(v for k, v in s.items() if "running_var" in k).fill_(math.nan),
     "running_var"),  # a buffer counts too: BatchNorm divides by it
])
def test_nan_or_inf_weights_are_refused_at_load(tmp_path, spoil, words):
    path = _checkpoint(tmp_path / "bad.pt", spoil)
    with pytest.raises(CheckpointError, match="NaN or infinite") as err:
        model_and_checkpoint(path)
    assert str(path) in str(err.value) and words in str(err.value)
    assert "every prediction would be NaN" in str(err.value)


def test_check_finite_weights_names_the_tensors():
    state = {"a": torch.zeros(3), "b": torch.tensor([1.0, math.nan, math.inf]),
             "steps": torch.tensor(7)}  # integer tensors cannot be NaN
    with pytest.raises(CheckpointError, match=r"w.pt: 1 of its 2 weight tensors .*b \(2 of 3 values\)"):
        check_finite_weights(state, "w.pt")
    check_finite_weights({"a": torch.zeros(3)}, "w.pt")


def test_eval_predict_and_export_refuse_a_nan_checkpoint(tmp_path, capsys):
    """The issue's case: predict printed 'nan%' for every class."""
    path = _checkpoint(tmp_path / "nan.pt", _all_nan)
    data = write_rafdb(tmp_path / "RAF-DB", n_train=2, n_test=2)
    Image.new("RGB", (100, 100), (180, 140, 120)).save(tmp_path / "face.png")
    for argv in (["eval", "--data", str(data), "--checkpoint", str(path)],
                 ["predict", str(tmp_path / "face.png"), "--checkpoint", str(path), "--no-detect"],
                 ["export", "--checkpoint", str(path), "--onnx", str(tmp_path / "m.onnx")]):
        assert main(argv) == 2, argv[0]
        captured = capsys.readouterr()
        assert captured.err.startswith(f"error: {path}: ") and "NaN or infinite" in captured.err
        assert "Traceback" not in captured.err and "nan%" not in captured.out
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_save_atomic_honours_the_umask(tmp_path, mask, mode):
    """best.pt and last.pt were 0600 whatever the umask (tempfile.mkstemp's temporary renamed
    into place); now 0666 less the umask, like every other file a run writes."""
    old = os.umask(mask)
    try:
        save_atomic({"a": torch.zeros(2)}, tmp_path / "best.pt")
        save_atomic({"a": torch.ones(2)}, tmp_path / "best.pt")  # over an existing file too
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "best.pt").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "plain.json").stat().st_mode) == mode  # as any file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "plain.json"]
    assert torch.load(tmp_path / "best.pt", weights_only=True)["a"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                                   RuntimeError("cannot pickle")])
def test_a_failed_save_keeps_the_file_and_leaves_no_temporary(tmp_path, monkeypatch, error):
    save_atomic({"a": torch.zeros(2)}, tmp_path / "last.pt")
    real_save = torch.save

    def failing(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 the first bytes")
        raise error

    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(type(error)) as info:
        save_atomic({"a": torch.ones(2)}, tmp_path / "last.pt")
    if isinstance(error, OSError):  # the file asked for, not the temporary
        assert info.value.filename == str(tmp_path / "last.pt")
    monkeypatch.setattr(torch, "save", real_save)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert torch.load(tmp_path / "last.pt", weights_only=True)["a"].tolist() == [0.0, 0.0]
