"""Pictures for the book: image and map grids, overlays, the pipeline diagram, class counts.

Every chapter of the book (``book/01_preface.ipynb`` onwards) draws through these helpers so that
the notebooks hold the idea and not the plotting code. Each function returns the matplotlib
``Figure`` (or ``Axes``) it drew on; nothing here calls ``plt.show()``.

matplotlib and seaborn are optional dependencies (``pip install transfer_lib[viz]``); they are
imported inside the functions so that ``import transfer_lib.viz`` is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from transfer_lib.profiles import project_root  # one notion of the project's root

__all__ = [
    "use_book_style", "describe_setup", "find_weights", "to_image", "show_grid", "overlay", "plot_class_counts",
    "draw_pipeline", "plot_mask", "record_shapes", "word_list",
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


def describe_setup(profile: Any, rafdb: str | os.PathLike | None = None) -> str:
    """Two lines for the top of a chapter: the active profile and the data it would run on.

    ``profile`` is a :class:`transfer_lib.profiles.Profile`; ``rafdb`` the RAF-DB root found by
    :func:`transfer_lib.profiles.find_rafdb` (None: the chapter falls back on synthetic faces).
    """
    data = (f"RAF-DB at {rafdb}" if rafdb is not None
            else "synthetic faces in RAF-DB's layout (RAF-DB not found; set TRANSFER_RAFDB)")
    return (f"profile: {profile.name} - {profile.description}\n"
            f"data:    {data}")


#: Where :func:`find_weights` looks for a pretrained file, after its environment variable.
WEIGHT_DIRS: tuple[str, ...] = ("weights", "/content/drive/MyDrive/weights")


def find_weights(filename: str, env: str | None = None) -> Path | None:
    """The path of a pretrained file the reader supplied, or None.

    Looks at ``$env`` (a file path), then for ``filename`` in ``weights/`` of the working
    directory and of the project root, and in ``/content/drive/MyDrive/weights`` (Colab).
    """
    candidates: list[Path] = []
    if env and os.environ.get(env):
        candidates.append(Path(os.environ[env]).expanduser())
    root = project_root()
    for d in WEIGHT_DIRS:
        candidates += [Path(d) / filename, root / d / filename]
    return next((c for c in candidates if c.is_file()), None)


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
    "project_root", "book_run_dir", "transfer_run_config", "read_metrics", "plot_curves",
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


def plot_curves(metrics: Sequence[dict], chance: float | None = None, title: str = ""):
    """Training loss (left) and train / test accuracy (right) per epoch; returns the Figure.
    ``chance`` draws the accuracy of always predicting the most frequent class."""
    import matplotlib.pyplot as plt

    epochs = [m["epoch"] for m in metrics]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 2.8))
    a.plot(epochs, [m["loss"] for m in metrics], "o-", ms=3)
    a.set_xlabel("epoch")
    a.set_ylabel("training loss (cross-entropy)")
    b.plot(epochs, [100 * m["train_accuracy"] for m in metrics], "o-", ms=3, label="train")
    tested = [m for m in metrics if "test_accuracy" in m]
    b.plot([m["epoch"] for m in tested], [100 * m["test_accuracy"] for m in tested], "s-", ms=3,
           label="test")
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
