"""Pinned CPU kernels (transfer_lib.utils.kernels): the same seed gives the same weights whatever the
cores, and every run records which kernels it ran with."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# a few steps of the smoke recipe; prints the sha256 of the final weights and the provenance
_TRAIN = """
import hashlib, json, sys
import transfer_lib  # pins before torch loads
import torch
from transfer_lib.train import train
s = train(profile="smoke", out=sys.argv[1], epochs=1, max_steps=3, progress=False)
sd = torch.load(sys.argv[1] + "/last.pt", weights_only=True)["model"]
h = hashlib.sha256()
for k in sorted(sd):
    h.update(sd[k].numpy().tobytes())
print(json.dumps({"hash": h.hexdigest(), "provenance": s["provenance"]}))
"""


def _train(out: Path, prefix: list[str], env: dict | None = None) -> dict:
    r = subprocess.run([*prefix, sys.executable, "-c", _TRAIN, str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, **(env or {})})
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_pinned_weights_do_not_depend_on_the_cores(tmp_path):
    from transfer_lib.utils.kernels import pinnable

    if not pinnable() or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        pytest.fail("this test needs an x86 CPU with AVX2, two cores and taskset")
    env = {"TRANSFER_NATIVE": ""}
    one = _train(tmp_path / "one", ["taskset", "-c", "0"], env)
    two = _train(tmp_path / "two", ["taskset", "-c", "0,1"], env)
    assert one["provenance"]["kernels"] == two["provenance"]["kernels"] == "pinned"
    assert one["provenance"]["threads"] == 2 and one["provenance"]["cpu_capability"] == "AVX2"
    assert one["hash"] == two["hash"]


def test_native_is_recorded_as_another_draw(tmp_path):
    from transfer_lib.utils.kernels import reproduces_committed

    run = _train(tmp_path / "native", [], {"TRANSFER_NATIVE": "1"})
    prov = run["provenance"]
    assert prov["kernels"] == "native" and "TRANSFER_NATIVE=1" in prov["why"]
    assert set(prov["versions"]) == {"python", "torch", "torchvision", "numpy", "Pillow"}
    assert set(prov["cpu_flags"]) >= {"avx2", "avx512f", "avx512_bf16", "amx_tile"}
    ok, why = reproduces_committed(prov)
    assert not ok and "another draw" in why


def test_torch_loaded_first_is_never_called_pinned():
    code = ("import torch, transfer_lib\n"
            "from transfer_lib.utils.kernels import kernel_state\n"
            "import json; print(json.dumps(kernel_state()))")
    env = {k: v for k, v in os.environ.items()
           if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "TRANSFER_KERNELS",
                        "TRANSFER_NATIVE")}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    state = json.loads(r.stdout)
    assert state["kernels"] == "native"
    assert "imported before transfer_lib" in state["why"]


def test_the_cli_pins_and_native_opts_out(tmp_path):
    for extra, expect in (([], "pinned"), (["--native"], "native")):
        out = tmp_path / (expect or "x")
        env = {k: v for k, v in os.environ.items()
               if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "TRANSFER_KERNELS",
                            "TRANSFER_NATIVE", "OMP_NUM_THREADS")}
        r = subprocess.run([sys.executable, "-m", "transfer_lib", "train", "--profile", "smoke",
                            "--epochs", "1", "--max-steps", "1", "--no-progress", "--out",
                            str(out), *extra], cwd=ROOT, capture_output=True, text=True,
                           timeout=300, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        prov = json.loads((out / "summary.json").read_text())["provenance"]
        from transfer_lib.utils.kernels import pinnable

        if expect == "pinned" and not pinnable():
            assert prov["kernels"] == "native"  # an ARM machine: never claimed pinned
        else:
            assert prov["kernels"] == expect, prov
        assert json.loads((out / "config.json").read_text())["provenance"]["kernels"] == \
            prov["kernels"]


def test_pinning_is_undone_before_torch_loads():
    code = ("import os, transfer_lib\n"
            "from transfer_lib.utils import kernels\n"
            "before = os.environ.get('ATEN_CPU_CAPABILITY')\n"
            "kernels.use_native()\n"
            "import torch, json\n"
            "print(json.dumps([before, os.environ.get('ATEN_CPU_CAPABILITY'), "
            "kernels.kernel_state()['kernels']]))")
    env = {k: v for k, v in os.environ.items()
           if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "TRANSFER_KERNELS",
                        "TRANSFER_NATIVE", "OMP_NUM_THREADS")}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    before, after, kernels = json.loads(r.stdout)
    from transfer_lib.utils.kernels import pinnable

    assert before == ("avx2" if pinnable() else None)
    assert after is None and kernels == "native"
