"""A model config from an untrusted checkpoint is checked before anything is allocated."""

from __future__ import annotations

import pytest
import torch

from transfer_lib.models import TransFERConfig, build_model
from transfer_lib.utils.errors import CheckpointError
from transfer_lib.weights.checkpoint import model_from_checkpoint


@pytest.mark.parametrize("change", [{"embed_dim": 2**22}, {"depth": 10**9}, {"num_heads": -1},
                                    {"num_classes": 0}, {"input_size": "112"},
                                    {"stem_depths": [2, 2, 10**6]}, {"mlp_ratio": 1e9},
                                    {"depth": True}])
def test_a_hostile_config_is_refused_before_building(tmp_path, change):
    model = build_model("transfer", size="tiny")
    config = {**model.config.to_dict(), **change}
    path = tmp_path / "evil.pt"
    torch.save({"model": model.state_dict(), "config": config}, path)
    # refused before building: building 10**9 blocks or a 2**22-wide embedding would not return
    with pytest.raises(CheckpointError, match="cannot build"):
        model_from_checkpoint(path)


def test_every_size_this_package_builds_is_inside_the_bounds():
    from transfer_lib.models.config import SIZES, VARIANTS, make_config

    for size in SIZES:
        for variant in VARIANTS:
            assert isinstance(make_config(variant, size), TransFERConfig)
