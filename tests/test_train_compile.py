"""The training step for a GPU, checked on the CPU: one graph with no break for every variant,
the compile wiring of the trainer, host reads every k steps, the fused optimiser, the amp dtype."""

import json
from types import SimpleNamespace

import pytest
import torch

from transfer_lib import train as train_mod
from transfer_lib.cli.summary import count_parameters, forward_flops
from transfer_lib.models import build_model
from transfer_lib.models.config import VARIANTS
from transfer_lib.train import (
    build_optimiser,
    compile_step,
    make_forward_loss,
    pick_amp_dtype,
    train,
)
from transfer_lib.train.profiles import PROFILES

SMOKE = dict(profile="smoke", progress=False)
MODEL_SETTINGS = [(v, {}) for v in VARIANTS] + [
    ("transfer", {"msad_mode": "token", "map_regulariser": "dropblock", "mad_num_drop": 2,
                  "msad_num_drop": 2}),
]


@pytest.mark.parametrize("variant,overrides", MODEL_SETTINGS,
                         ids=[f"{v}-{'-'.join(map(str, o.values())) or 'default'}"
                              for v, o in MODEL_SETTINGS])
def test_forward_loss_is_one_graph(variant, overrides):
    """What the trainer compiles (forward, loss, accuracy under bf16 autocast, channels_last)
    traces as one graph in training mode, with MAD and MSAD drawing their masks."""
    torch._dynamo.reset()
    model = build_model(variant, "tiny", **overrides).train().to(memory_format=torch.channels_last)
    s = model.config.input_size
    x = torch.randn(4, 3, s, s).contiguous(memory_format=torch.channels_last)
    y = torch.randint(model.config.num_classes, (4,))
    step = make_forward_loss(model, 0.1, "cpu", torch.bfloat16)
    explained = torch._dynamo.explain(step)(x, y)
    reasons = [str(b.reason) for b in explained.break_reasons]
    assert explained.graph_break_count == 0, reasons
    assert explained.graph_count == 1
    torch._dynamo.reset()


def test_forward_loss_values():
    model = build_model("transfer", "tiny").eval()
    x, y = torch.randn(3, 3, 64, 64), torch.tensor([0, 3, 6])
    loss, correct = make_forward_loss(model)(x, y)
    logits = model(x)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item())
    assert correct.item() == (logits.argmax(1) == y).sum().item()


def test_compile_step_refuses_an_unknown_mode():
    with pytest.raises(train_mod.TransferError, match="reduce-overhead"):
        compile_step(lambda x: x, "turbo")


def _eager_compile(calls):
    """A torch.compile that records its arguments and traces with dynamo but no inductor (fast on
    a CPU); fullgraph is kept, so a graph break in the trainer's step fails the run."""
    real = torch.compile

    def fake(fn, **kwargs):
        calls.append(kwargs)
        return real(fn, backend="eager", fullgraph=kwargs.get("fullgraph", False))

    return fake


def test_trainer_compiles_its_step_in_full_graph(tmp_path, monkeypatch):
    calls: list[dict] = []
    monkeypatch.setattr(torch, "compile", _eager_compile(calls))
    torch._dynamo.reset()
    out = tmp_path / "run"
    summary = train(out=str(out), epochs=1, max_steps=2, compile=True,
                    compile_mode="reduce-overhead", **SMOKE)
    torch._dynamo.reset()
    assert summary["complete"]
    assert calls == [{"fullgraph": True, "mode": "reduce-overhead"}]
    saved = json.loads((out / "config.json").read_text())["train"]
    assert saved["compile"] and saved["compile_mode"] == "reduce-overhead"


@pytest.mark.parametrize("sync_every,reads", [(None, 5 + 1), (2, 3 + 1)])
def test_loss_is_read_every_k_steps(tmp_path, monkeypatch, sync_every, reads):
    """The host reads the summed loss (a device sync on a GPU) at steps k, 2k, ..., the last
    step, and once after the epoch; on a CPU k defaults to 1."""
    seen = []
    real = train_mod._check_finite

    def counting(ctx, loss_sum, *args):
        assert isinstance(loss_sum, float)
        seen.append(loss_sum)
        return real(ctx, loss_sum, *args)

    monkeypatch.setattr("transfer_lib.train.loop._check_finite", counting)
    train(out=str(tmp_path / "run"), epochs=1, max_steps=5, sync_every=sync_every,
          profile="smoke", progress=True)
    assert len(seen) == reads
    assert seen[-1] == seen[-2]  # the last step's read holds the epoch's whole sum


def test_sync_every_is_validated_and_an_execution_setting(tmp_path):
    with pytest.raises(train_mod.TransferError, match="sync_every=0"):
        train(out=str(tmp_path / "x"), sync_every=0, **SMOKE)
    assert {"sync_every", "compile_mode", "amp_dtype"} <= set(train_mod._EXECUTION_FIELDS)


def test_optimiser_is_fused_only_on_cuda():
    model = build_model("transfer", "tiny")
    for name in ("cpu", "paper"):  # adamw and sgd
        opt = build_optimiser(model, PROFILES[name])
        assert not opt.param_groups[0].get("fused")
    on_gpu = SimpleNamespace(parameters=lambda: [SimpleNamespace(is_cuda=True)] * 2)
    assert train_mod._fused_kwargs(on_gpu) == {"fused": True}
    mixed = SimpleNamespace(parameters=lambda: [SimpleNamespace(is_cuda=True),
                                                SimpleNamespace(is_cuda=False)])
    assert train_mod._fused_kwargs(mixed) == {}


@pytest.mark.parametrize("capability,dtype", [((7, 5), "fp16"), ((7, 0), "fp16"),
                                              ((8, 0), "bf16"), ((8, 9), "bf16"),
                                              ((9, 0), "bf16")])
def test_pick_amp_dtype_by_compute_capability(monkeypatch, capability, dtype):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    # a T4 (7.5) reports bf16 as supported through emulation: the capability decides
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert pick_amp_dtype("cuda") == dtype
    assert pick_amp_dtype(torch.device("cuda", 0)) == dtype
    assert pick_amp_dtype("cpu") == "bf16"


def test_amp_dtype_is_resolved_before_training(monkeypatch):
    picked, trained = [], []
    monkeypatch.setattr(train_mod, "pick_amp_dtype", lambda device: picked.append(device) or "fp16")
    monkeypatch.setattr(train_mod, "_train", lambda cfg, ctx: trained.append(cfg) or {})
    train(**SMOKE)
    assert [torch.device(d).type for d in picked] == ["cpu"]
    assert trained[-1].amp_dtype == "fp16"  # what _train, config.json and the scaler see
    picked.clear()
    train(amp_dtype="bf16", **SMOKE)
    assert picked == [] and trained[-1].amp_dtype == "bf16"  # an explicit choice is kept


def test_progress_bar_without_tqdm(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    bar = train_mod._progress_bar(3, "epoch", True)
    bar.update(1)
    bar.set_postfix(loss="1.0")
    bar.close()
    assert isinstance(bar, train_mod._NoBar)


def test_small_size_lies_between_tiny_and_paper():
    small = build_model("transfer", "small")
    c = small.config
    assert (c.input_size, c.num_tokens, c.embed_dim % c.num_heads) == (112, 196, 0)
    flops = forward_flops(small)
    # tiny: 0.12 G, paper: 29.6 G (tests/models/test_model.py); the profile's estimate uses 2.64
    assert 2.5e9 < flops < 2.8e9, flops
    assert 4e6 < count_parameters(small) < 5e6
