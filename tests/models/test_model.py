"""The model pinned down: shapes, sizes, FLOPs, layout, determinism, gradients, attention."""

import re

import pytest
import torch

from transfer_lib import build_model
from transfer_lib.cli.summary import count_parameters, forward_flops
from transfer_lib.models import TransFER, TransFERConfig, make_config
from transfer_lib.models.config import SIZES, VARIANTS
from transfer_lib.models.stem import IR50Stem


@pytest.fixture(scope="module")
def paper_model():
    return build_model("transfer", "paper").eval()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_output_shape_every_variant_and_size(variant, size):
    model = build_model(variant, size, num_classes=5)
    s = model.config.input_size
    for mode in (model.train, model.eval):
        mode()
        out = model(torch.randn(2, 3, s, s))
        assert out.shape == (2, 5)
        assert torch.isfinite(out).all()


def test_paper_sizes_match_the_paper(paper_model):
    assert round(count_parameters(paper_model) / 1e6, 1) == 65.2
    assert round(count_parameters(paper_model.stem) / 1e6, 1) == 17.6
    assert paper_model.config.input_size == 112
    assert paper_model.config.num_tokens == 196


def test_paper_forward_flops(paper_model):
    flops = forward_flops(paper_model)
    assert abs(flops / 1e9 - 29.6) < 0.1, flops


def test_shapes_through_the_paper_model(paper_model):
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        feats = paper_model.stem(x)
        out = paper_model.forward_with_details(x)
    assert feats.shape == (1, 256, 14, 14)
    assert out.lanet_maps.shape == (1, 2, 14, 14)
    assert out.fused_map.shape == (1, 1, 14, 14)
    assert len(out.attentions) == 8
    assert all(a.shape == (1, 8, 197, 197) for a in out.attentions)
    assert out.features.shape == (1, 768)


def test_stem_has_face_evolve_layout():
    stem = IR50Stem()
    keys = set(stem.state_dict())
    assert len(stem.body) == 21
    assert {"input_layer.0.weight", "input_layer.1.running_var", "input_layer.2.weight"} <= keys
    conv_shortcuts = sorted({int(k.split(".")[1]) for k in keys if ".shortcut_layer." in k})
    assert conv_shortcuts == [3, 7]  # unit 21 (stage 4) is not part of the stem
    assert stem.body[0].shortcut_layer.stride == 2  # identity shortcut subsampled by max-pool
    for i in (0, 3, 7):  # first unit of each stage has stride 2
        assert stem.body[i].res_layer[3].stride == (2, 2)
    assert tuple(stem.state_dict()["body.20.res_layer.1.weight"].shape) == (256, 256, 3, 3)


def test_transformer_has_timm_names_and_no_qkv_bias(paper_model):
    keys = set(paper_model.transformer.state_dict())
    assert {"cls_token", "pos_embed", "blocks.7.attn.qkv.weight", "blocks.0.mlp.fc1.bias",
            "norm.weight"} <= keys
    assert "blocks.0.attn.qkv.bias" not in keys
    assert tuple(paper_model.transformer.pos_embed.shape) == (1, 197, 768)
    assert paper_model.transformer.blocks[0].mlp.fc1.out_features == 2304
    assert paper_model.transformer.blocks[0].norm1.eps == 1e-6


def test_head_starts_at_zero():
    model = build_model("transfer", "tiny")
    assert torch.count_nonzero(model.head.weight) == 0
    logits = model.eval()(torch.randn(3, 3, 64, 64))
    assert torch.count_nonzero(logits) == 0


def test_variants_switch_the_right_parts():
    assert build_model("vit_fer", "tiny").local_cnn is None
    local = build_model("local", "tiny")
    assert isinstance(local.local_cnn.regulariser, torch.nn.Identity)
    assert local.config.msad_p == 0.0
    mad = build_model("local_mad", "tiny")
    assert type(mad.local_cnn.regulariser).__name__ == "MultiAttentionDropping"
    assert mad.config.msad_p == 0.0
    full = build_model("transfer", "tiny")
    assert full.config.msad_p == 0.3 and full.config.mad_p == 0.6
    assert full.transformer.blocks[0].attn.msad.p == 0.3
    assert not hasattr(build_model("ir50", "tiny"), "transformer")


def test_carries_preprocessing_facts():
    c = build_model("transfer", "tiny").config
    assert c.class_names[0] == "Surprise" and len(c.class_names) == 7
    assert len(c.mean) == 3 and len(c.std) == 3
    assert c.input_size == 64


@pytest.mark.parametrize("bad", [dict(variant="vit"), dict(msad_mode="heads"),
                                 dict(map_regulariser="cutout"), dict(mad_p=1.5),
                                 dict(embed_dim=100, num_heads=8)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        TransFERConfig(**bad)


def test_bad_input_shape_names_the_expected_shape():
    model = build_model("transfer", "tiny")
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        model(torch.randn(1, 3, 112, 112))


def test_eval_mode_is_deterministic():
    model = build_model("transfer", "tiny").eval()
    torch.nn.init.normal_(model.head.weight)
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_train_mode_is_stochastic():
    model = build_model("transfer", "tiny", mad_p=1.0, msad_p=1.0).train()
    torch.nn.init.normal_(model.head.weight)
    x = torch.randn(8, 3, 64, 64)
    assert not torch.equal(model(x), model(x))


#: Conv biases that feed a BatchNorm in training mode. BN subtracts the batch mean, so a constant
#: added before it cancels and its gradient is zero in exact arithmetic; what the backward pass
#: returns is rounding noise that may be exactly 0.0 (it was, with 2 threads). The bias is
#: redundant, in the authors' ``la_max.py`` too (chapter 4 says so).
BN_CANCELLED_BIAS = re.compile(r"(^|\.)lanets\.\d+\.conv[12]\.bias$")


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradient_reaches_every_parameter(variant):
    model = build_model(variant, "tiny").train()
    torch.nn.init.normal_(model.head.weight, std=0.1)  # a zero head blocks gradients upstream
    x = torch.randn(16, 3, 64, 64)
    y = torch.randint(7, (16,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    cancelled = {n for n in grads if BN_CANCELLED_BIAS.search(n)}
    assert bool(cancelled) == model.config.use_lanet  # the pattern still names real parameters
    missing = [n for n, g in grads.items()
               if n not in cancelled and (g is None or not g.abs().sum() > 0)]
    assert missing == []
    for n in cancelled:  # zero up to rounding, far below the gradient of the conv's own weight
        weight_grad = grads[n.removesuffix("bias") + "weight"].abs().max()
        assert grads[n] is not None and grads[n].abs().max() <= 1e-3 * weight_grad + 1e-7, n


def test_attention_path_and_sdpa_path_agree():
    model = build_model("transfer", "tiny").eval()
    torch.nn.init.normal_(model.head.weight)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        fast = model(x)
        detailed = model.forward_with_details(x, return_attention=True)
    torch.testing.assert_close(detailed.logits, fast, rtol=1e-4, atol=1e-5)
    for attn in detailed.attentions:
        torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn.sum(-1)))


def test_returned_attention_is_the_one_the_output_used():
    """Rebuild block 1's output from the returned weights and the block's own v and proj."""
    model = build_model("transfer", "tiny").eval()
    block = model.transformer.blocks[1]
    torch.nn.init.normal_(block.attn.qkv.weight, std=0.5)  # peaked attention, far from uniform
    seen = {}
    block.register_forward_hook(lambda m, inp, out: seen.update(x=inp[0], y=out[0]))
    with torch.no_grad():
        attn = model.forward_with_details(torch.randn(2, 3, 64, 64)).attentions[1]
        x = seen["x"]
        b, n, c = x.shape
        a = block.attn
        qkv = a.qkv(block.norm1(x)).reshape(b, n, 3, a.num_heads, a.head_dim)
        v = qkv[:, :, 2].transpose(1, 2)  # (B, nh, N, hd)
        y = x + a.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        y = y + block.mlp(block.norm2(y))
        # perturbing the weights must change the rebuilt output: the check is not vacuous
        y_wrong = x + a.proj((attn.flip(-1) @ v).transpose(1, 2).reshape(b, n, c))
    torch.testing.assert_close(y, seen["y"], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(y_wrong + block.mlp(block.norm2(y_wrong)), seen["y"], atol=1e-3)


def test_make_config_overrides_win():
    c = make_config("local_mad", "tiny", msad_p=0.5, depth=3)
    assert c.msad_p == 0.5 and c.depth == 3 and c.use_lanet


def test_tiny_model_is_small():
    model = build_model("transfer", "tiny")
    assert count_parameters(model) < 1_000_000
    assert isinstance(model, TransFER)
