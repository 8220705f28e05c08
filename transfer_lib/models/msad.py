"""The transformer with Multi-head Self-Attention Dropping (chapter 5, ``book/05_msad.ipynb``).

Pre-norm ViT blocks with timm's parameter names (``norm1``, ``attn.qkv``, ``attn.proj``,
``norm2``, ``mlp.fc1``, ``mlp.fc2``) so that timm's ViT-Small loads without renaming.

MSAD acts on the (B, N, 3, heads, head_dim) qkv tensor of every block, in training only:

* ``mode="head"`` (the paper, Sec. 3.3): for each sample with probability p2, zero q, k and v
  of one head drawn uniformly, so the other heads must carry the relations it found.
* ``mode="token"`` (the authors' code, ``HeadDropOut`` in ``trans_fer.py``): the line
  ``x[i, zero_index, ...] = 0`` indexes dimension 1, the tokens, with an index drawn from
  ``range(heads)``, so it zeroes q, k and v of one of the first ``heads`` tokens (token 0 is
  the cls token) in all heads.

The default is ``head``: it is the method the paper describes and ablates, and the two modes
agree in eval mode, so the released checkpoint's 90.91 % does not tell them apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from transfer_lib.models.local_cnn import _chosen


class MultiHeadSelfAttentionDropping(nn.Module):
    """MSAD on a qkv tensor (B, N, 3, heads, head_dim) -> same shape.

    In training, each sample is hit with probability ``p``; a hit zeroes one head (``head``)
    or one of the first ``heads`` tokens (``token``), drawn uniformly. No rescaling.
    """

    def __init__(self, p: float = 0.3, mode: str = "head", num_drop: int = 1) -> None:
        super().__init__()
        if mode not in ("head", "token"):
            raise ValueError(f"MSAD mode {mode!r} is not 'head' or 'token'")
        self.p = p
        self.mode = mode
        self.num_drop = num_drop  # > 1: that many distinct heads (or of the first tokens)

    def keep_mask(self, qkv: torch.Tensor) -> torch.Tensor:
        """A mask broadcastable to qkv: (B, 1, 1, heads, 1) or (B, N, 1, 1, 1)."""
        b, n, _, heads, _ = qkv.shape
        hit = torch.rand(b, device=qkv.device) < self.p  # (B,)
        # arithmetic, not boolean indexing: no host sync, no graph break under torch.compile
        chosen = _chosen(b, heads, self.num_drop, qkv.device)  # (B, heads)
        if self.mode == "token":  # the index is drawn from range(heads) but hits the token axis
            chosen = F.pad(chosen, (0, n - heads)) if n >= heads else chosen[:, :n]
        mask = (1 - chosen * hit[:, None]).to(qkv.dtype)  # (B, heads) or (B, N)
        if self.mode == "head":
            return mask[:, None, None, :, None]
        return mask[:, :, None, None, None]

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return qkv
        return qkv * self.keep_mask(qkv)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}, num_drop={self.num_drop}"


class MSADAttention(nn.Module):
    """Multi-head self-attention with MSAD on its qkv: (B, N, C) -> (B, N, C).

    ``forward(x, return_attention=True)`` also returns the (B, heads, N, N) softmax weights,
    computed explicitly; otherwise ``scaled_dot_product_attention`` (flash / memory-efficient
    kernels on a GPU) computes the same output.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False,
                 qk_scale: float | None = None, msad_p: float = 0.3, msad_mode: str = "head",
                 msad_num_drop: int = 1) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale if qk_scale is not None else self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.msad = MultiHeadSelfAttentionDropping(msad_p, msad_mode, msad_num_drop)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)  # (B, N, 3, nh, hd)
        qkv = self.msad(qkv)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, N, hd)
        attn = None
        if return_attention:
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)  # (B, nh, N, N)
            out = attn @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        out = self.proj(out.transpose(1, 2).reshape(b, n, c))  # (B, N, C)
        return out, attn


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2: (B, N, C) -> (B, N, C)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MSADBlock(nn.Module):
    """Pre-norm block: x + Attn(LN(x)), then x + MLP(LN(x)); (B, N, C) -> (B, N, C)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 3.0, qkv_bias: bool = False,
                 qk_scale: float | None = None, eps: float = 1e-6, msad_p: float = 0.3,
                 msad_mode: str = "head", msad_num_drop: int = 1) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = MSADAttention(dim, num_heads, qkv_bias, qk_scale, msad_p, msad_mode,
                                  msad_num_drop)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        y, attn = self.attn(self.norm1(x), return_attention)
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return x, attn


class MSADTransformer(nn.Module):
    """cls token + position embedding + ``depth`` MSAD blocks + final LayerNorm.

    forward(tokens (B, N, C)) -> (cls output (B, C), list of per-block attention weights
    (B, heads, N + 1, N + 1) when asked for, else an empty list).
    """

    def __init__(self, num_tokens: int, dim: int = 768, depth: int = 8, num_heads: int = 8,
                 mlp_ratio: float = 3.0, qkv_bias: bool = False, qk_scale: float | None = None,
                 eps: float = 1e-6, msad_p: float = 0.3, msad_mode: str = "head",
                 msad_num_drop: int = 1) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens + 1, dim))
        self.blocks = nn.ModuleList(
            MSADBlock(dim, num_heads, mlp_ratio, qkv_bias, qk_scale, eps, msad_p, msad_mode,
                      msad_num_drop)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=eps)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_vit_weights)

    def forward(self, tokens: torch.Tensor, return_attention: bool = False):
        b = tokens.shape[0]
        x = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)  # (B, N + 1, C)
        x = x + self.pos_embed
        attentions = []
        for block in self.blocks:
            x, attn = block(x, return_attention)
            if return_attention:
                attentions.append(attn)
        x = self.norm(x)
        return x[:, 0], attentions


def _init_vit_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
