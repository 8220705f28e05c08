"""A run directory is used by one run at a time, and a resume never rewrites its record silently."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch

from transfer_lib.cli import main
from transfer_lib.train import run_or_load
from transfer_lib.train.rundir import LOCK_NAME, RunLock
from transfer_lib.utils.errors import TransferError

BASE = ["train", "--profile", "smoke", "--epochs", "1", "--max-steps", "1", "--no-progress"]


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A complete one-epoch smoke run (one step), copied by each test that changes it."""
    out = tmp_path_factory.mktemp("base") / "run"
    assert main([*BASE, "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(one_epoch, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(one_epoch, out)
    return out


def _files(out):
    return {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != LOCK_NAME}


def test_a_run_in_progress_locks_its_folder(run, capsys):
    before = _files(run)
    with RunLock(run):  # another process training there now
        assert main([*BASE, "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "is in use" in err and f"process {os.getpid()}" in err and "another --out" in err
    assert _files(run) == before  # nothing written by the refused run
    assert main([*BASE, "--out", str(run), "--resume"]) == 0  # free again afterwards


def test_a_killed_run_does_not_block_its_resume(run):
    # the holder takes the lock and dies by SIGKILL: the kernel releases flock locks
    holder = ("import fcntl, os, signal, sys; f = open(sys.argv[1], 'a+'); "
              "fcntl.flock(f, fcntl.LOCK_EX); f.write('process 1\\n'); f.flush(); "
              "os.kill(os.getpid(), signal.SIGKILL)")
    r = subprocess.run([sys.executable, "-c", holder, str(run / LOCK_NAME)], timeout=60)
    assert r.returncode == -9 and (run / LOCK_NAME).is_file()
    assert main([*BASE, "--out", str(run), "--resume"]) == 0


def test_a_failed_start_leaves_no_folder_behind(tmp_path, capsys):
    out = tmp_path / "new"
    assert main([*BASE, "--out", str(out), "--data", str(tmp_path / "nowhere")]) == 2
    assert "data set folder not found" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("change, saved", [
    (["--lr", "0.5"], "lr: saved 0.001"),
    (["--epochs", "3"], "epochs: saved 1, asked 3"),
    (["--seed", "4"], "seed: saved 0, asked 4"),
    (["--data", "."], "data: saved None, asked '.'"),
])
def test_resume_with_a_changed_recipe_is_refused(run, change, saved, capsys):
    before = _files(run)
    assert main([*BASE, "--out", str(run), "--resume", *change]) == 2
    err = capsys.readouterr().err
    assert "another recipe" in err and saved in err and "--new-recipe" in err
    assert _files(run) == before


def test_resume_under_another_profile_is_refused(run, capsys):
    argv = [a if a != "smoke" else "cpu" for a in BASE]
    assert main([*argv, "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "another recipe" in err and "synthetic_train: saved 48" in err


def test_new_recipe_continues_and_keeps_both_records(run):
    first = json.loads((run / "config.json").read_text())
    argv = [a if a != "1" else "2" for a in BASE]  # --epochs 2 --max-steps 2
    assert main([*argv, "--out", str(run), "--resume", "--new-recipe"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["profile"]["epochs"] == 2
    [old] = config["history"]
    assert old["until_epoch"] == 1 and old["profile"]["epochs"] == 1
    assert old["train"] == first["train"]
    assert any(c.startswith("epochs: saved 1, asked 2") for c in old["changed"])
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    # a later resume under the same recipe keeps the history
    assert main([*argv, "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "config.json").read_text())["history"] == config["history"]


def test_run_or_load_refuses_a_half_finished_run_of_another_recipe(run):
    (run / "summary.json").unlink()  # interrupted after its last checkpoint
    kwargs = dict(profile="smoke", epochs=1, max_steps=1, progress=False)
    with pytest.raises(TransferError, match=r"another recipe \(.*lr: saved 0.001, asked 0.5"):
        run_or_load(run, lr=0.5, **kwargs)
    assert not (run / "summary.json").exists()
    assert run_or_load(run, **kwargs)["complete"]  # the same recipe finishes it


def test_truncated_last_pt_names_the_file_and_what_to_do(run, capsys):
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[: len(data) // 3])
    assert main([*BASE, "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'last.pt'} is truncated or damaged" in err
    assert "Restore an earlier copy" in err and "best.pt" in err and "eval --checkpoint" in err
    assert "--official" not in err and "Traceback" not in err


def test_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert main([*BASE, "--out", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err and f.read_text() == "mine"


def test_run_or_load_when_best_pt_is_missing(run):
    (run / "best.pt").unlink()
    with pytest.raises(TransferError, match=r"best.pt is missing: restore it.*last.pt.*delete"):
        run_or_load(run, profile="smoke", epochs=1, max_steps=1, progress=False)


def test_a_summary_that_is_not_a_dict_is_rebuilt_from_last_pt(run, capsys):
    (run / "summary.json").write_text("[1, 2]")
    summary = run_or_load(run, profile="smoke", epochs=1, max_steps=1, progress=False)
    assert summary["complete"] and json.loads((run / "summary.json").read_text()) == summary
    assert "not a run summary" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["gone", "not json", "a list"])
def test_resume_checks_the_recipe_in_last_pt_when_config_json_is_gone(run, damage, capsys):
    """last.pt records the recipe (train_config, profile): without a readable config.json a
    changed recipe is refused as with one, listing the changes."""
    last = torch.load(run / "last.pt", weights_only=True)
    config = json.loads((run / "config.json").read_text())
    assert last["train_config"] == config["train"] and last["profile"] == config["profile"]
    if damage == "gone":
        (run / "config.json").unlink()
    else:
        (run / "config.json").write_text("{\"train\": " if damage == "not json" else "[1, 2]")
    before = _files(run)
    assert main([*BASE, "--out", str(run), "--resume", "--lr", "0.05"]) == 2
    err = capsys.readouterr().err
    assert "another recipe (lr: saved 0.001, asked 0.05)" in err and "--new-recipe" in err
    assert "config.json is missing or damaged; last.pt records them" in err
    assert _files(run) == before


def test_new_recipe_without_config_json_keeps_last_pts_recipe_in_history(run):
    (run / "config.json").unlink()
    argv = [a if a != "1" else "2" for a in BASE]  # --epochs 2 --max-steps 2
    assert main([*argv, "--out", str(run), "--resume", "--new-recipe"]) == 0
    config = json.loads((run / "config.json").read_text())
    [old] = config["history"]
    assert old["recovered_from"] == "last.pt" and old["until_epoch"] == 1
    assert old["profile"]["epochs"] == 1 and old["train"]["epochs"] == 1
    assert any(c.startswith("epochs: saved 1, asked 2") for c in old["changed"])


def test_resume_under_the_same_recipe_without_config_json(run):
    (run / "config.json").unlink()
    (run / "summary.json").unlink()
    assert main([*BASE, "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["resume"] is True
    assert json.loads((run / "summary.json").read_text())["complete"]


@pytest.mark.parametrize("exists", [False, True])
def test_resume_with_nothing_to_resume_is_refused(tmp_path, exists, capsys):
    out = tmp_path / "empty"
    if exists:
        out.mkdir()
    assert main([*BASE, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"error: nothing to resume in {out}: no last.pt; drop --resume to start a fresh run" \
        in err
    assert out.exists() == exists  # a folder made for the lock goes again
    if exists:
        assert {p.name for p in out.iterdir()} <= {LOCK_NAME}


def test_resume_with_config_json_but_no_last_pt_starts_over(run, capsys):
    """Killed before its first checkpoint: nothing was learnt, the run starts over and says so."""
    for name in ("last.pt", "best.pt", "summary.json", "metrics.jsonl"):
        (run / name).unlink()
    assert main([*BASE, "--out", str(run), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "config.json but no last.pt" in err and "starting it over from epoch 1" in err
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 1


def test_run_or_load_starts_a_run_without_last_pt(run):
    """The book's path: run_or_load resumes only where last.pt exists, so a folder with only a
    config.json (killed before the first checkpoint) trains without the resume's refusal."""
    for name in ("last.pt", "best.pt", "summary.json", "metrics.jsonl"):
        (run / name).unlink()
    summary = run_or_load(run, profile="smoke", epochs=1, max_steps=1, progress=False)
    assert summary["complete"] and (run / "last.pt").is_file()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_are_removed_at_the_start(run, capsys):
    dead, alive = _dead_pid(), os.getppid()
    stale = [run / f".last.pt.{dead}.0123abcd.tmp", run / f".config.json.{dead}.89abcdef.tmp",
             run / ".best.pt.x_7kq2ab.tmp"]  # the last: an earlier version's mkstemp name
    kept = [run / f".last.pt.{alive}.0123abcd.tmp",  # a process still running
            run / ".last.pt.y_8kq2ab.tmp",  # an earlier version's, but recent
            run / f".notes.txt.{dead}.0123abcd.tmp",  # not a file the trainer writes
            run / f"last.pt.{dead}.0123abcd.tmp"]  # not a temporary's name
    for p in stale + kept:
        p.write_bytes(b"half a checkpoint")
    two_hours_ago = time.time() - 7200
    os.utime(stale[2], (two_hours_ago, two_hours_ago))
    assert main([*BASE, "--out", str(run), "--resume"]) == 0
    err = capsys.readouterr().err
    for p in stale:
        assert not p.exists() and f"removed {p}: the temporary of an interrupted write" in err
    assert f"process {dead} is gone" in err and "2.0 hours old" in err
    assert all(p.exists() for p in kept)
