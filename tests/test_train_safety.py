"""The trainer's callbacks, and what a full disk leaves behind: one clear error, the previous
last.pt intact, no temporary. Also transfer_lib.utils.atomic, which writes config.json and summary.json."""

import errno
import os
import stat

import pytest
import torch

from transfer_lib.cli import main
from transfer_lib.train import Callback, StepInfo, train
from transfer_lib.utils.atomic import atomic_write_text
from transfer_lib.weights.checkpoint import load_checkpoint

SMOKE = dict(profile="smoke", progress=False, device="cpu")


class Recorder(Callback):
    def __init__(self):
        self.steps: list[StepInfo] = []
        self.ended: list = []

    def on_step_end(self, run, step):
        self.steps.append(step)

    def on_train_end(self, run, model):
        self.ended.append((run.run_dir, run.ctx.rank, model))


def test_callbacks_see_every_step_and_the_end(tmp_path):
    rec, only_end = Recorder(), []

    class EndOnly:  # any object with one of the methods will do
        def on_train_end(self, run, model):
            only_end.append(run.cfg.seed)

    summary = train(out=str(tmp_path / "cb"), epochs=2, max_steps=2, callbacks=[rec, EndOnly()],
                    **SMOKE)
    assert summary["complete"]
    assert [(s.epoch, s.step, s.global_step) for s in rec.steps] == [
        (1, 1, 1), (1, 2, 2), (2, 1, 3), (2, 2, 4)]
    assert all(s.steps_per_epoch == 2 and s.lr > 0 and s.loss > 0 for s in rec.steps)
    [(run_dir, rank, model)] = rec.ended
    assert run_dir == tmp_path / "cb" and rank == 0 and only_end == [0]
    last = load_checkpoint(tmp_path / "cb" / "last.pt")
    assert all(torch.equal(v, last["model"][k]) for k, v in model.state_dict().items())
    assert rec.steps[0].model is model


def test_a_callback_that_is_not_one_is_refused_at_once(tmp_path):
    with pytest.raises(TypeError, match="pass an instance"):
        train(out=str(tmp_path / "x"), callbacks=[Recorder], **SMOKE)
    with pytest.raises(TypeError, match="neither on_step_end"):
        train(out=str(tmp_path / "x"), callbacks=[object()], **SMOKE)
    assert not (tmp_path / "x").exists()


def test_a_full_disk_stops_with_one_line_and_keeps_last_pt(tmp_path, monkeypatch, capsys):
    """ENOSPC while epoch 2's last.pt is written: `error: ...` on one line, exit 2, epoch 1's
    last.pt as it was, no temporary left."""
    out = tmp_path / "full"
    real_save, kept = torch.save, {}

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "optimizer" in obj and obj["epoch"] == 2:
            kept["last"] = (out / "last.pt").read_bytes()
            f.write(b"PK\x03\x04 the first bytes of a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as flush() raises it
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    rc = main(["train", "--profile", "smoke", "--epochs", "2", "--max-steps", "1",
               "--no-progress", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 2
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {out / 'last.pt'}: No space left on device (the disk is full: "
                      f"free some space or write elsewhere)"], captured.err
    assert "Traceback" not in captured.err
    assert (out / "last.pt").read_bytes() == kept["last"]
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert not (out / "summary.json").exists()
    # the space freed, the run resumes from epoch 1's checkpoint
    assert main(["train", "--profile", "smoke", "--epochs", "2", "--max-steps", "1",
                 "--no-progress", "--out", str(out), "--resume"]) == 0
    assert load_checkpoint(out / "last.pt")["epoch"] == 2


def test_a_full_disk_under_the_library_is_the_oserror_itself(tmp_path, monkeypatch):
    out = tmp_path / "lib"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError) as info:
        train(out=str(out), epochs=1, max_steps=1, **SMOKE)
    assert type(info.value) is OSError and info.value.errno == errno.ENOSPC
    assert info.value.filename == str(out / "best.pt")  # the first file of epoch 1
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_text_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    old = os.umask(0o022)
    try:
        atomic_write_text(target, '{"a": 1}')
    finally:
        os.umask(old)
    assert target.read_text() == '{"a": 1}'
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # the umask's, not mkstemp's 0600

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        atomic_write_text(target, '{"a": 2}')
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_text() == '{"a": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_atomic_write_follows_a_link_and_keeps_it(tmp_path):
    from transfer_lib.utils.atomic import atomic_write_text

    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
