"""The cpu recipe's switches: class-balanced sampling, gradient clipping, the profile's input size,
bf16 on a CPU only where it is native."""

import json
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from transfer_lib.data.fast import FastLoader, ImageCache
from transfer_lib.train import EpochShardSampler, TrainConfig, sample_weights, train
from transfer_lib.train.profiles import get_profile

#: RAF-DB-like imbalance: 60 % of one class, 1 % of another
TARGETS = [0] * 10 + [1] * 5 + [2] * 20 + [3] * 600 + [4] * 150 + [5] * 15 + [6] * 200


def _balanced():
    return get_profile("cpu").replace(balance="sampler")


def test_sample_weights_are_one_over_the_class_count():
    w = sample_weights(SimpleNamespace(targets=TARGETS), _balanced())
    counts = Counter(TARGETS)
    assert w.shape == (len(TARGETS),)
    assert torch.allclose(w, torch.tensor([1.0 / counts[t] for t in TARGETS], dtype=w.dtype))
    assert sample_weights(SimpleNamespace(targets=TARGETS),
                          get_profile("cpu").replace(balance="none")) is None


def test_balanced_sampler_draws_every_class_equally_often_and_is_reproducible():
    w = sample_weights(SimpleNamespace(targets=TARGETS), _balanced())
    sampler = EpochShardSampler(len(TARGETS), seed=3, weights=w)
    sampler.set_epoch(2)
    order = list(sampler)
    assert len(order) == len(TARGETS)  # an epoch is as long as the data set
    assert order == list(sampler)  # a pure function of (seed, epoch): resumption stays exact
    sampler.set_epoch(3)
    assert order != list(sampler)
    share = Counter(TARGETS[i] for i in order)
    # 1,000 draws over 7 classes: each near 1/7 = 143 (binomial sd ~ 11); unbalanced the rarest
    # class would get 5 and the largest 600
    assert all(90 <= share[k] <= 200 for k in range(7)), share


def test_fast_loader_draws_balanced_batches_by_seed_and_epoch():
    n = len(TARGETS)
    cache = ImageCache(images=torch.zeros(n, 4, 4, 3, dtype=torch.uint8).numpy(),
                       labels=torch.tensor(TARGETS), classes=tuple("abcdefg"), path=None)
    w = sample_weights(SimpleNamespace(targets=TARGETS), _balanced())
    loader = FastLoader(cache, 50, shuffle=True, device="cpu", seed=1, sample_weights=w)
    loader.set_epoch(0)
    first = loader.indices()
    assert torch.equal(first, loader.indices())
    loader.set_epoch(1)
    assert not torch.equal(first, loader.indices())
    share = Counter(TARGETS[i] for i in first.tolist())
    assert all(90 <= share[k] <= 200 for k in range(7)), share
    plain = FastLoader(cache, 50, shuffle=True, device="cpu", seed=1)
    assert sorted(plain.indices().tolist()) == list(range(n))  # without weights: a permutation


def test_gradient_clipping_runs_every_step_only_when_asked(tmp_path, monkeypatch):
    calls = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        calls.append(max_norm)
        return real(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    common = dict(profile="smoke", device="cpu", epochs=1, max_steps=3, progress=False)
    train(TrainConfig(out=str(tmp_path / "clip"), grad_clip=0.5, **common))
    assert calls == [0.5, 0.5, 0.5]
    calls.clear()
    train(TrainConfig(out=str(tmp_path / "noclip"), grad_clip=0.0, **common))
    assert calls == []


def test_the_profile_input_size_reaches_the_model_and_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(profile="smoke", device="cpu", epochs=1, max_steps=1, out=str(out),
                      progress=False))
    config = json.loads((out / "config.json").read_text())
    assert get_profile("smoke").input_size == get_profile("cpu").input_size == 48
    assert config["model"]["input_size"] == 48 and config["profile"]["input_size"] == 48
    from transfer_lib.weights.checkpoint import model_from_checkpoint

    model = model_from_checkpoint(out / "best.pt")
    assert model.config.input_size == 48
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 48, 48)).shape == (2, 7)


@pytest.mark.parametrize("native", [False, True])
def test_cpu_bf16_only_where_the_cpu_has_it(tmp_path, monkeypatch, native):
    seen = []
    real = torch.autocast

    def spy(device_type, *args, **kwargs):
        seen.append((device_type, kwargs.get("enabled", True)))
        return real(device_type, *args, **kwargs)

    monkeypatch.setattr("transfer_lib.train.loop.cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(torch, "autocast", spy)
    prof = get_profile("smoke").replace(cpu_amp=True)
    train(TrainConfig(profile=prof, device="cpu", epochs=1, max_steps=1,
                      out=str(tmp_path / "run"), progress=False))
    assert seen and all(enabled == native for device, enabled in seen if device == "cpu")


def test_profile_rejects_an_unknown_balance():
    with pytest.raises(ValueError, match="balance"):
        get_profile("cpu").replace(balance="oversample")
