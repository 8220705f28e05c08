"""A run killed with SIGKILL in the middle of an epoch and resumed ends bitwise equal."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from train_callbacks import kill_in_epoch

from transfer_lib.weights.checkpoint import load_checkpoint

ARGS = ["--profile", "smoke", "--epochs", "3", "--max-steps", "3", "--no-progress", "--seed", "1"]


def _train(out, *extra, command=(sys.executable, "-m", "transfer_lib", "train")):
    return subprocess.run([*command, *ARGS, "--out", str(out), *extra], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_weights(tmp_path):
    whole = _train(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr

    # the train command with a callback that SIGKILLs it after the first step of epoch 2
    killed = _train(tmp_path / "cut", command=kill_in_epoch(tmp_path, 2))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    assert not (tmp_path / "cut" / "summary.json").exists()

    resumed = _train(tmp_path / "cut", "--resume")
    assert resumed.returncode == 0, resumed.stderr

    a = load_checkpoint(tmp_path / "whole" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert a["epoch"] == b["epoch"] == 3 and a["global_step"] == b["global_step"] == 9
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # the killed epoch left no line behind


@pytest.mark.slow
def test_resume_of_another_model_is_refused(tmp_path):
    assert _train(tmp_path / "r", "--epochs", "1", "--max-steps", "1").returncode == 0
    r = _train(tmp_path / "r", "--resume", "--variant", "vit_fer")
    assert r.returncode == 2 and "another recipe" in r.stderr and "variant: saved" in r.stderr


# ---------------------------------------------------------------------------------------------
# a last.pt that is not the run's: refused before anything is written
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished one-step runs of the smoke recipe, the second at another learning rate."""
    from transfer_lib.cli import main

    base = tmp_path_factory.mktemp("runs")
    smoke = ["train", "--profile", "smoke", "--epochs", "1", "--max-steps", "1", "--no-progress"]
    assert main([*smoke, "--out", str(base / "mine")]) == 0
    assert main([*smoke, "--out", str(base / "other"), "--lr", "0.01"]) == 0
    return base / "mine", base / "other"


@pytest.mark.parametrize("copied, words", [
    # a best.pt over last.pt: resumed into KeyError: 'optimizer' with a traceback
    ("mine/best.pt", "holds weights but no training state to resume from (no optimizer"),
    # another run's last.pt (same model, another lr): resumed from without a word
    ("other/last.pt", "records another recipe than"),
])
def test_resume_from_a_last_pt_that_is_not_the_runs_is_refused(two_runs, copied, words, tmp_path,
                                                                capsys):
    import shutil

    from transfer_lib.cli import main

    mine, other = two_runs
    run = tmp_path / "run"
    shutil.copytree(mine, run)
    (run / "summary.json").unlink()  # a run cut short after its checkpoint
    shutil.copyfile(mine.parent / copied, run / "last.pt")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    argv = ["train", "--profile", "smoke", "--epochs", "1", "--max-steps", "1", "--no-progress",
            "--out", str(run), "--resume"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert words in err and "Nothing was changed" in err, err
    if copied == "other/last.pt":
        assert "lr: saved 0.01, asked 0.001" in err and "--new-recipe" in err, err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
