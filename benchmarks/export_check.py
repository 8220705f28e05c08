"""How far onnxruntime's logits are from PyTorch's for the paper-size TransFER (CPU, fp32).

    python benchmarks/export_check.py          # about 3 minutes on 2 cores

Two sets of weights, since the released checkpoint is not available here: the model's own
initialisation (head drawn from N(0, 0.3) so that logits are not all zero) and a deliberately
badly conditioned one (every tensor drawn at random, as the converter tests do), where PyTorch's
own fp32 result is already 1e-4 away from float64. For each: the largest |logit| difference
between onnxruntime and PyTorch fp32, and between each and PyTorch in float64.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from transfer_lib.export import _require, export_onnx  # noqa: E402
from transfer_lib.models import build_model  # noqa: E402


def random_weights(model: torch.nn.Module, seed: int) -> None:
    """Every entry drawn at random (BN and LayerNorm scales near 1, variances in [0.5, 1.5])."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = value
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=g) * 0.05
            if value.ndim == 1 and key.endswith("weight"):
                state[key] += 1.0
    model.load_state_dict(state)


def main() -> None:
    ort = _require("onnxruntime")
    warnings.filterwarnings("ignore")
    x = torch.randn(3, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    results = {}
    for name in ("initialisation", "random"):
        torch.manual_seed(0)
        model = build_model("transfer", "paper").eval()
        if name == "random":
            random_weights(model, seed=4)
        with torch.no_grad():
            model.head.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
            ref = model(x).numpy()
            ref64 = model.double()(x.double()).numpy()
        model.float()
        with tempfile.TemporaryDirectory() as d:
            path = export_onnx(model, os.path.join(d, "m.onnx"))
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            got = session.run(["logits"], {"images": x.numpy()})[0]
        results[name] = {
            "largest_abs_logit": float(np.abs(ref).max()),
            "onnxruntime_vs_torch_fp32": float(np.abs(got - ref).max()),
            "torch_fp32_vs_fp64": float(np.abs(ref - ref64).max()),
            "onnxruntime_vs_torch_fp64": float(np.abs(got - ref64).max()),
        }
        print(name, json.dumps(results[name]), flush=True)
    print(json.dumps({"machine": platform.processor() or platform.machine(),
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "onnxruntime": ort.__version__, "results": results}))


if __name__ == "__main__":
    main()
