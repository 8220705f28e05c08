"""MAD and MSAD behave as the paper (and, for MSAD's token mode, the authors' code) says."""

import math

import pytest
import torch

from transfer_lib import build_model
from transfer_lib.models.local_cnn import DropBlock2d, LocalCNN, MultiAttentionDropping
from transfer_lib.models.msad import MultiHeadSelfAttentionDropping

N = 20000


def within_binomial(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("branches", [2, 4])
def test_mad_drops_exactly_one_map_with_probability_p(branches):
    mad = MultiAttentionDropping(p=0.6).train()
    maps = torch.rand(N, branches, 3, 3) + 0.1  # never zero by chance
    out = mad(maps)
    zero_maps = (out == 0).flatten(2).all(-1)  # (N, B)
    per_sample = zero_maps.sum(1)
    assert per_sample.max() == 1  # never more than one map
    assert within_binomial(int((per_sample == 1).sum()), N, 0.6)
    # the dropped branch is uniform
    for b in range(branches):
        assert within_binomial(int(zero_maps[:, b].sum()), N, 0.6 / branches)
    # kept maps are untouched (no rescaling)
    keep = ~zero_maps
    assert torch.equal(out[keep], maps[keep])


def test_mad_does_nothing_in_eval():
    mad = MultiAttentionDropping(p=1.0).eval()
    maps = torch.rand(64, 2, 5, 5)
    assert torch.equal(mad(maps), maps)


def test_local_cnn_fuses_by_max_after_mad():
    local = LocalCNN(32, num_branches=2, reduction=4, regulariser="mad", p=1.0).train()
    x = torch.randn(8, 32, 7, 7)
    feats, maps, fused = local(x)
    assert ((maps == 0).flatten(2).all(-1).sum(1) == 1).all()  # p = 1: one map dropped each
    torch.testing.assert_close(fused, maps.max(dim=1, keepdim=True).values)
    torch.testing.assert_close(feats, x * fused)


@pytest.mark.parametrize("name", ["dropout", "dropblock", "spatial"])
def test_other_map_regularisers_act_only_in_training(name):
    local = LocalCNN(16, 2, 4, regulariser=name, p=0.5)
    x = torch.randn(16, 16, 7, 7)
    local.train()
    _, maps_train, _ = local(x)
    assert (maps_train == 0).any()
    local.eval()
    _, maps_eval, _ = local(x)
    assert not (maps_eval == 0).any()


def test_dropblock_drops_blocks():
    torch.manual_seed(1)
    db = DropBlock2d(p=0.3, block_size=3).train()
    out = db(torch.ones(200, 1, 14, 14))
    dropped = (out == 0).float().mean().item()
    assert 0.15 < dropped < 0.45
    # zeros come in blocks: a zero pixel has a zero neighbour
    z = (out[:, 0] == 0)
    neighbour = z[:, 1:, :] & z[:, :-1, :]
    assert neighbour.sum() > 0.5 * z[:, 1:, :].sum()


def qkv_ones(n=N, tokens=10, heads=8, dim=4):
    return torch.ones(n, tokens, 3, heads, dim)


def test_msad_head_mode_zeroes_one_head_with_probability_p():
    msad = MultiHeadSelfAttentionDropping(p=0.3, mode="head").train()
    out = msad(qkv_ones())
    zero_heads = (out == 0).permute(0, 3, 1, 2, 4).flatten(2).all(-1)  # (N, heads)
    per_sample = zero_heads.sum(1)
    assert per_sample.max() == 1
    assert within_binomial(int((per_sample == 1).sum()), N, 0.3)
    for h in range(8):
        assert within_binomial(int(zero_heads[:, h].sum()), N, 0.3 / 8)
    # q, k and v of the head are all zero, and nothing else is
    assert int((out == 0).sum()) == int(per_sample.sum()) * 10 * 3 * 4


def test_msad_token_mode_is_the_authors_indexing():
    msad = MultiHeadSelfAttentionDropping(p=0.3, mode="token").train()
    out = msad(qkv_ones(tokens=20))
    zero_tokens = (out == 0).flatten(2).all(-1)  # (N, tokens)
    per_sample = zero_tokens.sum(1)
    assert per_sample.max() == 1
    assert within_binomial(int((per_sample == 1).sum()), N, 0.3)
    # the index is drawn from range(heads): only the first 8 tokens (cls included) are hit
    assert zero_tokens[:, 8:].sum() == 0
    for t in range(8):
        assert within_binomial(int(zero_tokens[:, t].sum()), N, 0.3 / 8)


@pytest.mark.parametrize("mode", ["head", "token"])
def test_msad_does_nothing_in_eval(mode):
    msad = MultiHeadSelfAttentionDropping(p=1.0, mode=mode).eval()
    x = torch.rand(4, 10, 3, 8, 4)
    assert torch.equal(msad(x), x)


@pytest.mark.parametrize("mode", ["head", "token"])
def test_msad_mode_reaches_every_block(mode):
    model = build_model("transfer", "tiny", msad_mode=mode)
    assert all(b.attn.msad.mode == mode for b in model.transformer.blocks)
    model.train()
    torch.nn.init.normal_(model.head.weight)
    out = model(torch.randn(4, 3, 64, 64))
    assert torch.isfinite(out).all()


def test_both_modes_agree_in_eval():
    torch.manual_seed(0)
    a = build_model("transfer", "tiny", msad_mode="head").eval()
    b = build_model("transfer", "tiny", msad_mode="token").eval()
    b.load_state_dict(a.state_dict())
    torch.nn.init.normal_(a.head.weight)
    b.head.weight.data.copy_(a.head.weight)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_mad_can_drop_several_maps():
    mad = MultiAttentionDropping(p=1.0, num_drop=2).train()
    out = mad(torch.rand(4000, 4, 2, 2) + 0.1)
    zero_maps = (out == 0).flatten(2).all(-1)
    assert (zero_maps.sum(1) == 2).all()
    for b in range(4):  # each branch dropped half the time: 2 of 4, uniformly
        assert within_binomial(int(zero_maps[:, b].sum()), 4000, 0.5)


@pytest.mark.parametrize("mode", ["head", "token"])
def test_msad_can_drop_several(mode):
    msad = MultiHeadSelfAttentionDropping(p=1.0, mode=mode, num_drop=3).train()
    out = msad(qkv_ones(n=500, tokens=20))
    if mode == "head":
        zero = (out == 0).permute(0, 3, 1, 2, 4).flatten(2).all(-1)  # (N, heads)
    else:
        zero = (out == 0).flatten(2).all(-1)  # (N, tokens)
        assert zero[:, 8:].sum() == 0
    assert (zero.sum(1) == 3).all()


def test_num_drop_reaches_the_model_and_is_checked():
    model = build_model("transfer", "tiny", mad_num_drop=2, msad_num_drop=2)
    assert model.local_cnn.regulariser.num_drop == 2
    assert all(b.attn.msad.num_drop == 2 for b in model.transformer.blocks)
    with pytest.raises(ValueError, match="mad_num_drop"):
        build_model("transfer", "tiny", mad_num_drop=3)


@pytest.mark.parametrize("name, per_map", [("dropout", False), ("spatial", True),
                                           ("dropblock", False)])
def test_map_rescale_false_keeps_values_as_mad_does(name, per_map):
    """With map_rescale=False the comparators zero about p of the maps' values (whole maps for
    Spatial Dropout) and leave the rest exactly as they were; True (the default) rescales."""
    from transfer_lib.models.local_cnn import make_map_regulariser

    torch.manual_seed(0)
    maps = torch.rand(4000, 2, 6, 6) + 0.1
    out = make_map_regulariser(name, 0.4, rescale=False).train()(maps)
    kept = out != 0
    assert torch.equal(out[kept], maps[kept])  # nothing rescaled
    share = 1 - kept.float().mean().item()
    # DropBlock's seed rate aims at p; overlapping blocks on a 6 x 6 map overshoot (0.52)
    assert abs(share - 0.4) < (0.15 if name == "dropblock" else 0.01), share
    if per_map:  # a map is dropped whole or not at all
        whole = kept.flatten(2)
        assert torch.equal(whole.all(-1), whole.any(-1))
    scaled = make_map_regulariser(name, 0.4, rescale=True).train()(maps)
    assert scaled[scaled != 0].sum() > maps[scaled != 0].sum()  # the default rescales
    assert torch.equal(make_map_regulariser(name, 0.4, rescale=False).eval()(maps), maps)


def test_map_rescale_reaches_the_model_and_is_checked():
    m = build_model(variant="local_mad", size="tiny", map_regulariser="dropout", map_rescale=False)
    assert "rescale=False" in repr(m)
    with pytest.raises(ValueError, match="map_rescale"):
        build_model(variant="local_mad", size="tiny", map_rescale="no")
