"""Foreign checkpoints land where they belong, and anything else fails loudly.

Each test writes its own checkpoint with the upstream names and shapes (face.evoLVe IR-50, timm
ViT-Small v0.1, the authors' Paddle TransFER), fills it with distinct random values and checks
values, not only that loading does not raise.
"""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import pytest
import torch
from torch import nn

from transfer_lib.models import IR50Stem, MSADTransformer, build_model
from transfer_lib.utils.errors import CheckpointError
from transfer_lib.weights.convert import (
    LoadReport,
    load_ir50_stem,
    load_official_transfer,
    load_vit_small,
    read_paddle_params,
)


def _random_state(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Distinct random values for every entry, small enough to keep a deep forward finite."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.randint(1, 1000, (), generator=g)
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=g) * 0.05
            if re.search(r"(bn\d|norm\d?|layer\.[14]|layer\.1|shortcut_layer\.1)\.weight$", key):
                state[key] += 1.0  # BN / LayerNorm scales near 1
    return state


# ----------------------------------------------------------------------------- face.evoLVe IR-50


def _evolve_ir50_state() -> dict[str, torch.Tensor]:
    """face.evoLVe's IR-50 for 112 x 112 inputs, names and shapes as backbone/model_irse.py."""
    full = IR50Stem((64, 128, 256, 512), (3, 4, 14, 3))  # stages 1-4: body.0-23
    state = _random_state(full, seed=1)
    g = torch.Generator().manual_seed(2)
    # output_layer = BN2d(512), Dropout, Flatten, Linear(512*7*7, 512), BN1d(512)
    for idx in (0, 4):
        state[f"output_layer.{idx}.weight"] = torch.randn(512, generator=g)
        state[f"output_layer.{idx}.bias"] = torch.randn(512, generator=g)
        state[f"output_layer.{idx}.running_mean"] = torch.randn(512, generator=g)
        state[f"output_layer.{idx}.running_var"] = torch.rand(512, generator=g) + 0.5
        state[f"output_layer.{idx}.num_batches_tracked"] = torch.tensor(5)
    state["output_layer.3.weight"] = torch.randn(512, 512 * 7 * 7, generator=g) * 0.01
    state["output_layer.3.bias"] = torch.randn(512, generator=g)
    return state


def _saved(tmp_path_factory, folder: str, filename: str, state: dict):
    """``state`` written with torch.save under its upstream file name: (path, state)."""
    path = tmp_path_factory.mktemp(folder) / filename
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def ir50_file(tmp_path_factory):
    return _saved(tmp_path_factory, "evolve", "backbone_ir50_ms1m_epoch120.pth",
                  _evolve_ir50_state())


def test_ir50_layout_matches_face_evolve(ir50_file):
    _, state = ir50_file
    assert {k.split(".")[1] for k in state if k.startswith("body.") and "shortcut_layer.0" in k} == {"3", "7", "21"}
    assert state["output_layer.3.weight"].shape == (512, 25088)


def test_load_ir50_stem_values_and_report(ir50_file, capsys):
    path, state = ir50_file
    stem = IR50Stem()
    report = load_ir50_stem(stem, path)
    ours = stem.state_dict()
    assert set(report.loaded) == set(ours)
    for key, value in ours.items():
        assert torch.equal(value, state[key]), key
    skipped = set(report.skipped)
    assert {k for k in state if re.match(r"body\.2[1-3]\.", k) or k.startswith("output_layer.")} == skipped
    printed = capsys.readouterr().out
    assert "left out on purpose" in printed and "body.21" in printed and "output_layer" in printed
    assert "0.5" in str(report)  # the normalisation difference is reported


def test_load_ir50_stem_missing_key(ir50_file, tmp_path):
    _, state = ir50_file
    state = {k: v for k, v in state.items() if k != "body.5.res_layer.1.weight"}
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match=r"body\.5\.res_layer\.1\.weight"):
        load_ir50_stem(IR50Stem(), tmp_path / "cut.pth")


def test_load_ir50_stem_wrong_shape_names_both(ir50_file):
    path, _ = ir50_file
    with pytest.raises(CheckpointError, match=r"input_layer\.0\.weight.*\(64, 3, 3, 3\).*\(16, 3, 3, 3\)"):
        load_ir50_stem(IR50Stem((16, 32, 64), (1, 1, 2)), path)


def test_load_ir50_stem_accepts_wrapped_and_module_prefix(ir50_file, tmp_path):
    _, state = ir50_file
    small = {k: v for k, v in state.items()}
    torch.save({"state_dict": {f"module.{k}": v for k, v in small.items()}}, tmp_path / "w.pth")
    stem = IR50Stem()
    load_ir50_stem(stem, tmp_path / "w.pth", verbose=False)
    assert torch.equal(stem.body[20].res_layer[3].weight, state["body.20.res_layer.3.weight"])


# ----------------------------------------------------------------------------- timm ViT-Small


def _timm_vit_small_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.05

    state = {"cls_token": r(1, 1, 768), "pos_embed": r(1, 197, 768),
             "patch_embed.proj.weight": r(768, 3, 16, 16), "patch_embed.proj.bias": r(768)}
    for i in range(8):
        b = f"blocks.{i}."
        state |= {b + "norm1.weight": 1 + r(768), b + "norm1.bias": r(768),
                  b + "attn.qkv.weight": r(2304, 768),  # qkv_bias=False: no attn.qkv.bias
                  b + "attn.proj.weight": r(768, 768), b + "attn.proj.bias": r(768),
                  b + "norm2.weight": 1 + r(768), b + "norm2.bias": r(768),
                  b + "mlp.fc1.weight": r(2304, 768), b + "mlp.fc1.bias": r(2304),
                  b + "mlp.fc2.weight": r(768, 2304), b + "mlp.fc2.bias": r(768)}
    state |= {"norm.weight": 1 + r(768), "norm.bias": r(768),
              "head.weight": r(1000, 768), "head.bias": r(1000)}
    return state


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory):
    return _saved(tmp_path_factory, "timm", "vit_small_p16_224-15ec54c9.pth",
                  _timm_vit_small_state())


def test_load_vit_small_values_and_report(vit_file, capsys):
    path, state = vit_file
    transformer = MSADTransformer(196)
    report = load_vit_small(transformer, path)
    for key, value in transformer.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert sorted(report.skipped) == ["head.bias", "head.weight", "patch_embed.proj.bias",
                                      "patch_embed.proj.weight"]
    assert "patch_embed" in capsys.readouterr().out


def test_load_vit_small_wrong_pos_embed(vit_file, tmp_path):
    _, state = vit_file
    torch.save(dict(state, pos_embed=torch.zeros(1, 50, 768)), tmp_path / "v.pth")
    with pytest.raises(CheckpointError, match=r"pos_embed.*\(1, 50, 768\).*\(1, 197, 768\)"):
        load_vit_small(MSADTransformer(196), tmp_path / "v.pth")


def test_wrong_kind_of_file_is_named(vit_file, tmp_path):
    with pytest.raises(CheckpointError, match="timm ViT"):
        load_ir50_stem(IR50Stem(), vit_file[0])
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a torch file"):
        load_vit_small(MSADTransformer(196), tmp_path / "junk.pth")


def test_load_report_str():
    report = LoadReport("x", loaded=["a"], skipped=[f"body.21.res_layer.{i}.weight" for i in range(5)])
    assert "body.21.* (5)" in str(report)


# ----------------------------------------------------------------------------- the authors' Paddle model

#: the test's own statement of the authors' Paddle names, independent of pretrained.py's tables
PADDLE_LINEAR_WEIGHT = re.compile(r"^(transformer\.blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)|head)\.weight$")
PRELU_WEIGHT = re.compile(r"^stem\.(input_layer\.2|body\.\d+\.res_layer\.2)\.weight$")


def _to_paddle(state: dict[str, torch.Tensor], converted: bool = False) -> dict[str, np.ndarray]:
    """Our state dict as the authors' Paddle file: Paddle-native, or converted from PyTorch
    (PReLU ``weight``, BN ``running_*``) after the authors' snippet copied *.weight to *._weight."""
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue  # Paddle's BatchNorm has no counter
        array = value.numpy()
        if PADDLE_LINEAR_WEIGHT.match(key):
            array = array.T.copy()  # Paddle Linear: (in, out)
        name = key
        if not converted:
            name = re.sub(r"\.running_mean$", "._mean", name)
            name = re.sub(r"\.running_var$", "._variance", name)
            if PRELU_WEIGHT.match(key):
                name = name[: -len("weight")] + "_weight"
        name = re.sub(r"^stem\.", "extractor.", name)
        name = re.sub(r"^local_cnn\.lanets\.(\d+)\.conv(\d)\.", r"attention.las.\1.LA_conv\2.", name)
        name = re.sub(r"^local_cnn\.lanets\.(\d+)\.(bn\d)\.", r"attention.las.\1.\2.", name)
        name = re.sub(r"^projection\.", "convert.proj.", name)
        name = re.sub(r"^transformer\.", "vit.", name)
        name = re.sub(r"^head\.", "head.fc.", name)
        out[name] = array
    if converted:
        out |= {k[: -len("weight")] + "_weight": v for k, v in list(out.items()) if k.endswith(".weight")}
    out["StructuredToParameterName@@"] = {k: f"param_{i}" for i, k in enumerate(out)}
    return out


@pytest.fixture(scope="module")
def paddle_reference(tmp_path_factory):
    reference = build_model("transfer", "paper").eval()
    reference.load_state_dict(_random_state(reference, seed=4))
    params = _to_paddle(reference.state_dict())
    path = tmp_path_factory.mktemp("paddle") / "RAFa_2_6131_ep33_90p91.pdparams"
    with open(path, "wb") as f:
        pickle.dump(params, f, protocol=4)
    return path, params, reference


@pytest.fixture(scope="module")
def scratch_model():
    """One paper-size model for every load: a successful load overwrites every entry."""
    return build_model("transfer", "paper")


def test_paddle_names_are_the_authors(paddle_reference):
    _, params, _ = paddle_reference
    for key in ("extractor.input_layer.2._weight", "extractor.body.7.shortcut_layer.1._variance",
                "attention.las.1.LA_conv2.bias", "attention.las.0.bn1._mean", "convert.proj.weight",
                "vit.cls_token", "vit.blocks.7.attn.qkv.weight", "vit.norm.bias", "head.fc.bias"):
        assert key in params, key
    assert "extractor.body.21.res_layer.0.weight" not in params  # num_layers=44: units 0-20
    assert params["vit.blocks.0.attn.qkv.weight"].shape == (768, 2304)
    assert params["head.fc.weight"].shape == (768, 7)


def test_load_official_transfer_values_and_output(paddle_reference, scratch_model, capsys):
    path, params, reference = paddle_reference
    model = load_official_transfer(path, scratch_model)
    assert not model.training
    proj = model.transformer.blocks[3].attn.proj.weight  # square: transposed by module, not shape
    assert torch.equal(proj, torch.from_numpy(params["vit.blocks.3.attn.proj.weight"]).T)
    assert torch.equal(model.head.weight, torch.from_numpy(params["head.fc.weight"]).T)
    assert torch.equal(model.stem.body[7].shortcut_layer[1].running_var,
                       torch.from_numpy(params["extractor.body.7.shortcut_layer.1._variance"]))
    assert torch.equal(model.stem.body[2].res_layer[2].weight,
                       torch.from_numpy(params["extractor.body.2.res_layer.2._weight"]))
    assert torch.equal(model.local_cnn.lanets[1].conv2.weight,
                       torch.from_numpy(params["attention.las.1.LA_conv2.weight"]))
    assert int(model.stem.input_layer[1].num_batches_tracked) == 0
    assert "StructuredToParameterName@@" not in model.load_report.skipped
    assert "transposed" in capsys.readouterr().out
    x = torch.randn(1, 3, 112, 112, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert torch.isfinite(expected).all() and expected.abs().max() > 1e-3
    torch.testing.assert_close(got, expected)


def test_load_official_converted_from_pytorch(paddle_reference, scratch_model, tmp_path):
    _, _, reference = paddle_reference
    params = _to_paddle(reference.state_dict(), converted=True)
    assert "extractor.input_layer.2.weight" in params and "extractor.input_layer.1.running_var" in params
    with open(tmp_path / "converted.pdparams", "wb") as f:
        pickle.dump(params, f, protocol=4)
    model = load_official_transfer(tmp_path / "converted.pdparams", scratch_model, verbose=False)
    ours = model.state_dict()
    for key, value in reference.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(ours[key], value), key
    assert "extractor.input_layer.0._weight" in model.load_report.skipped  # the snippet's copies


def test_load_official_missing_and_misshaped(paddle_reference, scratch_model, tmp_path):
    _, params, _ = paddle_reference
    cut = {k: v for k, v in params.items() if k != "attention.las.0.bn2._variance"}
    with open(tmp_path / "cut.pdparams", "wb") as f:
        pickle.dump(cut, f, protocol=4)
    with pytest.raises(CheckpointError, match=r"local_cnn\.lanets\.0\.bn2\.running_var.*_variance"):
        load_official_transfer(tmp_path / "cut.pdparams", scratch_model, verbose=False)
    # a qkv weight left in PyTorch's (out, in) layout is refused with both shapes
    bad = dict(params, **{"vit.blocks.2.attn.qkv.weight": params["vit.blocks.2.attn.qkv.weight"].T})
    with open(tmp_path / "bad.pdparams", "wb") as f:
        pickle.dump(bad, f, protocol=4)
    with pytest.raises(CheckpointError, match=r"qkv\.weight has shape \(2304, 768\).*\(768, 2304\)"):
        load_official_transfer(tmp_path / "bad.pdparams", scratch_model, verbose=False)


# ----------------------------------------------------------------------------- safe unpickling


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _RunsEval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",))


@pytest.mark.parametrize("payload,refused", [(_RunsShell, "system"), (_RunsEval, "builtins.eval")])
def test_pickle_that_runs_code_is_refused(tmp_path, payload, refused):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pdparams"
    with open(path, "wb") as f:
        pickle.dump({"extractor.input_layer.0.weight": np.zeros(3), "x": payload(marker)}, f)
    with pytest.raises(CheckpointError, match=refused):
        read_paddle_params(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_paddle_pickle_protocols(tmp_path, protocol):
    """Paddle 2.0 wrote protocol 2 (bytes through _codecs.encode), later versions 4."""
    params = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.float64(2.5) * np.ones(1),
              "StructuredToParameterName@@": {"a": "linear_0.w_0"}}
    with open(tmp_path / "p.pdparams", "wb") as f:
        pickle.dump(params, f, protocol=protocol)
    got = read_paddle_params(tmp_path / "p.pdparams")
    assert set(got) == {"a", "b"} and np.array_equal(got["a"], params["a"])


def test_not_a_pickle(tmp_path, ir50_file):
    (tmp_path / "x.pdparams").write_bytes(b"\x00\x01binary inference params")
    with pytest.raises(CheckpointError, match="not a Paddle .pdparams pickle"):
        load_official_transfer(tmp_path / "x.pdparams")
    with pytest.raises(CheckpointError, match="torch zip"):
        load_official_transfer(ir50_file[0])
    with pytest.raises(CheckpointError, match="not found"):
        load_official_transfer(tmp_path / "absent.pdparams")


# ----------------------------------------------------------------------------- converter robustness


@pytest.mark.parametrize("shape", [(), (1,)])
def test_load_official_with_num_batches_tracked(paddle_reference, scratch_model, tmp_path, shape):
    """A file converted from PyTorch keeps BatchNorm's counter: 0-d (numpy of a 0-d tensor), or
    (1,) from a Paddle older than 2.5, which had no 0-d tensors. Both load, with their values."""
    _, _, reference = paddle_reference
    params = _to_paddle(reference.state_dict(), converted=True)
    counters = {}
    for key, value in reference.state_dict().items():
        if key.endswith("num_batches_tracked"):
            name = re.sub(r"^stem\.", "extractor.", key)
            name = re.sub(r"^local_cnn\.lanets\.(\d+)\.(bn\d)\.", r"attention.las.\1.\2.", name)
            counters[name] = value.numpy().reshape(shape)
    assert len(counters) > 40 and all(v.shape == shape for v in counters.values())
    with open(tmp_path / "counted.pdparams", "wb") as f:
        pickle.dump(params | counters, f, protocol=4)
    model = load_official_transfer(tmp_path / "counted.pdparams", scratch_model, verbose=False)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key  # the counters too
    assert int(model.stem.input_layer[1].num_batches_tracked) > 0


def test_load_official_strict_false_reports_extra_keys(paddle_reference, scratch_model, tmp_path):
    _, params, reference = paddle_reference
    extra = dict(params, **{"head.fc2.weight": np.zeros((768, 7), np.float32),
                            "vit.dist_token": np.zeros((1, 1, 768), np.float32)})
    with open(tmp_path / "extra.pdparams", "wb") as f:
        pickle.dump(extra, f, protocol=4)
    with pytest.raises(CheckpointError, match=r"2 key\(s\) this adapter does not know"):
        load_official_transfer(tmp_path / "extra.pdparams", scratch_model, verbose=False)
    model = load_official_transfer(tmp_path / "extra.pdparams", scratch_model, strict=False,
                                   verbose=False)
    assert sorted(model.load_report.unexpected) == ["head.fc2.weight", "vit.dist_token"]
    assert "strict=False" in str(model.load_report)
    assert torch.equal(model.head.weight, reference.head.weight)
    # strict=False is about extra keys only: a missing key still fails
    cut = {k: v for k, v in params.items() if k != "vit.norm.bias"}
    with open(tmp_path / "cut.pdparams", "wb") as f:
        pickle.dump(cut, f, protocol=4)
    with pytest.raises(CheckpointError, match=r"transformer\.norm\.bias"):
        load_official_transfer(tmp_path / "cut.pdparams", scratch_model, strict=False,
                               verbose=False)


class _PaddleRawTensor:
    """Pickles as paddle.save pickles a raw Tensor (``reduce_varbase`` in
    ``python/paddle/framework/io.py``): ``(tuple, ((name, array),))``."""

    def __init__(self, name: str, array: np.ndarray):
        self.name, self.array = name, array

    def __reduce__(self):
        return (tuple, ((self.name, self.array),))


@pytest.mark.parametrize("protocol", [2, 4])
def test_paddle_raw_tensor_pairs_are_unwrapped(tmp_path, protocol):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = tmp_path / "raw.pdparams"
    with open(path, "wb") as f:
        pickle.dump({"vit.norm.weight": _PaddleRawTensor("layer_norm_0.w_0", a),
                     "vit.norm.bias": np.ones(3, np.float32)}, f, protocol=protocol)
    assert b"tuple" in path.read_bytes()  # the pickle really calls tuple()
    got = read_paddle_params(path)
    assert set(got) == {"vit.norm.weight", "vit.norm.bias"}
    assert np.array_equal(got["vit.norm.weight"], a)
