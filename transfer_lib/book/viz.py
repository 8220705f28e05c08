"""Pictures for the book: image and map grids, overlays, the pipeline diagram, class counts.

Every chapter of the book (``book/01_preface.ipynb`` onwards) draws through these helpers so that
the notebooks hold the idea and not the plotting code. Each function returns the matplotlib
``Figure`` (or ``Axes``) it drew on; nothing here calls ``plt.show()``.

matplotlib and seaborn are optional dependencies (``pip install transfer_lib[viz]``); they are
imported inside the functions so that ``import transfer_lib.book.viz`` is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transfer_lib.train.profiles import project_root  # one notion of the project's root
from transfer_lib.weights.fetch import WEIGHT_DIRS, find_weights  # noqa: F401  (chapters)

__all__ = [
    "use_book_style", "describe_setup", "find_weights", "to_image", "show_grid", "overlay", "plot_class_counts",
    "draw_pipeline", "plot_mask", "record_shapes", "word_list", "markdown_rows",
]


#: The width of the book's text column at 100 dpi (about 800 px at a 1280 px window, with
#: ``_static/book.css``): a figure no wider than this is shown at its own size, so its text is
#: as large as the font sizes below say; a wider one is scaled down, text included.
COLUMN_INCHES = 8.0


def use_book_style() -> None:
    """One look for every figure of the book: 10 pt text (about 14 px at 100 dpi, near the
    page's 16 px body text), no top/right spines, 100 dpi."""
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.dpi": 100,
        "savefig.dpi": 100,
        "figure.figsize": (COLUMN_INCHES * 0.8, 3.2),
        "font.size": 10,
        "axes.titlesize": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "image.interpolation": "nearest",
    })


def word_list(items: Sequence[str], last: str = "and", empty: str = "none") -> str:
    """``"a, b and c"``: items for a sentence, ``last`` before the final one, ``empty`` if none."""
    items = [str(i) for i in items]
    if not items:
        return empty
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def markdown_rows(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table: ``header`` then one line per row; a ``|`` inside a cell is escaped."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["-" * 3] * len(header)), *map(line, rows)])


def describe_setup(profile: Any, rafdb: str | os.PathLike | None = None) -> str:
    """Two lines for the top of a chapter: the active profile and the data it would run on.

    ``profile`` is a :class:`transfer_lib.train.profiles.Profile`; ``rafdb`` the RAF-DB root found by
    :func:`transfer_lib.train.profiles.find_rafdb` (None: the chapter falls back on synthetic faces).
    """
    data = (f"RAF-DB at {rafdb}" if rafdb is not None
            else "synthetic faces in RAF-DB's layout (RAF-DB not found; set TRANSFER_RAFDB)")
    return (f"profile: {profile.name} - {profile.description}\n"
            f"data:    {data}")


def to_image(x: torch.Tensor | np.ndarray | Any, mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None) -> np.ndarray:
    """An (H, W, 3) or (H, W) float array in [0, 1] from a tensor, an array or a PIL image.

    A tensor is taken as (3, H, W) or (H, W); with ``mean`` and ``std`` it is un-normalised
    first (what ``transforms.Normalize`` did is undone). A uint8 array or PIL image is divided
    by 255.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().float().cpu()
        if t.ndim == 3:
            if mean is not None and std is not None:
                t = t * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
            t = t.permute(1, 2, 0)
        return t.clamp(0, 1).numpy()
    a = np.asarray(x)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return np.clip(a.astype(np.float32), 0.0, 1.0)


def show_grid(items: Sequence[Any], titles: Sequence[str] | None = None, ncols: int | None = None,
              cmap: str | None = None, vmin: float | None = None, vmax: float | None = None,
              size: float = 1.5, suptitle: str | None = None,
              row_labels: Sequence[str] | None = None, colorbar: bool = False):
    """Images or 2-D maps in a grid, one per cell; returns the Figure.

    ``items`` are anything :func:`to_image` accepts (already un-normalised), or 2-D arrays /
    tensors shown with ``cmap`` between ``vmin`` and ``vmax``. ``row_labels`` name the rows on
    the left; ``colorbar`` adds one shared colour bar for maps. ``size`` (inches a cell) shrinks
    so that the grid fits :data:`COLUMN_INCHES`.
    """
    import matplotlib.pyplot as plt

    n = len(items)
    ncols = ncols or n
    nrows = (n + ncols - 1) // ncols
    size = min(size, COLUMN_INCHES / ncols)  # wider would be scaled down, titles too
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3 * bool(suptitle)),
                             squeeze=False)
    shown = None
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i >= n:
            ax.axis("off")
            continue
        item = items[i]
        if isinstance(item, torch.Tensor) and item.ndim == 2:
            item = item.detach().float().cpu().numpy()
        if isinstance(item, np.ndarray) and item.ndim == 2:
            shown = ax.imshow(item, cmap=cmap or "viridis", vmin=vmin, vmax=vmax)
        else:
            ax.imshow(to_image(item))
        if titles is not None and i < len(titles):
            ax.set_title(titles[i], fontsize=9)
    if row_labels is not None:
        for r, label in enumerate(row_labels[:nrows]):
            axes[r, 0].set_ylabel(label, fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    if colorbar and shown is not None:
        fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8)
    return fig


def overlay(image: Any, heat: torch.Tensor | np.ndarray, alpha: float = 0.5,
            cmap: str = "jet") -> np.ndarray:
    """``image`` (anything :func:`to_image` takes) with ``heat`` (h, w), upsampled bilinearly
    to the image's size and scaled to [0, 1], blended on top: an (H, W, 3) array in [0, 1]."""
    import matplotlib

    img = to_image(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    h = torch.as_tensor(np.asarray(heat, dtype=np.float32))[None, None]
    h = torch.nn.functional.interpolate(h, size=img.shape[:2], mode="bilinear", align_corners=False)
    h = h[0, 0].numpy()
    h = (h - h.min()) / max(float(h.max() - h.min()), 1e-8)
    colour = matplotlib.colormaps[cmap](h)[..., :3]
    # float rounding can leave values a hair above 1, which matplotlib warns about when drawing
    return np.clip((1 - alpha) * img + alpha * colour, 0.0, 1.0)


def plot_class_counts(counts: Sequence[int], class_names: Sequence[str], title: str = "",
                      ax: Any = None):
    """A seaborn bar plot of images per class, each bar labelled with its count and share."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 2.6))
    names = list(class_names)
    sns.barplot(x=names, y=list(counts), hue=names, palette="crest", legend=False, ax=ax)
    total = float(sum(counts))
    for i, c in enumerate(counts):
        ax.annotate(f"{c}\n{100 * c / total:.0f}%", (i, c), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("images")
    ax.set_ylim(0, max(counts) * 1.3)
    ax.set_title(title)
    return ax


#: Scale of the pipeline diagram's text: the figure is drawn 10 inches wide and shown at the
#: column's width, so its text is enlarged to read like the body text.
_PIPELINE_FONT = 1.25


def draw_pipeline(ax: Any = None, config: Any = None):
    """TransFER's pipeline (the paper's Fig. 2) as a box diagram, with the shapes of ``config``
    (a :class:`~transfer_lib.models.config.TransFERConfig`; the paper's sizes by default)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if config is None:
        from transfer_lib.models.config import make_config

        config = make_config()
    c = config
    s, g, ch, d = c.input_size, c.token_grid, c.stem_channels, c.embed_dim
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.4))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 36)
    ax.axis("off")

    def box(x, y, w, h, text, colour):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.4,rounding_size=1.2",
                                    fc=colour, ec="0.3", lw=0.8))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=7.5 * _PIPELINE_FONT)

    def arrow(x0, y0, x1, y1, text=""):
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=9,
                                     lw=0.8, color="0.25"))
        if text:
            ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 1.2, text, ha="center", va="bottom",
                    fontsize=6.5 * _PIPELINE_FONT, color="0.25")

    grey, green, orange, blue = "#eeeeee", "#d8ecd3", "#fbe3c8", "#d6e4f5"
    box(0.5, 15, 8, 6, f"face\n3x{s}x{s}", grey)
    box(12, 15, 11, 6, "stem CNN\nIR-50\nstages 1-3", grey)
    arrow(9.3, 18, 11.6, 18)
    # local CNN
    ax.add_patch(FancyBboxPatch((27, 3), 27, 30, boxstyle="round,pad=0.3,rounding_size=1.5",
                                fc="white", ec=green.replace("d8", "8a"), lw=1.0, ls="--"))
    ax.text(40.5, 34.3, "local CNN", ha="center", fontsize=8 * _PIPELINE_FONT, color="#3d6b35")
    for i, y in enumerate((24, 15)):
        box(28.5, y, 8, 5, f"LANet {i + 1}", green)
        arrow(23.8, 18, 28.1, y + 2.5)
        arrow(36.9, y + 2.5, 39.6, y + 2.5)
    box(40, 15, 5.5, 14, f"MAD\np1={c.mad_p}", green)
    box(48, 19.5, 4.5, 5, "max", green)
    arrow(45.9, 22, 47.6, 22)
    box(47.5, 5.5, 5.5, 5, "x", green)
    arrow(50.2, 19.1, 50.2, 11.1)
    ax.annotate("", xy=(47.1, 8), xytext=(17.5, 14.6),
                arrowprops=dict(arrowstyle="-|>", lw=0.8, color="0.25",
                                connectionstyle="angle,angleA=-90,angleB=180,rad=2"))
    ax.text(28, 6.2, f"feature map {ch}x{g}x{g}", fontsize=6.5 * _PIPELINE_FONT, color="0.25")
    # projection and transformer
    box(57, 5.5, 9, 5, f"1x1 conv\n{ch}->{d}", orange)
    arrow(53.4, 8, 56.6, 8)
    box(57, 15, 9, 8, f"{g * g} tokens\n+ cls\n+ pos. emb.", orange)
    arrow(61.5, 11, 61.5, 14.6)
    box(69, 12, 12, 14, f"{c.depth} x block\nLN-MSAD-attn\nLN-MLP\n\nMSAD\np2={c.msad_p}", blue)
    arrow(66.4, 19, 68.6, 19)
    box(84, 15, 6.5, 8, f"cls\ntoken\n{d}", blue)
    arrow(81.4, 19, 83.6, 19)
    box(93, 15, 6.5, 8, f"FC\n{c.num_classes}\nclasses", grey)
    arrow(90.9, 19, 92.6, 19)
    ax.text(75, 3.5, "MSAD transformer", ha="center", fontsize=8 * _PIPELINE_FONT, color="#2f5a8a")
    return ax


def plot_mask(mask: torch.Tensor | np.ndarray, title: str = "", xlabel: str = "",
              ylabel: str = "", ax: Any = None, xticks: Sequence[int] | None = None):
    """A 0/1 keep-mask as a picture: kept cells light, zeroed cells dark red."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    m = np.asarray(torch.as_tensor(mask).detach().float().cpu())
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 3))
    ax.imshow(m, cmap=ListedColormap(["#b2182b", "#f2f2f2"]), vmin=0, vmax=1, aspect="auto",
              interpolation="nearest")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if xticks is not None:
        ax.set_xticks(list(xticks))
    return ax


def record_shapes(model: nn.Module, x: torch.Tensor,
                  modules: dict[str, nn.Module] | Callable[[str, nn.Module], bool]
                  ) -> list[tuple[str, tuple[int, ...]]]:
    """Run ``model(x)`` without gradients and return ``(name, output shape)`` for the chosen
    submodules, in the order they ran.

    ``modules`` is a dict name -> module, or a predicate on ``model.named_modules()``.
    Forward hooks do the recording and are removed afterwards.
    """
    if callable(modules) and not isinstance(modules, dict):
        chosen = {n: m for n, m in model.named_modules() if modules(n, m)}
    else:
        chosen = dict(modules)
    seen: list[tuple[str, tuple[int, ...]]] = []
    handles = [m.register_forward_hook(
        lambda _m, _i, out, name=name: seen.append(
            (name, tuple((out[0] if isinstance(out, tuple) else out).shape))))
        for name, m in chosen.items()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


# =============================================================================================
# Chapters 6-9: run directories, training curves, confusion matrix, attention rollout, Grad-CAM
# (this section is maintained with chapters 6-9; the helpers above are chapters 1-5's)
# =============================================================================================
__all__ += [
    "project_root", "book_run_dir", "transfer_run_config", "read_metrics",
    "plot_confusion", "attention_rollout", "token_reshape_transform",
]


def book_run_dir(name: str, profile: Any) -> Path:
    """``runs/book/<profile>/<name>`` under :func:`project_root`: where the book's chapters keep
    their training runs, so that every chapter finds them whatever its working directory."""
    return project_root() / "runs" / "book" / getattr(profile, "name", str(profile)) / name


def transfer_run_config(profile: Any, rafdb: str | os.PathLike | None = None) -> dict:
    """The ``TrainConfig`` fields of chapter 6's TransFER run; chapters 8 and 9 train it with the
    same call when its run directory is missing, so each chapter stands alone.

    The ``paper`` profile trains on RAF-DB (``rafdb``) from the IR-50 and ViT-Small files when the
    reader has them (:func:`find_weights`); without one of them it says so on stderr and trains
    from scratch (``from_scratch``: the trainer refuses otherwise). The smaller profiles train on
    the synthetic set.
    """
    cfg: dict = {"profile": profile.name, "seed": 0, "progress": False}
    if profile.name == "paper":
        if rafdb is not None:
            cfg["data"] = str(rafdb)
        missing = []
        for key, filename, env in (("ir50", "backbone_ir50_ms1m_epoch120.pth", "TRANSFER_IR50"),
                                   ("vit", "vit_small_p16_224-15ec54c9.pth", "TRANSFER_VIT")):
            found = find_weights(filename, env)
            if found is not None:
                cfg[key] = str(found)
            else:
                missing.append(f"{filename} (weights/ or ${env})")
        if missing:
            import sys

            cfg["from_scratch"] = True
            print(f"note: {' and '.join(missing)} not found: the paper profile trains from "
                  f"random weights, which its SGD at 1e-4 does not learn from", file=sys.stderr)
    return cfg


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch lines of a run's ``metrics.jsonl`` (see ``transfer_lib.train``)."""
    import json

    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def plot_confusion(confusion: Sequence[Sequence[int]], class_names: Sequence[str],
                   title: str = "", ax: Any = None):
    """A seaborn heat map of the confusion matrix, each row normalised to the share of that true
    class (so the diagonal is the per-class accuracy), annotated in %."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    m = np.asarray(confusion, dtype=float)
    shares = m / np.maximum(m.sum(axis=1, keepdims=True), 1.0)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 3.8))
    sns.heatmap(100 * shares, annot=True, fmt=".0f", cmap="Blues", vmin=0, vmax=100, cbar=False,
                xticklabels=class_names, yticklabels=class_names, ax=ax, annot_kws={"fontsize": 9})
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return ax


def attention_rollout(attentions: Sequence[torch.Tensor], residual: bool = True,
                      head_fusion: str = "mean") -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020) through a stack of blocks.

    attentions: one (B, heads, N, N) softmax tensor per block, first block first (what
    ``forward_with_details`` returns). Heads are fused (``mean``, ``max`` or ``min``); with
    ``residual`` the skip connection is modelled as 0.5 A + 0.5 I, rows renormalised. Returns
    the (B, N, N) product A_L ... A_1: row i says how much each input token flowed into output
    token i. Row 0 (the cls token) without its first entry, reshaped to the token grid, is the
    picture of what the classifier read.
    """
    if head_fusion not in ("mean", "max", "min"):
        raise ValueError(f"head_fusion={head_fusion!r} is not mean, max or min")
    rollout = None
    for a in attentions:
        a = a.detach().float()
        fused = {"mean": a.mean(1), "max": a.amax(1), "min": a.amin(1)}[head_fusion]  # (B, N, N)
        if residual:
            eye = torch.eye(fused.shape[-1], device=fused.device, dtype=fused.dtype)
            fused = 0.5 * fused + 0.5 * eye
            fused = fused / fused.sum(dim=-1, keepdim=True)
        rollout = fused if rollout is None else fused @ rollout
    if rollout is None:
        raise ValueError("attention_rollout needs at least one block's attention")
    return rollout


def token_reshape_transform(grid: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """For pytorch-grad-cam on a transformer layer: (B, 1 + grid * grid, C) tokens -> (B, C,
    grid, grid), dropping the cls token, so that activations and gradients look like a CNN's."""

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        b, n, c = tokens.shape
        if n != 1 + grid * grid:
            raise ValueError(f"expected 1 + {grid}x{grid} tokens, got {n}")
        return tokens[:, 1:, :].reshape(b, grid, grid, c).permute(0, 3, 1, 2)  # (B, C, h, w)

    return reshape


# =============================================================================================
# Helpers the chapters use without teaching them (chapters 3-5 and 8): moved here so that each
# chapter's code is what it explains
# =============================================================================================
__all__ += ["randomise_batchnorm", "show_regularisers", "plot_msad_modes", "show_mad_msad_drop",
            "show_ablation_maps", "plot_branch_diversity", "diversity_steps", "diversity_verdict",
            "switch_predictions", "explorer_states"]


def randomise_batchnorm(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give every BatchNorm2d of ``module`` non-trivial running statistics and affine parameters
    (means ~ N(0, 0.5^2), variances and scales in [0.5, 1.5), shifts ~ N(0, 0.1^2)), drawn from
    ``generator``, so that comparing two modules in evaluation mode means something: a fresh BN
    layer is the identity there. Returns ``module``."""
    with torch.no_grad():
        for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
            c = bn.num_features
            bn.running_mean.copy_(torch.randn(c, generator=generator) * 0.5)
            bn.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
            bn.weight.copy_(torch.rand(c, generator=generator) + 0.5)
            bn.bias.copy_(torch.randn(c, generator=generator) * 0.1)
    return module


def show_regularisers(maps: torch.Tensor, regularisers: dict[str, nn.Module], draws: int = 4,
                      seed: int = 3, suptitle: str | None = None):
    """What each map regulariser does to the same maps (B, G, G): each (switched to training
    mode) is applied to ``draws`` copies of them from ``torch.manual_seed(seed)``, one row per
    regulariser, ``draws`` x B maps a row, all on the original maps' colour scale (values a
    regulariser rescales above it saturate; zeros are dark). Returns the Figure."""
    base = torch.stack([maps.detach()] * draws)  # (draws, B, G, G)
    items, labels = [], []
    for name, reg in regularisers.items():
        torch.manual_seed(seed)
        with torch.no_grad():
            out = reg.train()(base)
        items += [m for draw in out for m in draw]
        labels.append(name)
    b = maps.shape[0]
    titles = [f"draw {k + 1}\nLANet {i + 1}" for k in range(draws) for i in range(b)]
    return show_grid(items, titles, ncols=draws * b, cmap="viridis", vmin=0,
                     vmax=float(maps.max()), size=1.1, row_labels=labels, suptitle=suptitle)


def plot_msad_modes(head_zeroed: torch.Tensor, token_zeroed: torch.Tensor):
    """MSAD's two masks for the same samples side by side: ``head_zeroed`` (n, h), True where
    the head mode zeroed a head of a sample in every token, and ``token_zeroed`` (n, tokens),
    True where the token mode zeroed a token in every head. Returns the Figure."""
    import matplotlib.pyplot as plt

    heads = head_zeroed.shape[1]
    fig, axes = plt.subplots(1, 2, figsize=(9, 2.8),
                             gridspec_kw={"width_ratios": [heads, token_zeroed.shape[1]]})
    plot_mask(~head_zeroed.T, title='mode="head" (the paper): one head of a sample',
              xlabel="sample", ylabel="head", ax=axes[0])
    plot_mask(~token_zeroed.T, title=f'mode="token" (authors\' code): one of tokens 0-{heads - 1}',
              xlabel="sample", ylabel="token (0 = cls)", ax=axes[1])
    axes[1].axhline(heads - 0.5, color="0.4", lw=0.8, ls="--")
    fig.tight_layout()
    return fig


# =============================================================================================
# Chapter 6: a run's curves with its validation split, and where it errs
# =============================================================================================
__all__ += ["plot_run_curves", "plot_errors", "recall_by_share"]


def plot_run_curves(metrics: Sequence[dict], chance: float | None = None, title: str = ""):
    """Training loss (left) and train, validation and test accuracy (right) per epoch; returns
    the Figure. Validation and test are drawn at the epochs that were evaluated; a run written
    before the validation split has no validation line. ``chance`` draws the accuracy of always
    answering the most frequent class."""
    import matplotlib.pyplot as plt

    epochs = [m["epoch"] for m in metrics]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 2.8))
    a.plot(epochs, [m["loss"] for m in metrics], "o-", ms=3)
    a.set_xlabel("epoch")
    a.set_ylabel("training loss")
    b.plot(epochs, [100 * m["train_accuracy"] for m in metrics], "o-", ms=3, label="train")
    for key, label, marker in (("val_accuracy", "validation", "^-"), ("test_accuracy", "test", "s-")):
        scored = [m for m in metrics if m.get(key) is not None]
        if scored:
            b.plot([m["epoch"] for m in scored], [100 * m[key] for m in scored], marker, ms=3,
                   label=label)
    return _finish_curves(fig, a, b, chance, title)


def plot_errors(confusion: Sequence[Sequence[int]], class_names: Sequence[str], title: str = ""):
    """The confusion matrix, rows normalised to their true class (left, :func:`plot_confusion`),
    beside each class's accuracy, its diagonal (right); returns the Figure."""
    import matplotlib.pyplot as plt

    m = np.asarray(confusion, dtype=float)
    support = m.sum(axis=1)
    recall = np.where(support > 0, 100 * np.diag(m) / np.maximum(support, 1.0), np.nan)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9.5, 3.6), gridspec_kw={"width_ratios": [1.2, 1]})
    plot_confusion(confusion, class_names, title=title, ax=a)
    b.barh(list(class_names)[::-1], recall[::-1], color="#4c72b0")
    b.set_xlabel("per-class accuracy (%)")
    b.set_xlim(0, 100)
    fig.tight_layout()
    return fig


def recall_by_share(confusion: Sequence[Sequence[int]], class_names: Sequence[str],
                    rarest: int = 3) -> tuple[Any, dict]:
    """Each class's recall beside its share of the evaluated split, rarest first, and what the
    table says about the ``rarest`` classes: returns (DataFrame with ``share (%)`` and
    ``recall (%)``, dict of ``rarest`` (names), ``rare_recall`` and ``other_recall`` (mean
    recalls, %), ``gap`` (other minus rare, points), ``rare_errors`` and ``errors`` (counts),
    ``rho`` (Spearman's rank correlation of share and recall) and ``confusion`` (the largest
    off-diagonal cell: true name, predicted name, count)). Classes without images are left out
    of the means and the correlation."""
    import pandas as pd

    m = np.asarray(confusion, dtype=np.int64)
    names = list(class_names)
    support = m.sum(axis=1)
    recall = np.where(support > 0, 100 * np.diag(m) / np.maximum(support, 1), np.nan)
    table = pd.DataFrame({"share (%)": 100 * support / max(int(support.sum()), 1),
                          "recall (%)": recall}, index=names).sort_values("share (%)")
    present = table.dropna()
    rare, rest = present.iloc[:rarest], present.iloc[rarest:]
    rare_idx = [names.index(c) for c in rare.index]
    off = m.copy()
    np.fill_diagonal(off, 0)
    true_i, pred_i = divmod(int(off.argmax()), len(names))
    ranks = present.rank()
    return table, {
        "rarest": list(rare.index),
        "rare_share": float(rare["share (%)"].sum()),
        "rare_recall": float(rare["recall (%)"].mean()),
        "other_recall": float(rest["recall (%)"].mean()) if len(rest) else float("nan"),
        "gap": float(rest["recall (%)"].mean() - rare["recall (%)"].mean()) if len(rest)
        else float("nan"),
        "rare_errors": int((support[rare_idx] - np.diag(m)[rare_idx]).sum()),
        "errors": int(m.sum() - np.trace(m)),
        "rho": float(ranks["share (%)"].corr(ranks["recall (%)"])),
        "confusion": (names[true_i], names[pred_i], int(off.max())),
    }


def show_mad_msad_drop(model: nn.Module, face: Any, x: torch.Tensor, before: Any,
                       max_seed: int = 1000) -> dict:
    """MAD and MSAD on one face (chapter 8): only those modules are switched to training mode
    (BatchNorm stays in evaluation mode), and the first seed below ``max_seed`` whose pass of
    ``x`` (1, 3, S, S) zeroes a LANet map and a head of the last block is drawn against
    ``before`` (the evaluation pass's ``forward_with_details``): the maps over ``face``, then the
    last block's cls-token attention per head. The model is put back in evaluation mode.

    Returns ``seed``, ``map`` and ``head`` (0-based, the ones dropped), ``maps_zeroed`` and
    ``heads_uniform`` (how many: a zeroed head's weights are uniform, since Q = K = 0)."""
    grid, heads = model.config.token_grid, model.config.num_heads
    model.local_cnn.regulariser.train()
    for block in model.transformer.blocks:
        block.attn.msad.train()
    try:
        for seed in range(max_seed):
            torch.manual_seed(seed)
            with torch.no_grad():
                dropped = model.forward_with_details(x)
            zero_maps = (dropped.lanet_maps[0] == 0).flatten(1).all(1)  # (B,)
            cls_rows = dropped.attentions[-1][0, :, 0]  # (h, N + 1)
            uniform = (cls_rows - 1 / (grid * grid + 1)).abs().amax(-1) < 1e-6  # (h,)
            if zero_maps.any() and uniform.any():
                break
        else:
            raise RuntimeError(f"no seed below {max_seed} drops both a map and a head")
    finally:
        model.eval()
    m, h = int(zero_maps.nonzero()[0]), int(uniform.nonzero()[0])
    branches = dropped.lanet_maps.shape[1]
    after = [overlay(face, mp) if i != m else np.zeros((grid, grid))
             for i, mp in enumerate(dropped.lanet_maps[0])]
    show_grid([face, *[overlay(face, mp) for mp in before.lanet_maps[0]], face, *after],
              ["evaluation", *[f"LANet {i + 1}" for i in range(branches)], f"MAD, seed {seed}",
               *[f"LANet {i + 1}" + (" dropped" if i == m else "") for i in range(branches)]],
              ncols=branches + 1, size=1.7, cmap="gray", vmin=0, vmax=1)
    rows = [a[-1][0, :, 0, 1:].reshape(heads, grid, grid) for a in
            (before.attentions, dropped.attentions)]
    show_grid([*rows[0], *rows[1]],
              [f"head {k + 1}" for k in range(heads)]
              + [f"head {k + 1}" + (" dropped" if k == h else "") for k in range(heads)],
              ncols=heads, size=1.5, cmap="viridis",
              row_labels=["evaluation", f"MSAD, seed {seed}"],
              suptitle="last block: cls token's attention over the grid, per head")
    return {"seed": seed, "map": m, "head": h, "maps_zeroed": int(zero_maps.sum()),
            "heads_uniform": int(uniform.sum())}


def show_ablation_maps(maps: dict, committed: dict, rows: Sequence[str], seed: int = 0,
                       suptitle: str | None = None):
    """The attention study's figure (chapter 8): for each face of the maps file (one row of the
    grid), the face, then for each of ``rows`` at ``seed`` its LANet maps A_1..A_B (where it
    has LANets) and its rollout's cls row, each overlay scaled to its own range. ``maps`` and
    ``committed`` are :func:`transfer_lib.book.attention.load_maps` and ``load_attention`` of the
    same results. Returns the Figure."""
    roman = dict(zip(rows, ("(i)", "(ii)", "(iii)", "(iv)", "(v)", "(vi)")))
    pixels = maps["faces"]  # (faces, S, S, 3) uint8: what the models saw, unnormalised
    items, titles = [], []
    for f in range(len(pixels)):
        items.append(pixels[f])
        titles.append("face" if f == 0 else "")
        for row in rows:
            key = f"{row}.seed{seed}"
            lanet = maps[f"{key}.lanet"][f] if f"{key}.lanet" in maps else []  # (B, G, G)
            cells = [(f"A{i + 1}", a) for i, a in enumerate(lanet)]
            for what, heat in [*cells, ("rollout", maps[f"{key}.rollout"][f])]:
                items.append(overlay(pixels[f], heat))
                titles.append(f"{roman[row]} {what}" if f == 0 else "")
    return show_grid(items, titles, ncols=len(items) // len(pixels), size=1.05,
                     row_labels=[f["class"] for f in committed["faces"]], suptitle=suptitle)


def plot_branch_diversity(per_run: Any, chance: float, title: str = ""):
    """Overlap and correlation of the two LANet maps per run (chapter 8): ``per_run`` a
    DataFrame with columns row, seed, overlap, correlation; a bar per row (the mean over seeds),
    a dot per run, a dashed line at ``chance`` (the overlap of random top regions) and at 0
    (no correlation). Returns the Figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    for ax, k in zip(axes, ("overlap", "correlation")):
        sns.barplot(per_run, x="row", y=k, errorbar=None, color="#c6dbef", ax=ax)
        sns.stripplot(per_run, x="row", y=k, hue="seed", palette="dark:#2f5a8a", size=4,
                      jitter=0.15, legend=False, ax=ax)
        ax.axhline(chance if k == "overlap" else 0.0, color="0.5", ls="--", lw=0.8)
        ax.set_ylim((0, 1) if k == "overlap" else (-1, 1))
        ax.set_ylabel("IoU of the top regions" if k == "overlap" else "correlation")
        ax.set_xlabel("")
        ax.tick_params(axis="x", labelsize=7, rotation=30)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def diversity_steps(committed: dict):
    """The attention study's paired steps as a DataFrame indexed by (step, measure): n, the mean
    difference (later row minus earlier), its 95 % interval and the verdict, for the overlap and
    the correlation of every comparison in ``committed`` (``load_attention``'s result)."""
    import pandas as pd

    return pd.DataFrame([
        {"step": f"{c['before']} -> {c['to']}", "what": c["what"], "measure": k, "n": d["n"],
         "difference": d["mean"], "low": d["low"], "high": d["high"], "verdict": d["verdict"]}
        for c in committed["comparisons"] for k in ("overlap", "correlation")
        for d in [c["differences"][k]]]).set_index(["step", "measure"])


def diversity_verdict(committed: dict, chance_line: float) -> dict:
    """What the attention study says about MAD, every figure formatted from ``committed``
    (``load_attention``'s result): ``text``, markdown giving the step ``local -> local_mad`` of
    overlap and correlation with their intervals and the direction they lean, the three rows'
    means against the chance overlap, how many runs of the two rows ended at or below
    ``chance_line`` (the most-frequent-class accuracy, %: runs that had not started to learn),
    and every step whose interval excludes 0; ``lean`` (those words), ``stalled`` and ``runs``
    (that count, of how many)."""
    steps = diversity_steps(committed)
    stats = {r["row"]: r["stats"] for r in committed["rows"]}
    chance = committed["chance_overlap"]
    mad = {k: steps.loc[("local -> local_mad", k)] for k in ("overlap", "correlation")}

    def pm(row: str, k: str) -> str:
        return f"{stats[row][k]['mean']:.3f} ± {stats[row][k]['std']:.3f}"

    def step(d) -> str:
        return f"{d['difference']:+.3f} (95 % interval [{d['low']:+.3f}, {d['high']:+.3f}])"

    signs = {d["difference"] > 0 for d in mad.values()}
    lean = ("in opposite directions" if len(signs) == 2 else
            "towards maps that are more alike" if signs == {True} else
            "towards more different maps")
    runs = [run for r in committed["rows"] if r["row"] in ("local", "local_mad") for run in r["runs"]]
    stalled = sum(run["metrics"]["accuracy"] <= chance_line for run in runs)
    text = [
        ("**MAD made the two LANet maps more different in these runs**, as the paper argues"
         if mad["overlap"]["verdict"] == "interval below 0" else
         "**MAD did not make the two LANet maps more different in these runs**")
        + f": adding it (`local` -> `local_mad`, {mad['overlap']['n']} seeds) changed the overlap "
        f"by {step(mad['overlap'])} and the correlation by {step(mad['correlation'])}; the two "
        f"point estimates lean {lean}. {stalled} of the {len(runs)} runs of the two rows ended "
        f"at or below the most-frequent-class line ({chance_line:.1f} %), that is, had not "
        "started to learn.",
        f"Without MAD the overlap is {pm('local', 'overlap')} and the correlation "
        f"{pm('local', 'correlation')}: "
        + ("the two LANets of `local` already look at different places, their top regions "
           f"meeting less often than two random ones would ({chance:.3f})"
           if stats["local"]["overlap"]["mean"] < chance
           else f"more than two random top regions would ({chance:.3f})")
        + f". With MAD: {pm('local_mad', 'overlap')} and {pm('local_mad', 'correlation')}; "
        f"TransFER (`transfer`, MAD and MSAD): {pm('transfer', 'overlap')} and "
        f"{pm('transfer', 'correlation')}.",
    ]
    resolved = steps[steps["verdict"] != "interval includes 0"]
    if len(resolved):
        text.append("The steps that an interval resolves: " + "; ".join(
            f"`{s}` ({d['what']}), {k} {step(d)}" for (s, k), d in resolved.iterrows()) + ".")
    else:
        text.append("No step's interval excludes 0.")
    return {"text": " ".join(text), "lean": lean, "stalled": stalled, "runs": len(runs)}


def switch_predictions(model: nn.Module, x: torch.Tensor, branches_on: torch.Tensor,
                       heads_on: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (n, classes) and fused maps (n, G, G) of faces ``x`` (n, 3, S, S) with
    parts switched off, each face its own switches: ``branches_on`` (n, B) and ``heads_on``
    (n, h), 1 = on. A head's switch acts in every block. Forward hooks do it (a LANet's output
    times its switch, MSAD's qkv times the heads' switches) and are removed after the pass."""
    heads = heads_on.to(x.dtype)[:, None, None, :, None]  # (n, 1, 1, h, 1), like qkv
    branches = branches_on.to(x.dtype)[:, :, None, None, None]  # (n, B, 1, 1, 1)
    hooks = [lanet.register_forward_hook(lambda _m, _i, o, k=k: o * branches[:, k])
             for k, lanet in enumerate(model.local_cnn.lanets)]
    hooks += [b.attn.msad.register_forward_hook(lambda _m, _i, qkv: qkv * heads)
              for b in model.transformer.blocks]
    try:
        with torch.no_grad():
            o = model.forward_with_details(x)
    finally:
        for hook in hooks:
            hook.remove()
    return o.logits.softmax(1), o.fused_map[:, 0]


def explorer_states(model: nn.Module, class_names: Sequence[str], transform: Callable,
                    faces_per_class: int = 3, device: str = "cpu", chunk: int = 256) -> dict:
    """Everything chapter 8's explorer shows, computed in advance: for ``faces_per_class``
    synthetic faces of every class (seeds 0, 1, ...), the class probabilities under every on/off
    state of the switches (the B LANet branches, then the h heads;
    :func:`transfer_lib.book.explorer.switch_states`) and the fused map over the face for every
    state of the branches (the maps do not depend on the heads, which act after them).

    Returns ``labels``, ``switches`` (names), ``probabilities`` (faces, states, classes, on the
    CPU), ``pictures`` (per face, 2**B overlays), ``true_classes`` and ``states``. The model is
    moved to ``device`` for the passes and back to the CPU."""
    from PIL import Image

    from transfer_lib.book.explorer import switch_states
    from transfer_lib.data.synth import render_face

    b, h = len(model.local_cnn.lanets), model.config.num_heads
    switches = [f"LANet {i + 1}" for i in range(b)] + [f"head {k + 1}" for k in range(h)]
    states = switch_states(len(switches)).to(device)  # (2 ** (B + h), B + h)
    model.to(device)
    labels, probabilities, pictures, true_classes = [], [], [], []
    try:
        for k, name in enumerate(class_names):
            for seed in range(faces_per_class):
                img = render_face(name, seed=seed)
                xi = transform(Image.fromarray(img))[None].to(device)
                p, fused = map(torch.cat, zip(*(
                    switch_predictions(model, xi.expand(len(c), -1, -1, -1), c[:, :b], c[:, b:])
                    for c in states.split(chunk))))
                if not torch.allclose(fused[:2 ** b], fused[-2 ** b:]):
                    raise AssertionError("a head's switch changed a LANet map")
                labels.append(f"{name}, seed {seed}")
                probabilities.append(p.cpu())
                pictures.append([overlay(img, m.cpu(), alpha=0.4) for m in fused[:2 ** b]])
                true_classes.append(k)
    finally:
        model.cpu()
    return {"labels": labels, "switches": switches, "probabilities": torch.stack(probabilities),
            "pictures": pictures, "true_classes": true_classes, "states": states.cpu()}


__all__ += ["flops_with_attention", "run_labels", "library_steps"]


def flops_with_attention(model: nn.Module) -> int:
    """Forward FLOPs (2 x multiply-adds) of one zero image through ``forward_with_details`` with
    ``return_attention=True``: the explicit attention path, whose two matrix products per block
    torch's FlopCounterMode sees (``summary.forward_flops`` on a CPU does not)."""
    from torch.utils.flop_counter import FlopCounterMode

    s = model.config.input_size
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.forward_with_details(torch.zeros(1, 3, s, s), return_attention=True)
    model.train(was_training)
    return counter.get_total_flops()


def run_labels(train_config: dict, profile: Any, split: str = "test") -> torch.Tensor:
    """The labels of ``split`` of the data set a run of ``train_config`` (a dict of
    ``TrainConfig`` fields, as :func:`transfer_run_config` gives) is scored on, as a (n,) long
    tensor: the data set's own list where ``train_config`` names one (``data``), else the
    profile's synthetic set, whose splits have exact class counts
    (:func:`transfer_lib.data.synth.class_counts`; returned in class order, which the
    metrics of a split do not depend on), without generating it. ``split``: ``test`` or
    ``train``."""
    if train_config.get("data"):
        from transfer_lib.data import build_dataset

        return torch.as_tensor(list(build_dataset(train_config.get("dataset", "rafdb"),
                                                  train_config["data"], split).targets))
    from transfer_lib.data.synth import class_counts

    if split not in ("test", "train"):
        raise ValueError(f"split={split!r}: the synthetic set's counts are known for test and train")
    n = profile.synthetic_test if split == "test" else profile.synthetic_train
    counts = torch.tensor(class_counts(n))
    return torch.arange(len(counts)).repeat_interleave(counts)


def library_steps(**train_kwargs) -> tuple[dict, list[dict]]:
    """Run the library's trainer (``transfer_lib.train.train`` with these ``TrainConfig``
    fields, in a temporary run directory that is removed afterwards) and return its final
    weights (``last.pt``'s model state dict) and its metrics lines."""
    import tempfile

    from transfer_lib.train import train

    with tempfile.TemporaryDirectory() as tmp:
        train(**{**train_kwargs, "out": tmp})
        weights = torch.load(Path(tmp) / "last.pt", weights_only=True)["model"]
        return weights, read_metrics(tmp)


__all__ += ["describe_run", "evaluate_authors_checkpoint"]


def describe_run(summary: dict, data_name: str = "") -> str:
    """One sentence on a finished run from its ``summary.json``: epochs, seconds and the machine
    (device and CPU model), the final test accuracy and mean class accuracy, ``best.pt``'s epoch,
    the split that chose it and its test accuracy, and the most frequent class's accuracy."""
    confusion = np.asarray(summary["confusion_matrix"])
    chance = confusion.sum(axis=1).max() / max(confusion.sum(), 1)
    chosen = "validation" if summary.get("best_selected_on") == "validation" else "test"
    return (f"{summary['epochs']} epochs on {data_name or 'its data'}, "
            f"{summary['wall_seconds']:.0f} s on {run_machine(summary)}: test accuracy "
            f"{100 * summary['final_accuracy']:.2f} %, mean class accuracy "
            f"{100 * summary['mean_class_accuracy']:.2f} % at the final epoch (best.pt: epoch "
            f"{summary.get('best_epoch', '?')}, chosen on the {chosen} split, "
            f"{100 * summary['best_accuracy']:.2f} % on test; most frequent class "
            f"{100 * chance:.2f} %)")


#: The authors' released RAF-DB checkpoint (a PaddlePaddle file) and the environment variable
#: that may point at it.
AUTHORS_CHECKPOINT = ("RAFa_2_6131_ep33_90p91.pdparams", "TRANSFER_OFFICIAL")


def evaluate_authors_checkpoint(rafdb: str | os.PathLike | None) -> tuple[dict | None, str]:
    """The authors' checkpoint (:data:`AUTHORS_CHECKPOINT`, found by :func:`find_weights`),
    loaded by ``pretrained.load_official_transfer`` and evaluated on RAF-DB's test split (on
    CUDA when there is one): returns (the metrics of ``evaluate``, their report), or (None, a
    line saying what is missing) without the file or RAF-DB."""
    official = find_weights(*AUTHORS_CHECKPOINT)
    missing = [what for what, found in (
        (f"the checkpoint {AUTHORS_CHECKPOINT[0]} ({AUTHORS_CHECKPOINT[1]})", official),
        ("RAF-DB (TRANSFER_RAFDB)", rafdb)) if found is None]
    if missing:
        return None, f"skipped: {word_list(missing)} not found"
    from transfer_lib.evaluate import evaluate, format_metrics, load_eval_set
    from transfer_lib.weights.convert import load_official_transfer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    authors = load_official_transfer(official, verbose=False).to(device)
    result = evaluate(authors, load_eval_set(rafdb, "rafdb", authors.config), device=device)
    return result, format_metrics(result, "authors' checkpoint on RAF-DB test (paper: 90.91 %)")


__all__ += ["run_machine"]


def run_machine(summary: dict) -> str:
    """What a run ran on, from its summary: the GPU (``cuda:0 (NVIDIA H200)``), or the CPU's
    model and whether its kernels were pinned (``AMD EPYC, pinned kernels``; see
    :mod:`transfer_lib.utils.kernels`); ``cpu`` for a run that records no provenance."""
    device = str(summary.get("device", ""))
    prov = summary.get("provenance") or {}
    if not device.startswith("cpu"):
        return device
    if not prov:
        return "cpu"
    kernels = prov.get("kernels")
    return prov.get("cpu_model", "cpu") + (f", {kernels} kernels" if kernels else "")


def _finish_curves(fig, a, b, chance, title):
    """The shared end of the curve plots: the most-frequent-class line, labels, integer epochs."""
    if chance is not None:
        b.axhline(100 * chance, color="0.5", ls="--", lw=0.8, label="most frequent class")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy (%)")
    b.legend(frameon=False, fontsize=7)
    for ax in (a, b):
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def cpu_recipe_evidence(bench, cpu):
    """The sweep runs behind the `cpu` recipe (appendix 12): ``(runs, overrides, varied,
    values_tried, table)``, ``table`` the markdown of each change, why, and whether the sweeps
    (``bench/recipe_sweep*_h200.jsonl``) varied it."""
    import json

    import pandas as pd

    from transfer_lib import build_model
    from transfer_lib.cli.summary import forward_flops

    sweep_files = sorted(bench.glob("recipe_sweep*_h200.jsonl"))
    runs = pd.DataFrame([json.loads(line) for path in sweep_files
                         for line in path.read_text().splitlines() if line.strip()])
    runs["config"] = runs["name"].str.replace(r"-s\d+$", "", regex=True)
    # every override of every run, model overrides (the input size) included
    overrides = pd.DataFrame([{**{k: v for k, v in o.items() if k != "model_overrides"},
                               **o.get("model_overrides", {})} for o in runs["overrides"]])


    def values_tried(*keys):
        """The values the sweep runs gave these override keys; absent: the profile's own."""
        found = {str(v) for k in keys if k in overrides for v in overrides[k].dropna()}
        absent = any(k not in overrides or overrides[k].isna().any() for k in keys)
        return sorted(found) + (["the profile's"] if absent else [])


    def varied(*keys):
        return "yes" if len(values_tried(*keys)) > 1 else "no: " + ", ".join(values_tried(*keys))


    gflops = {s: forward_flops(build_model("transfer", size="tiny", input_size=s)) / 1e9
              for s in (48, 64)}
    paper_gflops = forward_flops(build_model("transfer", size="paper")) / 1e9
    seed0 = json.loads((bench / "cpu_profile_seed0_epyc_2026-11-28.json").read_text())
    quiet = [m["train_seconds"] for m in seed0["metrics"][:3]]  # epochs 1-3 ran alone on the CPU
    recipe = [
        ("tiny size (stem widths 16/32/64, 2 blocks of width 96) at 48 x 48 input",
         f"{gflops[48]:.2f} GFLOPs a face instead of {paper_gflops:.1f} ({gflops[64]:.2f} at the "
         f"tiny size's own 64 x 64): an epoch of 3,000 faces in {min(quiet):.0f}-{max(quiet):.0f} s "
         f"({seed0['machine'].split(',')[0].split(' (')[0]}, the quiet epochs of "
         f"`cpu_profile_seed0_epyc_2026-11-28.json`)", varied("input_size")),
        (f"AdamW, lr {cpu.lr:g}, weight decay {cpu.weight_decay:g}, cosine decay",
         "SGD at 1e-4 is the paper's rate for fine-tuning pretrained weights; training from "
         "random weights is given a larger, adaptive step",
         f"optimiser: {varied('optimiser')} in every run; lr: {varied('lr')}"),
        ("class-balanced sampling", "the synthetic set copies RAF-DB's imbalance; balancing came "
         "in with other changes after an earlier recipe left the rarest classes at 0 %",
         varied("balance")),
        (f"label smoothing {cpu.label_smoothing:g}", "a usual companion of balanced sampling, "
         "which shows the rare classes' few images many times", varied("label_smoothing")),
        (f"gradient clipping at norm {cpu.grad_clip:g}, {cpu.warmup_epochs:g} warmup epochs",
         "runs of the rows with a transformer stalled at chance in the first sweep (next section)",
         varied("grad_clip", "warmup_epochs") + " (both at once)"),
        (f"{cpu.epochs} epochs, evaluated every {cpu.eval_every}",
         "the transformer converges more slowly than the CNN (next section)", varied("epochs")),
        ("the fast input pipeline, fp32", "images decoded once into a uint8 cache, augmented a "
         "batch at a time; fp32 so that every x86 CPU gives the same numbers",
         "no: fp32 (`amp` False) in every run" if varied("amp") == "no: False" else "yes"),
    ]
    rule = "|" + " :-- |" * 3  # the rule row, built so that the code shows no table
    table = "| change | why | varied in the sweeps? |\n" + rule + "\n" + "\n".join(
        f"| {change} | {why} | {tried} |" for change, why, tried in recipe)
    return runs, overrides, varied, values_tried, table
