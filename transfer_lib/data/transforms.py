"""The authors' per-image transforms (spec, "Training recipe"), built from a model's config.

Size, mean and std come from the :class:`~transfer_lib.models.config.TransFERConfig` passed in
(``model.config``); nothing is restated here. The batched equivalent that runs on the GPU is
:class:`transfer_lib.data.fast.BatchAugment`.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from transfer_lib.models.config import TransFERConfig

#: RandomResizedCrop and RandomErasing settings of the authors' config.
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
RANDAUGMENT_OPS = 2
RANDAUGMENT_MAGNITUDE = 5
ERASE_P = 0.5
ERASE_SCALE = (0.02, 0.4)
ERASE_RATIO = (0.3, 1 / 0.3)


def train_transform(config: TransFERConfig) -> v2.Compose:
    """PIL image -> normalised float tensor (3, S, S) with the training augmentation."""
    size = config.input_size
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=CROP_SCALE, ratio=CROP_RATIO, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandAugment(num_ops=RANDAUGMENT_OPS, magnitude=RANDAUGMENT_MAGNITUDE),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(config.mean, config.std),
        v2.RandomErasing(p=ERASE_P, scale=ERASE_SCALE, ratio=ERASE_RATIO, value=0),
    ])


def eval_transform(config: TransFERConfig) -> v2.Compose:
    """PIL image -> normalised float tensor (3, S, S): short side to S, centre crop S."""
    size = config.input_size
    return v2.Compose([
        v2.Resize(size, antialias=True),
        v2.CenterCrop(size),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(config.mean, config.std),
    ])
