"""The stem CNN: IR-50 of face.evoLVe, stages 1-3 (chapter 3, ``book/03_stem.ipynb``).

The module layout copies face.evoLVe's ``backbone/model_irse.py`` (``input_layer``, ``body.{i}``
with ``res_layer`` and ``shortcut_layer``) so that its MS-Celeb-1M state dict loads without
renaming. TransFER keeps stages 1-3 (the authors' ``num_layers=44``: 3 + 4 + 14 units); a
112 x 112 face becomes a 256 x 14 x 14 feature map.
"""

from __future__ import annotations

import torch
from torch import nn


class BottleneckIR(nn.Module):
    """One ``bottleneck_IR`` unit: BN-Conv-PReLU-Conv(stride)-BN plus a shortcut.

    (B, in_channel, H, W) -> (B, depth, H / stride, W / stride).
    """

    def __init__(self, in_channel: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channel == depth:
            # face.evoLVe subsamples an identity shortcut with a 1x1 max-pool
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, 1, stride, bias=False),
                nn.BatchNorm2d(depth),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def unit_specs(widths: tuple[int, ...], depths: tuple[int, ...], in_channel: int) -> list[tuple[int, int, int]]:
    """(in, depth, stride) of every unit; the first unit of each stage has stride 2."""
    specs = []
    for width, n in zip(widths, depths):
        for i in range(n):
            specs.append((in_channel, width, 2 if i == 0 else 1))
            in_channel = width
    return specs


class IR50Stem(nn.Module):
    """IR-50 stages 1-3: (B, 3, S, S) -> (B, widths[-1], S / 8, S / 8).

    With the paper's widths (64, 128, 256) and depths (3, 4, 14) this is 21 units and 17.6 M
    parameters; ``unit_specs`` lists them.
    """

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256),
                 depths: tuple[int, ...] = (3, 4, 14)) -> None:
        super().__init__()
        self.out_channels = widths[-1]
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.PReLU(widths[0]),
        )
        self.body = nn.Sequential(
            *[BottleneckIR(i, d, s) for i, d, s in unit_specs(widths, depths, widths[0])]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.input_layer(x))
