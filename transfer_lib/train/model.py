"""The model side of training: the model and its initialisations, the optimiser, mixed precision
and the compiled step (forward, loss and accuracy as one graph)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from transfer_lib.train.config import COMPILE_MODES, TrainConfig
from transfer_lib.train.profiles import Profile
from transfer_lib.utils.errors import CheckpointError, TransferError, not_a_file


def build_training_model(cfg: TrainConfig, prof: Profile, class_names: list[str]):
    """The model of ``prof.variant`` at ``prof.size`` for these classes, with the paper's
    initialisations loaded when ``cfg.ir50`` / ``cfg.vit`` are given."""
    from transfer_lib.models import make_config, model_from_config

    overrides = dict(cfg.model_overrides)
    if prof.input_size and "input_size" not in overrides:
        overrides["input_size"] = prof.input_size
    if cfg.msad_mode:
        overrides["msad_mode"] = cfg.msad_mode
    if cfg.map_regulariser:
        overrides["map_regulariser"] = cfg.map_regulariser
    overrides.setdefault("proj_init", prof.proj_init)
    try:
        mc = make_config(prof.variant, prof.size, num_classes=len(class_names),
                         class_names=tuple(class_names), **overrides)
    except (TypeError, ValueError) as err:
        raise TransferError(f"model settings rejected: {err}") from None
    model = model_from_config(mc)
    for path, what in ((cfg.ir50, "ir50"), (cfg.vit, "vit")):
        if path is None:
            continue
        if not Path(path).is_file():
            raise CheckpointError(not_a_file(f"--{what}", path))
        from transfer_lib.weights import convert as pretrained  # lazily: written by another module

        if what == "ir50":
            pretrained.load_ir50_stem(model.stem, path)
        else:
            if not hasattr(model, "transformer"):
                raise TransferError(f"--vit needs a variant with a transformer, not {prof.variant}")
            pretrained.load_vit_small(model.transformer, path)
    return model, mc


def build_optimiser(model: torch.nn.Module, prof: Profile) -> torch.optim.Optimizer:
    """SGD (the paper: momentum, weight decay on every parameter) or AdamW (no decay on norms,
    biases, position embedding and cls token). On CUDA the fused implementation (one kernel for
    every parameter's update, and no host sync under a GradScaler); on a CPU torch's default."""
    fused = _fused_kwargs(model)
    if prof.optimiser == "sgd":
        return torch.optim.SGD(model.parameters(), lr=prof.lr, momentum=prof.momentum,
                               weight_decay=prof.weight_decay, **fused)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith(("pos_embed", "cls_token")) else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": prof.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=prof.lr, **fused)


def _fused_kwargs(model: torch.nn.Module) -> dict:
    """``{"fused": True}`` when every parameter is on CUDA and this torch fuses SGD and AdamW."""
    import inspect

    on_cuda = all(p.is_cuda for p in model.parameters())
    has_fused = all("fused" in inspect.signature(cls).parameters
                    for cls in (torch.optim.SGD, torch.optim.AdamW))
    return {"fused": True} if on_cuda and has_fused else {}


def pick_amp_dtype(device: str | torch.device) -> str:
    """The autocast dtype for ``device``: ``"bf16"`` on a CPU and on GPUs that compute bf16
    natively (compute capability 8.0 and up: A100, H100, L4, RTX 30xx, with a CUDA build that
    supports it), ``"fp16"`` elsewhere (T4, V100), which then trains with a GradScaler whose
    state goes into every checkpoint. (``torch.cuda.is_bf16_supported()`` says True on a T4 too,
    counting slow emulation, so emulation is excluded and the capability decides.)"""
    device = torch.device(device)
    if device.type != "cuda":
        return "bf16"
    if torch.cuda.get_device_capability(device) < (8, 0):
        return "fp16"
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch without the keyword counts native support only
        native = torch.cuda.is_bf16_supported()
    return "bf16" if native else "fp16"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX): bf16 autocast pays only
    there; elsewhere it is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def make_forward_loss(net, label_smoothing: float = 0.0, device_type: str = "cpu",
                      amp_dtype: torch.dtype | None = None):
    """The part of a training step that ``torch.compile`` takes as one graph.

    Returns ``forward_loss(images (B, 3, S, S), labels (B,)) -> (loss (), correct ())``: the
    mean cross-entropy of ``net``'s logits (in fp32, with ``label_smoothing``) and the number of
    right answers, under autocast in ``amp_dtype`` when given. It has no graph break for any
    variant (tests/test_train_compile.py), so :func:`compile_step` can ask for ``fullgraph``.
    """
    def forward_loss(images: torch.Tensor, labels: torch.Tensor):
        with torch.autocast(device_type, dtype=amp_dtype or torch.bfloat16,
                            enabled=amp_dtype is not None):
            logits = net(images)  # (B, classes)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
        correct = (logits.detach().argmax(1) == labels).sum()  # () int64, stays on the device
        return loss, correct

    return forward_loss


def update(optimiser: torch.optim.Optimizer, loss: torch.Tensor,
           scaler: torch.amp.GradScaler | None = None, grad_clip: float = 0.0,
           parameters=None) -> None:
    """One optimiser step from ``loss``, the library's only one (the trainer, ``pretrain`` and
    ``bench train`` take it): clear the gradients, back-propagate (through ``scaler`` under
    fp16), clip their global norm to ``grad_clip`` when it is positive (unscaled first), step,
    and let the scaler adapt. Without a scaler it is ``zero_grad``, ``backward``, ``step``."""
    optimiser.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
    if grad_clip > 0:
        if scaler is not None:
            scaler.unscale_(optimiser)
        if parameters is None:
            parameters = [p for group in optimiser.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    if scaler is None:
        optimiser.step()
    else:
        scaler.step(optimiser)
        scaler.update()


def compile_step(fn, mode: str | None = "default", fullgraph: bool = True):
    """``torch.compile(fn)`` in ``mode`` (one of COMPILE_MODES). ``fullgraph``: fail on a graph
    break instead of silently splitting the step (off under DDP, whose optimiser splits it)."""
    if mode not in (None, *COMPILE_MODES):
        raise TransferError(f"compile mode {mode!r} is not one of {', '.join(COMPILE_MODES)}")
    return torch.compile(fn, fullgraph=fullgraph, mode=None if mode in (None, "default") else mode)
