"""Two processes on CPU (gloo) under torchrun: identical weights, results written once."""

import json
import os
import subprocess
import sys

import pytest
import torch
from train_callbacks import dump_weights

from transfer_lib.weights.checkpoint import load_checkpoint


@pytest.mark.slow
def test_ddp_two_ranks_gloo(tmp_path):
    out, dump = tmp_path / "ddp", tmp_path / "weights"
    dump.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the train command with a callback by which every rank saves its weights at the end
    script = dump_weights(tmp_path, dump)[1]
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
         script, "--profile", "smoke", "--epochs", "2", "--max-steps", "2",
         "--no-progress", "--out", str(out), "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    w0, w1 = torch.load(dump / "rank0.pt"), torch.load(dump / "rank1.pt")
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    last = load_checkpoint(out / "last.pt")
    assert all(torch.equal(last["model"][k], w0[k]) for k in w0)
    assert len(last["rng"]) == 2  # both ranks' RNG states are kept for --resume
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # once, by rank 0
    assert r.stdout.count('"best_accuracy"') == 1  # rank 0 alone reports
