"""``python -m transfer_lib export``: a checkpoint in the library's format becomes an ONNX file
whose logits onnxruntime reproduces, at any batch size; bad inputs fail clearly."""

from __future__ import annotations

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from transfer_lib import export
from transfer_lib.cli import main
from transfer_lib.models import build_model
from transfer_lib.utils.atomic import atomic_path
from transfer_lib.weights.checkpoint import save_atomic


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
    import transfer_lib.weights.convert as pretrained

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


@pytest.mark.parametrize("opset", ["5", "13", "99", "-1"])
def test_unsupported_opsets_are_refused_up_front(tiny, tmp_path, capsys, monkeypatch, opset):
    """--opset 5, 13 and 99 gave tracebacks from deep in torch; now one line before any work."""
    path, _ = tiny
    import transfer_lib.weights.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "model_from_checkpoint", lambda *a, **k: pytest.fail("loaded"))
    out = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(path), "--onnx", str(out), "--opset", opset]) == 2
    err = capsys.readouterr().err
    highest = export.max_opset()
    assert err == (f"error: --opset {opset} is not supported: give 14 to {highest} (default 17). "
                   f"14 is the lowest that exports the models' attention "
                   f"(scaled_dot_product_attention); {highest} the highest torch "
                   f"{torch.__version__} and onnx {onnx.__version__} both write\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore")
def test_opset_range_is_what_exports(tiny, tmp_path):
    """Both ends of the range export the attention models and run in onnxruntime; one below
    the lowest does not (the reason for the limit); the highest is torch's and onnx's."""
    from torch.onnx import _constants

    assert export.max_opset() == min(onnx.defs.onnx_opset_version(), _constants.ONNX_MAX_OPSET)
    _, model = tiny
    for opset in (export.MIN_OPSET, export.max_opset()):
        diff, ok = export.export_and_check(model, tmp_path / f"m{opset}.onnx", opset=opset)
        assert ok and diff < 1e-4
        assert onnx.load(str(tmp_path / f"m{opset}.onnx")).opset_import[0].version == opset
    with pytest.raises(Exception, match="scaled_dot_product_attention"):  # what the limit is for
        torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), str(tmp_path / "low.onnx"),
                          opset_version=export.MIN_OPSET - 1, dynamo=False)


def _umask(mask: int):
    old = os.umask(mask)
    return lambda: os.umask(old)


def test_the_onnx_file_honours_the_umask(tiny, tmp_path):
    """It was 0600 whatever the umask (tempfile.mkstemp's temporary renamed into place); the
    file keeps its temporary's mode, which is 0666 less the umask."""
    _, model = tiny
    restore = _umask(0o022)
    try:
        diff, ok = export.export_and_check(model, tmp_path / "m.onnx")
    finally:
        restore()
    assert ok and stat.S_IMODE((tmp_path / "m.onnx").stat().st_mode) == 0o644
    for mask, mode in ((0o077, 0o600), (0o002, 0o664)):  # the temporary export_and_check writes
        restore = _umask(mask)
        try:
            with atomic_path(tmp_path / f"u{mask}.onnx") as tmp:
                assert export.TEMP_NAME.match(tmp.name)
                made = stat.S_IMODE(tmp.stat().st_mode)
        finally:
            restore()
        assert made == mode and stat.S_IMODE((tmp_path / f"u{mask}.onnx").stat().st_mode) == mode


def test_temporaries_of_a_killed_export_are_removed_at_the_next_start(tiny, tmp_path, capsys):
    path, _ = tiny
    out = tmp_path / "out"
    out.mkdir()
    # an export killed with SIGKILL while it writes its temporary
    proc = subprocess.Popen([sys.executable, "-m", "transfer_lib", "export", "--checkpoint",
                             str(path), "--onnx", str(out / "m.onnx")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(out.iterdir()) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [left] = list(out.iterdir())
    assert export.TEMP_NAME.match(left.name) and str(proc.pid) in left.name
    # what is not a dead export's temporary stays
    alive = out / f".m.onnx.export-{os.getpid()}-0123abcd.tmp"  # a running export's (this one)
    mine = out / ".m.onnx.export-notes.tmp"  # the user's own
    other_dir = out / f".x.onnx.export-{proc.pid}-0123abcd.tmp"  # a folder, not a file
    earlier = out / f".m.onnx.export-{proc.pid}-89abcdef.tmp"  # an earlier version's, process gone
    legacy_old = out / ".m.onnx.ab_cd123.onnx"  # an earlier version's mkstemp name, hours old
    legacy_new = out / ".m.onnx.zz_cd123.onnx"  # ... and one written a minute ago
    for p in (alive, mine, earlier, legacy_old, legacy_new):
        p.write_bytes(b"half")
    other_dir.mkdir()
    hours_ago = time.time() - 2 * export.LEGACY_TEMP_AGE
    os.utime(legacy_old, (hours_ago, hours_ago))
    assert main(["export", "--checkpoint", str(path), "--onnx", str(out / "m.onnx")]) == 0
    captured = capsys.readouterr()
    assert f"removed {left}, left by an export that did not finish" in captured.err
    assert f"removed {legacy_old}," in captured.err and f"removed {earlier}," in captured.err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["m.onnx", alive.name, mine.name, other_dir.name, legacy_new.name])
