"""The local CNN: LANets, Multi-Attention Dropping and max aggregation (chapter 4,
``book/04_local_cnn.ipynb``).

Each LANet looks at the stem's feature map and returns one attention map in (0, 1) that marks
a discriminative region. During training MAD zeroes one whole map for a sample with
probability p1, so the other branches must find other regions; the maps are then fused by an
element-wise max and multiply the feature map.

For the paper's comparison, Dropout, DropBlock and Spatial Dropout can take MAD's place on the
same maps (``map_regulariser``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LANet(nn.Module):
    """Local attention network: (B, C, H, W) -> one attention map (B, 1, H, W) in (0, 1).

    Conv1x1(C -> C/r) -> BN -> ReLU -> Conv1x1(C/r -> 1) -> BN -> Sigmoid, as in the authors'
    ``la_max.py``.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, 1, 1)
        self.bn2 = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return torch.sigmoid(self.bn2(self.conv2(x)))


class MultiAttentionDropping(nn.Module):
    """MAD: in training, for each sample with probability ``p``, zero one of its B maps.

    maps: (N, B, H, W) -> (N, B, H, W). The dropped branch is drawn uniformly; nothing is
    rescaled, and nothing is dropped in eval mode. ``num_drop`` > 1 zeroes that many distinct
    maps instead (the paper reports no gain from dropping more than one).
    """

    def __init__(self, p: float = 0.6, num_drop: int = 1) -> None:
        super().__init__()
        self.p = p
        self.num_drop = num_drop

    def keep_mask(self, n: int, branches: int, device: torch.device) -> torch.Tensor:
        """(N, B) mask of ones with one zero in each sample chosen to drop."""
        drop = torch.rand(n, device=device) < self.p  # (N,)
        # arithmetic, not boolean indexing: no host sync, no graph break under torch.compile
        return 1.0 - _chosen(n, branches, self.num_drop, device) * drop[:, None].float()  # (N, B)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return maps
        n, b = maps.shape[:2]
        return maps * self.keep_mask(n, b, maps.device).to(maps.dtype)[:, :, None, None]

    def extra_repr(self) -> str:
        return f"p={self.p}, num_drop={self.num_drop}"


def _chosen(n: int, size: int, k: int, device: torch.device) -> torch.Tensor:
    """(n, size) float mask with ones at k distinct positions per row, drawn uniformly."""
    if k == 1:
        return F.one_hot(torch.randint(size, (n,), device=device), size).float()
    ranks = torch.rand(n, size, device=device).argsort(dim=1).argsort(dim=1)  # a random permutation
    return (ranks < k).float()


class DropBlock2d(nn.Module):
    """DropBlock (Ghiasi et al., 2018) on (N, C, H, W): zero square blocks, rescale the rest."""

    def __init__(self, p: float = 0.1, block_size: int = 3, rescale: bool = True) -> None:
        super().__init__()
        self.p = p
        self.block_size = block_size
        self.rescale = rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        h, w = x.shape[-2:]
        k = min(self.block_size, h, w)
        # seed rate so that about p of the positions end up inside a dropped block
        gamma = self.p * h * w / (k * k * (h - k + 1) * (w - k + 1))
        seeds = (torch.rand_like(x) < gamma).to(x.dtype)
        blocks = F.max_pool2d(seeds, k, stride=1, padding=k // 2)[..., :h, :w]
        keep = 1.0 - blocks
        if not self.rescale:
            return x * keep
        return x * keep * keep.numel() / keep.sum().clamp(min=1.0)

    def extra_repr(self) -> str:
        return f"p={self.p}, block_size={self.block_size}, rescale={self.rescale}"


class UnscaledDropout(nn.Module):
    """Dropout (``spatial=False``: each value) or Spatial Dropout (``spatial=True``: each whole
    map) that zeroes with probability ``p`` and, like MAD, does not rescale what it keeps."""

    def __init__(self, p: float, spatial: bool) -> None:
        super().__init__()
        self.p = p
        self.spatial = spatial

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        shape = (*x.shape[:2], 1, 1) if self.spatial else x.shape
        keep = (torch.rand(shape, device=x.device) >= self.p).to(x.dtype)
        return x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}, spatial={self.spatial}, rescale=False"


def make_map_regulariser(name: str, p: float, block_size: int = 3, num_drop: int = 1,
                         rescale: bool = True) -> nn.Module:
    """The regulariser applied to the (N, B, H, W) stack of LANet maps in training. ``rescale``
    False: Dropout, Spatial Dropout and DropBlock keep values as they are, as MAD does."""
    if name == "mad":
        return MultiAttentionDropping(p, num_drop)
    if name == "none":
        return nn.Identity()
    if name == "dropout":  # element-wise, rescaled by 1 / (1 - p)
        return nn.Dropout(p) if rescale else UnscaledDropout(p, spatial=False)
    if name == "spatial":  # whole maps, independently per branch, rescaled
        return nn.Dropout2d(p) if rescale else UnscaledDropout(p, spatial=True)
    if name == "dropblock":
        return DropBlock2d(p, block_size, rescale)
    raise ValueError(f"unknown map regulariser {name!r}: use mad, none, dropout, dropblock or spatial")


class LocalCNN(nn.Module):
    """B LANets, a regulariser on their maps (MAD by default) and element-wise max fusion.

    forward(x): (N, C, H, W) -> (features (N, C, H, W), maps (N, B, H, W) after the
    regulariser, fused (N, 1, H, W)); features = x * fused.
    """

    def __init__(self, channels: int, num_branches: int = 2, reduction: int = 16,
                 regulariser: str = "mad", p: float = 0.6, block_size: int = 3,
                 num_drop: int = 1, rescale: bool = True) -> None:
        super().__init__()
        self.lanets = nn.ModuleList(LANet(channels, reduction) for _ in range(num_branches))
        self.regulariser = make_map_regulariser(regulariser, p, block_size, num_drop, rescale)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        maps = torch.cat([lanet(x) for lanet in self.lanets], dim=1)  # (N, B, H, W)
        maps = self.regulariser(maps)
        fused = maps.amax(dim=1, keepdim=True)  # (N, 1, H, W)
        return x * fused, maps, fused


def regularisers(model: nn.Module) -> list[nn.Module]:
    """The dropping modules of ``model``: each LocalCNN's map regulariser (MAD, or Dropout,
    DropBlock or Spatial Dropout in its place) and each MSAD block's head dropping, where their
    probability is above 0. A trainer
    that puts them in eval mode (``m.eval()`` after ``model.train()``) trains without dropping
    and leaves everything else as it was; see ``Profile.regularise_from_epoch``."""
    from transfer_lib.models.msad import MultiHeadSelfAttentionDropping

    found = []
    for m in model.modules():
        if isinstance(m, LocalCNN) and not isinstance(m.regulariser, nn.Identity):
            found.append(m.regulariser)
        elif isinstance(m, MultiHeadSelfAttentionDropping):
            found.append(m)
    return [m for m in found if m.p > 0]
