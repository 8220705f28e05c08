import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from transfer_lib.bench import train as train_bench
from transfer_lib.bench.train import _predicted_memory, kernel_family, kernel_summary, peak_for
from transfer_lib.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_peak_table():
    assert peak_for("NVIDIA H100 80GB HBM3") == ("H100", 989.0)
    assert peak_for("NVIDIA H100 PCIe") == ("H100 PCIe", 756.0)
    assert peak_for("NVIDIA H200") == ("H200", 989.0)
    assert peak_for("NVIDIA A100-SXM4-80GB") == ("A100", 312.0)
    assert peak_for("Tesla T4") == ("T4", 65.0)
    assert peak_for("cpu") == (None, None)


def test_bench_train_cpu(tmp_path, capsys):
    out, prof = tmp_path / "b.json", tmp_path / "profile.txt"
    assert main(["bench", "train", "--device", "cpu", "--batch-sizes", "2", "--steps", "1",
                 "--warmup", "0", "--configs", "baseline,amp", "--out", str(out),
                 "--profile-out", str(prof), "--profile-config", "amp",
                 "--profile-steps", "1"]) == 0
    r = json.loads(out.read_text())
    assert r["device"] == "cpu" and r["model_size"] == "tiny" and "tiny" in r["note"]
    assert r["train_flops_per_image"] > 2 * r["forward_flops_per_image"]  # backward ~ 2x forward
    assert [x["config"] for x in r["results"]] == ["baseline", "amp"]
    assert all(x["status"] == "ok" and x["images_per_second"] > 0 for x in r["results"])
    assert r["results"][0]["mfu"] is None  # no CPU peak in the table
    assert r["optimised_over_baseline"] is None and r["fastest"] in ("baseline", "amp")
    assert [x.get("profile") for x in r["results"]] == [None, str(prof)]
    text = prof.read_text()
    assert "training step of amp" in text and "aten::" in text and "failed" not in text
    assert "img/s" in capsys.readouterr().out


def _fake_measure(oom_from: int, calls: list):
    """measure() that runs nothing: ok below ``oom_from`` images a batch, out of memory above."""
    def measure(size, config, batch, device, *args, **kwargs):
        calls.append(batch)
        if batch >= oom_from:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return {"status": "ok", "batch_size": batch, "timed_steps": 1, "first_step_seconds": 0.1,
                "step_ms": batch / 10, "images_per_second": 10_000.0,
                "peak_memory_gib": batch / 100}
    return measure


def test_sweep_stops_at_the_first_oom_and_appends(tmp_path, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(train_bench, "measure", _fake_measure(8, calls))
    out = tmp_path / "b.json"
    args = ["bench", "train", "--device", "cpu", "--configs", "amp", "--out", str(out)]
    assert main(args + ["--batch-sizes", "2"]) == 0
    assert main(args + ["--batch-sizes", "4,8,16,32", "--append"]) == 0
    assert calls == [2, 4, 8]  # 16 and 32 are not tried after the OOM at 8
    r = json.loads(out.read_text())
    assert [(x["batch_size"], x["status"]) for x in r["results"]] == [
        (2, "ok"), (4, "ok"), (8, "oom"), (16, "skipped"), (32, "skipped")]
    assert "out of memory at batch 8" in r["results"][-1]["reason"]
    assert r["best"]["amp"]["batch_size"] == 2 and not r["partial"]  # equal img/s: the first
    # appending to results of another model size is refused
    assert main(args + ["--batch-sizes", "2", "--append", "--size", "small"]) == 2
    assert main(["bench", "train", "--device", "cpu", "--append"]) == 2  # no --out


def test_memory_prediction():
    ok = [{"status": "ok", "batch_size": 256, "peak_memory_gib": 17.0}]
    assert _predicted_memory([], 512) is None
    assert _predicted_memory(ok, 1024) == pytest.approx(68.0)  # proportional from one point
    ok.append({"status": "ok", "batch_size": 512, "peak_memory_gib": 33.0})
    ok.append({"status": "oom", "batch_size": 4096})
    assert _predicted_memory(ok, 1024) == pytest.approx(65.0)  # the line through two points


def test_kernel_summary_groups_families():
    assert kernel_family("sm90_xmma_fprop_implicit_gemm_bf16bf16") == "convolution"
    assert kernel_family("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NNT") == "matmul"
    assert kernel_family("pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits>") == \
        "attention (SDPA)"
    assert kernel_family("void at::native::batch_norm_collect_statistics_kernel") == \
        "normalisation"
    assert kernel_family("triton_red_fused_convolution_backward_native_batch_norm_backward_2") \
        == "fused Triton"
    assert kernel_family("void at::native::(anonymous)::fused_sgd_kernel") == "optimiser"
    assert kernel_family("Memcpy DtoD (Device -> Device)") == "copy / memset"
    assert kernel_family("mystery") == "other"
    kernels = [SimpleNamespace(key="sm90_xmma_dgrad_bf16", count=20, self_device_time_total=6000),
               SimpleNamespace(key="triton_poi_fused_add_0", count=40, self_device_time_total=2000)]
    text = "\n".join(kernel_summary(kernels, steps=2, wall=0.01))
    assert "4.00 ms/step = 80.0 % of the wall time; 30 kernels/step" in text
    assert "convolution" in text and "75.0%" in text and "fused Triton" in text


def test_bench_train_bad_arguments(capsys):
    assert main(["bench", "train", "--device", "cpu", "--batch-sizes", "a,b"]) == 2
    assert "--batch-sizes" in capsys.readouterr().err
    assert main(["bench", "train", "--device", "cpu", "--configs", "turbo"]) == 2
    assert "baseline, amp, optimised" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.device_script  # minutes on 2 cores: `make test-device-script`, not `make test`
def test_gpu_check_script_in_cpu_mode(tmp_path):
    env = {**os.environ, "DEVICE": "cpu", "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert files == {"gpu_check.log", "train_bench.json", "profile_step.txt", "e2e_paper.json",
                     "gpu_profile.json", "gpu_profile_fp16.json"}
    bench = json.loads((tmp_path / "out" / "train_bench.json").read_text())
    assert {x["config"] for x in bench["results"]} == {"baseline", "amp"}
    assert any(x["batch_size"] == 4 for x in bench["results"])  # the appended sweep
    e2e = json.loads((tmp_path / "out" / "e2e_paper.json").read_text())
    assert e2e["summary"]["complete"] and 0 <= e2e["last_epoch"]["data_wait_share"] <= 1
    gpu = json.loads((tmp_path / "out" / "gpu_profile.json").read_text())
    assert gpu["summary"]["profile"] == "gpu" and gpu["summary"]["size"] == "small"
    assert gpu["t4_estimate"]["seconds_per_epoch"]
    assert "stage" in (tmp_path / "out" / "gpu_check.log").read_text()
