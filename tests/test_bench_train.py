import json
import os
import subprocess
from pathlib import Path

import pytest

from transfer_lib.cli import main
from transfer_lib.train_bench import peak_for

ROOT = Path(__file__).resolve().parents[1]


def test_peak_table():
    assert peak_for("NVIDIA H100 80GB HBM3") == ("H100", 989.0)
    assert peak_for("NVIDIA H100 PCIe") == ("H100 PCIe", 756.0)
    assert peak_for("NVIDIA H200") == ("H200", 989.0)
    assert peak_for("NVIDIA A100-SXM4-80GB") == ("A100", 312.0)
    assert peak_for("cpu") == (None, None)


def test_bench_train_cpu(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "train", "--device", "cpu", "--batch-sizes", "2", "--steps", "1",
                 "--warmup", "0", "--configs", "baseline,amp", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["device"] == "cpu" and r["model_size"] == "tiny" and "tiny" in r["note"]
    assert r["train_flops_per_image"] > 2 * r["forward_flops_per_image"]  # backward ~ 2x forward
    assert [x["config"] for x in r["results"]] == ["baseline", "amp"]
    assert all(x["status"] == "ok" and x["images_per_second"] > 0 for x in r["results"])
    assert r["results"][0]["mfu"] is None  # no CPU peak in the table
    assert r["optimised_over_baseline"] is None
    assert "img/s" in capsys.readouterr().out


def test_bench_train_bad_arguments(capsys):
    assert main(["bench", "train", "--device", "cpu", "--batch-sizes", "a,b"]) == 2
    assert "--batch-sizes" in capsys.readouterr().err
    assert main(["bench", "train", "--device", "cpu", "--configs", "turbo"]) == 2
    assert "baseline, amp, optimised" in capsys.readouterr().err


@pytest.mark.slow
def test_gpu_check_script_in_cpu_mode(tmp_path):
    env = {**os.environ, "DEVICE": "cpu", "OUT": str(tmp_path / "out")}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"train_bench.json", "gpu_train_summary.json", "gpu_train_metrics.jsonl"} <= files
    assert json.loads((tmp_path / "out" / "gpu_train_summary.json").read_text())["complete"]
