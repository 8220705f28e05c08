"""Export a model to ONNX and check the export in onnxruntime against PyTorch.

Examples:
  python -m transfer_lib export --checkpoint runs/rafdb/best.pt --onnx transfer.onnx
  python -m transfer_lib export --official RAFa_2_6131_ep33_90p91.pdparams --onnx transfer.onnx

The ONNX graph takes ``images`` (B, 3, S, S), float32, already normalised as the model's eval
transform does (resize, centre crop, ImageNet mean/std: ``transfer_lib.data.transforms.
eval_transform``), with a dynamic batch axis B, and returns ``logits`` (B, classes). Its metadata
(``onnx.load(path).metadata_props``) carries the class names in output order, each class's label
in its data set's own files, the input size, mean and std.

The export is checked before it is written: onnxruntime (CPU) runs it on random images at two
batch sizes, and the largest absolute difference from PyTorch's fp32 logits is printed. Above
``--atol`` (default 1e-4) nothing is written and the command exits 1: fp32 rounding alone can
reach that in a badly conditioned network (``benchmarks/export_check.py``: 1.3e-5 at the paper
model's initialisation, 1.6e-4 with every weight drawn at random, where PyTorch's own fp32 result
is 1.3e-4 from float64); ``--atol`` loosens it knowingly. Needs the ``export`` extra:
``pip install 'transfer_lib[export]'`` (onnx, onnxruntime).

``--opset`` takes 14 (the lowest that exports the attention, ``scaled_dot_product_attention``;
the CNN baseline alone exports from 9) up to the highest both torch's exporter and the installed
onnx write (23 with torch 2.14 and onnx 1.23; torch's TorchScript exporter declares 20, but 21-23
export these models and every export is checked in onnxruntime before it is written). Others are
refused before any work. The file is written under a temporary name,
``.NAME.PID.XXXXXXXX.tmp`` beside it (:func:`transfer_lib.utils.atomic.atomic_path`), and renamed when
the check passes; temporaries that a killed export left (their process no longer running) are
removed at the next start. The file
gets the permissions of any new file (``0666`` less the umask: ``0644`` under umask 022).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from pathlib import Path

import torch

from transfer_lib.utils import atomic
from transfer_lib.utils.errors import TransferError

#: The ONNX operator set: 17 has every op the models use (LayerNorm, GELU) and is widely run.
OPSET = 17
#: The lowest opset that exports the models, found by trying: 14 is where torch's exporter has
#: ``scaled_dot_product_attention`` (ViT, MSAD); 13 fails on it, 7 and below on ``expand`` too.
MIN_OPSET = 14
#: Temporaries of :func:`export_and_check`: ``.NAME.PID.XXXXXXXX.tmp`` beside NAME (those of
#: every atomic write, :func:`transfer_lib.utils.atomic.temporary_name`).
TEMP_NAME = atomic.TEMP_NAME
#: Temporaries of earlier versions: ``.NAME.export-PID-XXXXXXXX.tmp``, removed once their
#: process is gone, like those of :data:`TEMP_NAME`.
EXPORT_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.export-(?P<pid>[1-9][0-9]*)-[0-9a-f]{8}\.tmp$")
#: Temporaries of still earlier versions (``tempfile.mkstemp``: ``.NAME.XXXXXXXX.onnx``, no pid),
#: removed once they are this many seconds old: no export of one model takes that long
LEGACY_TEMP_AGE = atomic.LEGACY_TEMP_AGE
ATOL = 1e-4
CHECK_BATCHES: tuple[int, ...] = (1, 3)  # 1 and another: the batch axis really is dynamic


def _require(module: str):
    try:
        return __import__(module)
    except ModuleNotFoundError:
        raise TransferError(f"export needs {module}: pip install 'transfer_lib[export]' "
                            f"(onnx and onnxruntime)") from None


def max_opset() -> int:
    """The highest opset torch's exporter and the installed onnx both write."""
    highest = _require("onnx").defs.onnx_opset_version()
    try:
        from torch.onnx import _constants

        return min(highest, int(_constants.ONNX_MAX_OPSET))
    except (ImportError, AttributeError, TypeError, ValueError):  # a torch without the constant
        return highest


def check_opset(opset: int) -> None:
    """Raise TransferError for an opset outside ``MIN_OPSET`` .. :func:`max_opset`."""
    highest = max_opset()
    if not MIN_OPSET <= opset <= highest:
        raise TransferError(
            f"--opset {opset} is not supported: give {MIN_OPSET} to {highest} (default {OPSET}). "
            f"{MIN_OPSET} is the lowest that exports the models' attention "
            f"(scaled_dot_product_attention); {highest} the highest torch {torch.__version__} and "
            f"onnx {_require('onnx').__version__} both write")




def remove_stale_temporaries(folder: str | os.PathLike, target: str | None = None) -> list[Path]:
    """Remove the temporaries a killed export left in ``folder``: files named like this
    program's (:data:`TEMP_NAME`, of ``target`` when it is given; :data:`EXPORT_TEMP_NAME`) whose
    process is no longer running, and, beside ``target`` (a file name), an earlier version's
    ``.TARGET.XXXXXXXX.onnx`` older than :data:`LEGACY_TEMP_AGE` seconds
    (:func:`transfer_lib.utils.atomic.remove_stale_temporaries`). Nothing else is touched. Returns the
    removed paths."""
    legacy = [EXPORT_TEMP_NAME]
    if target:
        legacy.append(rf"^\.{re.escape(target)}\.[a-z0-9_]{{8}}\.onnx$")
    return atomic.remove_stale_temporaries(folder, None if target is None else [target],
                                           legacy=legacy, max_age=LEGACY_TEMP_AGE)


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, opset: int = OPSET) -> Path:
    """Write ``model`` (eval mode, CPU, fp32) as ONNX at ``path`` with a dynamic batch axis and
    the model's preprocessing facts as metadata."""
    from transfer_lib.data.labels import class_table, label_kind

    onnx = _require("onnx")
    check_opset(opset)
    model = model.to("cpu", torch.float32).eval()
    s = model.config.input_size
    example = torch.zeros(2, 3, s, s)
    path = Path(path)
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of torch.export's, which took 100 s
        # for the tiny model on 2 cores against 8 s; the model's input-shape check is a Python
        # condition the tracer records as constant, which is right: S is fixed, B stays dynamic
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # opsets 21-23: "not supported by torch.onnx.export()", yet they export these models, and
        # onnxruntime checks each export before it is written
        warnings.filterwarnings("ignore", message="Exporting to ONNX opset version")
        try:
            torch.onnx.export(model, (example,), str(path), input_names=["images"],
                              output_names=["logits"], opset_version=opset, dynamo=False,
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        except (torch.onnx.errors.OnnxExporterError, RuntimeError, ValueError) as err:
            first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
            raise TransferError(f"torch could not export the {model.config.variant} model at "
                                f"opset {opset}: {first or type(err).__name__}") from None
    proto = onnx.load(str(path))
    c = model.config
    meta = {"class_names": json.dumps(list(c.class_names)),
            "classes": json.dumps(class_table(c.class_names)),
            "dataset_label_kind": json.dumps(label_kind(c.class_names)),
            "input_size": json.dumps(s), "mean": json.dumps(list(c.mean)),
            "std": json.dumps(list(c.std)), "variant": c.variant,
            "input": "images (batch, 3, S, S) float32, normalised with mean/std",
            "output": "logits (batch, classes), classes in class_names order"}
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "transfer_lib"
    onnx.save(proto, str(path))
    return path


def compare_onnx(model: torch.nn.Module, path: str | os.PathLike,
                 batches: tuple[int, ...] = CHECK_BATCHES, seed: int = 0) -> float:
    """The largest absolute difference between onnxruntime's logits and PyTorch's (fp32, CPU) on
    random normalised images, over each batch size in ``batches``."""
    ort = _require("onnxruntime")
    model = model.to("cpu", torch.float32).eval()
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime's own error types (e.g. an opset it lacks)
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        raise TransferError(f"onnxruntime {ort.__version__} cannot load the export to check it "
                            f"({first or type(err).__name__}); try the default --opset "
                            f"{OPSET}") from None
    s = model.config.input_size
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for b in batches:
        x = torch.randn(b, 3, s, s, generator=g)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(["logits"], {"images": x.numpy()})[0]
        if got.shape != expected.shape:
            raise TransferError(f"the ONNX model returned logits of shape {got.shape} for a batch "
                                f"of {b}, PyTorch {expected.shape}")
        worst = max(worst, float(abs(got - expected).max()))
    return worst


def export_and_check(model: torch.nn.Module, onnx_path: str | os.PathLike, atol: float = ATOL,
                     opset: int = OPSET) -> tuple[float, bool]:
    """Export to a temporary file beside ``onnx_path``, compare with :func:`compare_onnx`, and
    move it to ``onnx_path`` only when the difference is below ``atol``.
    Returns (largest difference, written)."""
    onnx_path = Path(onnx_path)
    check_opset(opset)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(onnx_path.parent, onnx_path.name)
    with atomic.atomic_path(onnx_path) as tmp:
        export_onnx(model, tmp, opset)
        diff = compare_onnx(model, tmp)
        ok = diff < atol
        if not ok:
            tmp.unlink()  # nothing is renamed: onnx_path stays as it was
    return diff, ok


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from transfer_lib.cli import types as T

    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", metavar="PATH", help="a .pt written by `train` (best.pt, last.pt)")
    which.add_argument("--official", metavar="PDPARAMS",
                       help="the authors' released RAF-DB weights (Paddle .pdparams)")
    parser.add_argument("--onnx", metavar="PATH", required=True, help="the .onnx file to write")
    parser.add_argument("--atol", type=T.positive_float(), default=ATOL,
                        help=f"the largest logit difference must stay below this (default {ATOL})")
    parser.add_argument("--opset", type=T.INTEGER, default=OPSET,
                        help=f"ONNX opset: {MIN_OPSET} up to the highest torch and onnx both "
                             f"write (default {OPSET})")


def run(args: argparse.Namespace) -> int:
    from transfer_lib.cli import check_output_file

    check_output_file(args.onnx, "--onnx", [("--checkpoint", args.checkpoint),
                                            ("--official", args.official)])
    if not args.atol > 0:
        raise TransferError(f"--atol {args.atol} must be above 0")
    _require("onnx")
    _require("onnxruntime")
    check_opset(args.opset)
    onnx_path = Path(args.onnx)
    for left in remove_stale_temporaries(onnx_path.parent, onnx_path.name):
        print(f"removed {left}, left by an export that did not finish", file=sys.stderr)
    if args.checkpoint:
        from transfer_lib.weights.checkpoint import model_from_checkpoint

        model, source = model_from_checkpoint(args.checkpoint), args.checkpoint
    else:
        from transfer_lib.utils.errors import CheckpointError, not_a_file
        from transfer_lib.weights.convert import load_official_transfer

        if not Path(args.official).is_file():
            raise CheckpointError(f"{not_a_file('--official', args.official)}. Expected the "
                                  f"authors' RAF-DB weights, a Paddle .pdparams file.")
        from transfer_lib.weights.checkpoint import check_finite_weights

        model, source = load_official_transfer(args.official, verbose=False), args.official
        check_finite_weights(model.state_dict(), source)
    diff, ok = export_and_check(model, args.onnx, args.atol, args.opset)
    batches = " and ".join(str(b) for b in CHECK_BATCHES)
    print(f"largest |logit difference| onnxruntime vs PyTorch (fp32, batches of {batches}): "
          f"{diff:.3g} (allowed: below {args.atol:g})")
    if not ok:
        print(f"error: the export of {source} differs from PyTorch by more than {args.atol:g}; "
              f"nothing was written to {args.onnx}", file=sys.stderr)
        return 1
    print(f"wrote {args.onnx} ({model.config.variant}, input (batch, 3, {model.config.input_size}, "
          f"{model.config.input_size}), {model.config.num_classes} classes: "
          f"{', '.join(model.config.class_names)})")
    return 0
