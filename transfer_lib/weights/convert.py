"""Foreign checkpoints: one adapter function per format (chapters 3, 5 and 7).

* ``load_ir50_stem``: face.evoLVe's IR-50 trained on MS-Celeb-1M (``backbone_ir50_ms1m_epoch120.pth``)
  into the stem. Chapter 3, ``book/03_stem.ipynb``.
* ``load_vit_small``: timm's first ViT-Small (``vit_small_p16_224-15ec54c9.pth``) into the MSAD
  transformer. Chapter 5, ``book/05_msad.ipynb``.
* ``load_official_transfer``: the authors' released RAF-DB model, a PaddlePaddle ``.pdparams``
  pickle, into a whole ``TransFER``. Chapter 7 (evaluation).

Every adapter works from an explicit table of (our name -> their name) and fails loudly: a key
of the model that the file lacks, a tensor of the wrong shape, or a key of the file that is
neither used nor on the adapter's list of keys left out on purpose raises ``CheckpointError``.
What is left out on purpose is printed and returned in a ``LoadReport``.

Nothing here runs code from a file: torch files load with ``weights_only=True`` and the Paddle
pickle with ``RestrictedUnpickler``, which admits only what numpy arrays are made of.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transfer_lib.models.msad import MSADTransformer
from transfer_lib.models.stem import IR50Stem
from transfer_lib.models.transfer import TransFER, build_model
from transfer_lib.utils.errors import CheckpointError


@dataclass
class LoadReport:
    """What an adapter did: the model keys it filled, the file keys it left out on purpose."""

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: keys of the file neither used nor known (only when loaded with ``strict=False``)
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.source}: loaded {len(self.loaded)} tensors"]
        if self.skipped:
            lines.append(f"  left out on purpose ({len(self.skipped)} keys): "
                         + ", ".join(_summarise_keys(self.skipped)))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# reading files safely


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays, dicts, lists and plain values, and nothing else.

    A pickle names the callables it wants to run (``GLOBAL`` / ``STACK_GLOBAL``); ``find_class``
    is asked for each, so refusing everything outside this list refuses ``os.system``,
    ``builtins.eval`` and every other way a pickle can run code.
    """

    ALLOWED: frozenset[tuple[str, str]] = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # numpy's reduce for pickle protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # how pickle protocol 2 stores bytes (torch admits it too)
        # paddle.save pickles a raw Tensor as (tuple, ((name, array),)): tuple() only iterates
        ("builtins", "tuple"),
        ("__builtin__", "tuple"),  # the same under protocol 2
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise CheckpointError(
            f"refused to load global '{module}.{name}' from the pickle: a weights file should hold "
            f"only numpy arrays and plain types, and this one asks to run other code. Do not load "
            f"it with plain pickle either."
        )


def read_paddle_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a Paddle ``.pdparams`` file (a pickle of name -> numpy array) without running code.

    Drops Paddle's bookkeeping entry ``StructuredToParameterName@@`` (structured name ->
    internal parameter name, written by ``paddle.save`` of a state dict) and unwraps values
    pickled as ``(name, array)`` pairs: ``paddle.save`` writes a raw Tensor (rather than the
    numpy array a state dict holds) as ``tuple((name, array))``, which is why
    :class:`RestrictedUnpickler` admits ``builtins.tuple``. Paddle's other Tensor form
    (``eval('data', {'data': array})``, a LoDTensor) stays refused.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Paddle weights not found: {path}. Expected the authors' "
                              f"released RAF-DB model, a .pdparams file.")
    data = path.read_bytes()
    try:
        obj = RestrictedUnpickler(io.BytesIO(data)).load()
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure here means "not a params pickle"
        hint = " (it looks like a torch zip file: use load_ir50_stem / load_vit_small or --checkpoint)" \
            if data[:2] == b"PK" else ""
        raise CheckpointError(
            f"{path} is not a Paddle .pdparams pickle{hint}: {type(err).__name__}: {err}. "
            f"Paddle's inference format (.pdiparams + .pdmodel) is not supported; use the "
            f"dynamic-graph .pdparams file."
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a dict of parameters")
    if "UnpackBigParamInfor@@" in obj:
        raise CheckpointError(f"{path} holds Paddle's split big-parameter format, which TransFER's "
                              f"weights never need; re-save it with pickle protocol 4")
    params: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if key == "StructuredToParameterName@@":
            continue
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], np.ndarray):
            value = value[1]  # paddle.save of a raw Tensor: (parameter name, array)
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not an array")
        params[str(key)] = value
    return params


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A plain state dict from a torch file (``weights_only=True``), unwrapping
    ``{"state_dict": ...}`` or ``{"model": ...}`` and a DataParallel ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        from transfer_lib.weights.checkpoint import load_failure

        raise CheckpointError(
            f"{path} is not a torch file that loads safely ({load_failure(err)}); for the "
            f"authors' Paddle weights use load_official_transfer / --official"
        ) from None
    if isinstance(obj, dict) and {"model", "config"} <= set(obj):
        raise CheckpointError(
            f"{path} is a transfer_lib checkpoint (a RUN_DIR/best.pt or last.pt written by "
            f"`train`), not foreign pretrained weights: to continue that run use `train --out "
            f"RUN_DIR --resume`, to score it `eval --checkpoint {path}`; --ir50 and --vit take "
            f"face.evoLVe's IR-50 and timm's ViT-Small files (or `pretrain`'s output)"
        )
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries {bad[:5]} are not tensors")
    return obj


# ---------------------------------------------------------------------------------------------
# the common part: fill every key of a module from a table, check shapes, account for the rest


def _summarise_keys(keys: Iterable[str], limit: int = 6) -> list[str]:
    """Group keys by their first two name parts: ``body.21.*`` rather than 30 names."""
    groups: dict[str, int] = {}
    for k in keys:
        parts = k.split(".")
        g = ".".join(parts[:2]) + (".*" if len(parts) > 2 else "")
        groups[g] = groups.get(g, 0) + 1
    out = [g if n == 1 else f"{g} ({n})" for g, n in groups.items()]
    return out[:limit] + ([f"... {len(out) - limit} more groups"] if len(out) > limit else [])


def _guess_format(keys: Iterable[str]) -> str:
    keys = set(keys)
    if any(k.startswith(("extractor.", "vit.blocks.")) for k in keys):
        return "the authors' Paddle TransFER (use load_official_transfer)"
    if "cls_token" in keys and any(k.startswith("blocks.") for k in keys):
        return "a timm ViT (use load_vit_small)"
    if any(k.startswith("input_layer.") for k in keys):
        return "a face.evoLVe IR network (use load_ir50_stem)"
    if "model" in keys and "config" in keys:
        return "a transfer_lib checkpoint (use model_from_checkpoint / --checkpoint)"
    return "an unknown format"


#: one entry per model key: (source key candidates, how to turn the source value into a tensor)
Plan = dict[str, tuple[tuple[str, ...], Callable[[Any], torch.Tensor]]]


def _as_tensor(value: Any) -> torch.Tensor:
    """A tensor of the same shape, 0-d included (``np.ascontiguousarray`` would make it 1-d)."""
    if isinstance(value, np.ndarray):
        if not (value.flags.c_contiguous and value.flags.writeable):
            value = value.copy(order="C")
        return torch.from_numpy(value)
    return value


def _as_count(value: Any) -> torch.Tensor:
    """A BatchNorm ``num_batches_tracked``: 0-d in PyTorch, but a file converted by Paddle
    before 2.5 (no 0-d tensors) holds it with shape (1,)."""
    t = _as_tensor(value)
    return t.reshape(()) if t.numel() == 1 else t


def _transposed(value: Any) -> torch.Tensor:
    return _as_tensor(value).t().contiguous()


def _apply_plan(module: nn.Module, plan: Plan, source: dict[str, Any], skip: Callable[[str], bool],
                report: LoadReport, path: Path, optional: Callable[[str], bool] = lambda k: False,
                strict: bool = True) -> None:
    """Fill every entry of ``module.state_dict()`` as ``plan`` says, or raise.

    ``skip(key)`` names the source keys left out on purpose; ``optional(model_key)`` the model
    keys that may be absent from the file (they keep their value and are noted). A source key
    that is neither used nor skipped raises, unless ``strict`` is False: then it is reported in
    ``report.unexpected`` (and its notes). A missing model key or a wrong shape always raises.
    """
    target = module.state_dict()
    if set(plan) != set(target):
        raise AssertionError(f"adapter table out of date: {sorted(set(target) ^ set(plan))[:5]}")
    used: set[str] = set()
    new_state: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    kept: list[str] = []
    for key, (candidates, convert) in plan.items():
        src = next((c for c in candidates if c in source), None)
        if src is None:
            if optional(key):
                new_state[key] = target[key]
                kept.append(key)
                continue
            missing.append(key if len(candidates) == 1 and candidates[0] == key
                           else f"{key} (looked for {' or '.join(candidates)})")
            continue
        value = convert(source[src])
        if tuple(value.shape) != tuple(target[key].shape):
            how = (f"{tuple(source[src].shape)}, transposed from Paddle's (in, out) layout to "
                   f"{tuple(value.shape)}," if convert is _transposed else f"{tuple(value.shape)}")
            advice = ("Build the model at the size the weights were trained at (size='paper')."
                      if value.ndim and target[key].ndim else
                      "One of the two is a single number (0-d), the other is not: the file "
                      "stores this entry in another form than the model.")
            raise CheckpointError(
                f"{path}: {src} has shape {how} but the model's {key} has shape "
                f"{tuple(target[key].shape)}. {advice}"
            )
        new_state[key] = value.to(target[key].dtype)
        used.update(c for c in candidates if c in source)
        report.loaded.append(key)
    if kept:
        report.notes.append(f"{len(kept)} key(s) not in the file kept their initial value, e.g. "
                            f"{kept[0]}")
    if missing:
        raise CheckpointError(
            f"{path} lacks {len(missing)} key(s) the model needs, e.g. {missing[:4]}; "
            f"the file looks like {_guess_format(source)}"
        )
    unused = [k for k in source if k not in used]
    report.skipped.extend(k for k in unused if skip(k))
    unexpected = [k for k in unused if not skip(k)]
    if unexpected and not strict:
        report.unexpected.extend(unexpected)
        report.notes.append(f"strict=False: {len(unexpected)} key(s) of the file that this "
                            f"adapter does not know were ignored: "
                            + ", ".join(_summarise_keys(unexpected)))
    elif unexpected:
        raise CheckpointError(
            f"{path} has {len(unexpected)} key(s) this adapter does not know, e.g. "
            f"{unexpected[:5]}; the file looks like {_guess_format(source)}"
        )
    module.load_state_dict(new_state, strict=True)


def _module_kinds(module: nn.Module) -> dict[str, type]:
    """Model key -> class of the module that owns it (decides renames and transposes)."""
    kinds = {}
    for name, sub in module.named_modules():
        for pname, _ in list(sub.named_parameters(recurse=False)) + list(sub.named_buffers(recurse=False)):
            kinds[f"{name}.{pname}" if name else pname] = type(sub)
    return kinds


# ---------------------------------------------------------------------------------------------
# face.evoLVe IR-50 -> IR50Stem


def load_ir50_stem(stem: IR50Stem, path: str | os.PathLike, verbose: bool = True) -> LoadReport:
    """Load face.evoLVe's IR-50 (MS-Celeb-1M, ``backbone_ir50_ms1m_epoch120.pth``) into ``stem``.

    Our stem keeps face.evoLVe's module names, so the table is the identity for ``input_layer.*``
    and ``body.0-20.*``. Left out on purpose (and reported): ``body.21-23.*`` (stage 4) and
    ``output_layer.*`` (BN, dropout, flatten, Linear(512*7*7 -> 512), BN1d), which TransFER
    does not use.

    Preprocessing differs: face.evoLVe trained this network on inputs normalised with
    mean = std = 0.5, while TransFER (and ``model.config``) normalise with ImageNet statistics.
    The authors fine-tune with ImageNet statistics from these weights; we do the same, so the
    first layers see slightly shifted inputs at the start of fine-tuning.
    """
    path = Path(path)
    source = read_torch_state_dict(path)
    if not any(k.startswith("input_layer.") for k in source):
        raise CheckpointError(f"{path} is not a face.evoLVe IR-50 state dict: no input_layer.* keys; "
                              f"it looks like {_guess_format(source)}")
    report = LoadReport(f"face.evoLVe IR-50 {path.name} -> stem")
    n_units = len(stem.body)
    plan: Plan = {k: ((k,), _as_tensor) for k in stem.state_dict()}

    def skip(key: str) -> bool:
        m = re.match(r"body\.(\d+)\.", key)
        return key.startswith("output_layer.") or (m is not None and int(m.group(1)) >= n_units)

    _apply_plan(stem, plan, source, skip, report, path,
                optional=lambda k: k.endswith("num_batches_tracked"))
    report.notes.append("face.evoLVe normalised with mean = std = 0.5; TransFER uses ImageNet "
                        "mean/std (model.config)")
    if verbose:
        print(report)
    return report


# ---------------------------------------------------------------------------------------------
# timm ViT-Small (v0.1 weights) -> MSADTransformer

VIT_UNUSED_PREFIXES: tuple[str, ...] = ("patch_embed.", "head.")


def load_vit_small(transformer: MSADTransformer, path: str | os.PathLike,
                   verbose: bool = True) -> LoadReport:
    """Load timm's first ViT-Small (``vit_small_p16_224-15ec54c9.pth``) into ``transformer``.

    Our blocks keep timm's names, so ``cls_token``, ``pos_embed``, ``blocks.{i}.*`` and
    ``norm.*`` map to themselves. Left out on purpose: ``patch_embed.proj.*`` (TransFER's tokens
    come from the CNN and the 1x1 projection) and ``head.*`` (1000 ImageNet classes). The
    position embedding has 197 = 14 * 14 + 1 tokens, as TransFER needs, so it is not
    interpolated; a file with another count is refused with both shapes.

    timm trained these weights with qk_scale = 768 ** -0.5; TransFER's code (and ours) uses
    head_dim ** -0.5 = 96 ** -0.5, so attention starts sharper than in pre-training.
    """
    path = Path(path)
    source = read_torch_state_dict(path)
    if "cls_token" not in source or not any(k.startswith("blocks.") for k in source):
        raise CheckpointError(f"{path} is not a timm ViT state dict (no cls_token / blocks.*); "
                              f"it looks like {_guess_format(source)}")
    report = LoadReport(f"timm ViT-Small {path.name} -> transformer")
    plan: Plan = {k: ((k,), _as_tensor) for k in transformer.state_dict()}
    _apply_plan(transformer, plan, source, lambda k: k.startswith(VIT_UNUSED_PREFIXES), report, path)
    report.notes.append("timm used qk_scale = dim ** -0.5 with these weights; TransFER uses "
                        "head_dim ** -0.5")
    if verbose:
        print(report)
    return report


# ---------------------------------------------------------------------------------------------
# the authors' Paddle TransFER -> TransFER

#: our module prefix -> the authors' (``Paddle/ppcls/arch/backbone/model_zoo/trans_fer.py``,
#: ``la_max.py``, ``irse.py`` in youqingxiaozhua/APViT). ``{i}`` is a LANet index.
OFFICIAL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("stem.", "extractor."),  # IRSE(num_layers=44): input_layer, body.0-20, as face.evoLVe
    ("local_cnn.lanets.{i}.conv1.", "attention.las.{i}.LA_conv1."),
    ("local_cnn.lanets.{i}.bn1.", "attention.las.{i}.bn1."),
    ("local_cnn.lanets.{i}.conv2.", "attention.las.{i}.LA_conv2."),
    ("local_cnn.lanets.{i}.bn2.", "attention.las.{i}.bn2."),
    ("projection.", "convert.proj."),  # MaxHybridFlatten.proj, a 1x1 Conv2D
    ("transformer.", "vit."),  # VisionTransformer(input_type='feature'): same names as timm
    ("head.", "head.fc."),  # LinearClsHead.fc
)

#: the Linear modules, whose Paddle weight is stored (in, out) and must be transposed.
OFFICIAL_LINEAR_MODULES: tuple[str, ...] = (
    "transformer.blocks.{i}.attn.qkv",
    "transformer.blocks.{i}.attn.proj",
    "transformer.blocks.{i}.mlp.fc1",
    "transformer.blocks.{i}.mlp.fc2",
    "head",
)

#: our parameter / buffer name -> the names a Paddle file may use, by owning module class.
BATCHNORM_NAMES: dict[str, tuple[str, ...]] = {
    "weight": ("weight",),
    "bias": ("bias",),
    "running_mean": ("_mean", "running_mean"),
    "running_var": ("_variance", "running_var"),
    "num_batches_tracked": ("num_batches_tracked",),  # Paddle has none: 0 when absent
}
PRELU_NAMES: dict[str, tuple[str, ...]] = {"weight": ("_weight", "weight")}


def _pattern(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(r"\{i\}", r"(\d+)"))


def _official_source_prefix(module_name: str) -> tuple[str, str]:
    """``stem.body.3.res_layer.0`` -> ``extractor.body.3.res_layer.0``, from OFFICIAL_PREFIXES."""
    name = module_name + "."
    for ours, theirs in OFFICIAL_PREFIXES:
        m = _pattern(ours).match(name)
        if m:
            rest = name[m.end():]
            return theirs.replace("{i}", m.group(1)) if m.groups() else theirs, rest
    raise AssertionError(f"no OFFICIAL_PREFIXES entry for {module_name}")


def official_plan(model: TransFER) -> Plan:
    """Model key -> (the Paddle names to look for, conversion): the whole mapping, inspectable."""
    linear_patterns = [re.compile(_pattern(t).pattern + r"$") for t in OFFICIAL_LINEAR_MODULES]
    linear_modules = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    listed = {n for n in linear_modules if any(p.match(n) for p in linear_patterns)}
    if listed != linear_modules:
        raise AssertionError(f"OFFICIAL_LINEAR_MODULES misses {sorted(linear_modules - listed)}")
    kinds = _module_kinds(model)
    plan: Plan = {}
    for key in model.state_dict():
        module_name, _, leaf = key.rpartition(".")
        kind = kinds[key]
        if issubclass(kind, nn.modules.batchnorm._BatchNorm):
            leaves = BATCHNORM_NAMES[leaf]
        elif issubclass(kind, nn.PReLU):
            leaves = PRELU_NAMES[leaf]
        else:
            leaves = (leaf,)
        theirs, rest = _official_source_prefix(module_name)
        convert = _transposed if module_name in linear_modules and leaf == "weight" else _as_tensor
        if leaf == "num_batches_tracked":
            convert = _as_count
        plan[key] = (tuple(f"{theirs}{rest}{leaf_}" for leaf_ in leaves), convert)
    return plan


def load_official_transfer(path: str | os.PathLike, model: TransFER | None = None,
                           strict: bool = True, verbose: bool = True) -> TransFER:
    """The authors' released RAF-DB TransFER (a Paddle ``.pdparams``) as our model, in eval mode.

    Paddle differs from PyTorch in ways the table handles by module, never by shape: a Linear
    weight is stored (in, out) and is transposed (``OFFICIAL_LINEAR_MODULES``); BatchNorm
    statistics are ``_mean`` / ``_variance`` (``running_mean`` / ``running_var`` accepted) and
    there is no ``num_batches_tracked`` (set to 0; a file converted from PyTorch may hold it,
    0-d or of shape (1,), and it is then loaded); a PReLU parameter is ``_weight`` in a Paddle
    model but ``weight`` in files converted from PyTorch (both accepted). The authors' loading
    snippet copies every ``*.weight`` to ``*._weight``; such copies of a weight that was loaded
    are left out and reported. The number of classes is read from ``head.fc.weight``.

    Returns ``build_model("transfer", "paper")`` (or ``model``, if given: any paper-size
    TransFER, e.g. one built with ``msad_mode="token"``) with the weights, in eval mode (MAD and
    MSAD off). The report is printed (``verbose``) and kept as ``model.load_report``. On an
    error, a given ``model`` is left untouched.

    ``strict=False`` loads a file that holds keys this table does not know (Paddle's own
    ``set_dict`` ignores them too) and lists them in ``model.load_report.unexpected`` instead of
    raising. Every key the model needs must still be present with the right shape.
    """
    path = Path(path)
    source = read_paddle_params(path)
    if not any(k.startswith("extractor.") for k in source):
        raise CheckpointError(f"{path} is not the authors' Paddle TransFER (no extractor.* keys); "
                              f"it looks like {_guess_format(source)}")
    head = source.get("head.fc.weight")
    num_classes = int(head.shape[1]) if head is not None and head.ndim == 2 else 7
    if model is None:
        model = build_model("transfer", "paper", num_classes=num_classes)
    plan = official_plan(model)
    report = LoadReport(f"authors' Paddle TransFER {path.name} -> TransFER")
    loaded_sources = {c for cands, _ in plan.values() for c in cands if c in source}

    def skip(key: str) -> bool:
        # the authors' snippet duplicates *.weight as *._weight; identical copies are redundant
        if key.endswith("._weight"):
            twin = key[: -len("._weight")] + ".weight"
            return twin in loaded_sources and np.array_equal(source[twin], source[key])
        return False

    _apply_plan(model, plan, source, skip, report, path,
                optional=lambda k: k.endswith("num_batches_tracked"), strict=strict)
    report.notes.append(f"Linear weights transposed (in, out) -> (out, in) for "
                        f"{', '.join(OFFICIAL_LINEAR_MODULES)}")
    model.load_report = report
    if verbose:
        print(report)
    return model.eval()
