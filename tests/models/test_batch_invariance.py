"""One image is one image: in eval mode a face's logits do not depend on the batch it is in.

Users of FER code report accuracy that changes when images are scored one at a time (a
BatchNorm left in training mode, a dropout active at test time, padding or attention that mixes
samples). Every variant of the paper's ablation is checked at the tiny size.
"""

from __future__ import annotations

import pytest
import torch

from transfer_lib.models import build_model
from transfer_lib.models.config import VARIANTS


@pytest.mark.parametrize("variant,overrides", [(v, {}) for v in VARIANTS]
                         + [("transfer", {"msad_mode": "token"})])
def test_logits_alone_equal_logits_in_a_batch(variant, overrides):
    torch.manual_seed(0)
    model = build_model(variant, "tiny", **overrides)
    s = model.config.input_size
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5)  # the head starts at zero: all logits would be 0
        model.train()  # a few training passes give BatchNorm running statistics of its own
        for _ in range(2):
            model(torch.randn(4, 3, s, s) * 2 + 0.5)
    model.eval()
    x = torch.randn(4, 3, s, s, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        batched = model(x)
        alone = torch.cat([model(x[i:i + 1]) for i in range(len(x))])
        again = model(x.flip(0)).flip(0)  # the same images in another order
    assert batched.abs().max() > 1e-2  # logits that could differ
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=0)
    torch.testing.assert_close(again, batched, atol=1e-5, rtol=0)
