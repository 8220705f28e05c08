"""TransFER assembled, and the plain IR-50 baseline (chapter 6, ``book/06_transfer.ipynb``).

    image (B, 3, 112, 112)
      -> stem (IR-50 stages 1-3)                       (B, 256, 14, 14)
      -> local CNN: B LANets, MAD, max fusion, x * M    (B, 256, 14, 14)
      -> projection Conv1x1(256 -> 768), flatten        (B, 196, 768)
      -> MSAD transformer (cls token + 8 blocks)        (B, 768)
      -> head Linear(768 -> 7)                          (B, 7)

``build_model(variant, size)`` gives every row of the paper's ablation from one config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from transfer_lib.models.config import TransFERConfig, make_config
from transfer_lib.models.local_cnn import LocalCNN
from transfer_lib.models.msad import MSADTransformer
from transfer_lib.models.stem import IR50Stem


@dataclass
class TransFEROutput:
    """What ``forward_with_details`` returns.

    logits: (B, num_classes). lanet_maps: (B, num_branches, h, w) after the map regulariser
    (MAD in training), or None without LANets. fused_map: (B, 1, h, w), their element-wise max,
    or None. attentions: one (B, heads, N + 1, N + 1) softmax tensor per block (token 0 is the
    cls token), empty for the IR-50 baseline.
    """

    logits: torch.Tensor
    lanet_maps: torch.Tensor | None = None
    fused_map: torch.Tensor | None = None
    attentions: list[torch.Tensor] = field(default_factory=list)
    features: torch.Tensor | None = None


class TransFER(nn.Module):
    """TransFER and its ablation rows ``vit_fer``, ``local`` and ``local_mad``.

    ``model(x)`` with x normalised images (B, 3, S, S), S = ``config.input_size``, returns the
    logits (B, num_classes). The model carries its preprocessing facts in ``model.config``:
    ``input_size``, ``mean``, ``std`` and ``class_names``.
    """

    def __init__(self, config: TransFERConfig) -> None:
        super().__init__()
        if config.variant == "ir50":
            raise ValueError("variant 'ir50' is the IR50Classifier; use build_model('ir50')")
        self.config = config
        c = config
        self.stem = IR50Stem(c.stem_widths, c.stem_depths)
        self.local_cnn = (
            LocalCNN(c.stem_channels, c.num_branches, c.lanet_reduction, c.map_regulariser,
                     c.mad_p, c.dropblock_size, c.mad_num_drop, c.map_rescale)
            if c.use_lanet else None
        )
        self.projection = nn.Conv2d(c.stem_channels, c.embed_dim, 1)
        self.transformer = MSADTransformer(
            c.num_tokens, c.embed_dim, c.depth, c.num_heads, c.mlp_ratio, c.qkv_bias,
            c.qk_scale, c.layer_norm_eps, c.msad_p, c.msad_mode, c.msad_num_drop,
        )
        self.head = nn.Linear(c.embed_dim, c.num_classes)
        nn.init.zeros_(self.head.bias)
        if c.head_init == "zeros":  # as the authors: the head starts at zero
            nn.init.zeros_(self.head.weight)
        else:  # drawn from the global generator: the other weights' draws come first
            nn.init.trunc_normal_(self.head.weight, std=0.02)
        if c.proj_init == "paddle":  # last, so every other weight is drawn as with "torch"
            init_projection_as_paddle(self.projection)

    def forward_with_details(self, x: torch.Tensor, return_attention: bool = True) -> TransFEROutput:
        """Logits with the LANet maps and, if asked, every block's attention weights."""
        self._check_input(x)
        feats = self.stem(x)  # (B, C, h, w)
        maps = fused = None
        if self.local_cnn is not None:
            feats, maps, fused = self.local_cnn(feats)
        tokens = self.projection(feats).flatten(2).transpose(1, 2)  # (B, h*w, D)
        cls, attentions = self.transformer(tokens, return_attention)  # (B, D)
        return TransFEROutput(self.head(cls), maps, fused, attentions, cls)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_details(x, return_attention=False).logits

    def _check_input(self, x: torch.Tensor) -> None:
        s = self.config.input_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (s, s):
            raise ValueError(
                f"expected normalised images of shape (B, 3, {s}, {s}), got {tuple(x.shape)}; "
                f"resize with transfer_lib.data.transforms.eval_transform(model.config)"
            )


def init_projection_as_paddle(conv: nn.Conv2d) -> None:
    """Paddle's default init of a Conv2D, which the authors' projection gets: weights normal
    with std sqrt(2 / fan_in) (fan_in = in_channels x kernel area: 256 for the 1x1 projection),
    bias 0. PyTorch's default (kaiming_uniform with a = sqrt(5)) has std sqrt(1 / (3 fan_in))."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class IR50Classifier(nn.Module):
    """The plain CNN baseline: the IR-50 stem, global average pooling and a linear head."""

    def __init__(self, config: TransFERConfig) -> None:
        super().__init__()
        self.config = config
        self.stem = IR50Stem(config.stem_widths, config.stem_depths)
        self.head = nn.Linear(config.stem_channels, config.num_classes)

    def forward_with_details(self, x: torch.Tensor, return_attention: bool = True) -> TransFEROutput:
        TransFER._check_input(self, x)
        feats = self.stem(x).mean(dim=(2, 3))  # (B, C)
        return TransFEROutput(self.head(feats), features=feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_details(x).logits


def build_model(variant: str = "transfer", size: str = "paper", num_classes: int = 7,
                **overrides) -> TransFER | IR50Classifier:
    """A model of the paper's ablation at ``size`` (``paper`` or ``tiny``).

    variant: ``ir50`` (CNN baseline), ``vit_fer`` (no LANets), ``local`` (LANets, no MAD),
    ``local_mad`` (LANets and MAD, no MSAD) or ``transfer`` (all). Keyword overrides set any
    ``TransFERConfig`` field, e.g. ``msad_mode="token"`` or ``map_regulariser="dropblock"``.
    """
    config = make_config(variant, size, num_classes, **overrides)
    return model_from_config(config)


def model_from_config(config: TransFERConfig) -> TransFER | IR50Classifier:
    if config.variant == "ir50":
        return IR50Classifier(config)
    return TransFER(config)
