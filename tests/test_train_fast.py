"""The trainer's fast input pipeline (uint8 cache + batched augmentation) on the smoke profile:
a complete run directory, the pipeline and augmentation recorded and used, DDP shards, and a
SIGKILLed run resumed to bitwise the same weights. Learning is not compared with the per-image
path (on a few smoke steps that comparison is noise)."""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TVF
from train_callbacks import kill_in_epoch

import transfer_lib.train as tr
from transfer_lib.data import fast
from transfer_lib.models import make_config
from transfer_lib.train import LIGHT_CROP_RATIO, LIGHT_CROP_SCALE, TrainConfig, train
from transfer_lib.train.distributed import DistContext
from transfer_lib.train.profiles import get_profile
from transfer_lib.weights.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


class Spy:
    """Records every FastLoader the trainer builds and every batch augmented (the augmentation
    object and its ``last_params``); fails if the per-image DataLoaders are built."""

    def __init__(self, monkeypatch):
        self.loaders, self.calls = [], []
        real_init, real_call = fast.FastLoader.__init__, fast.BatchAugment.__call__
        depth = threading.local()

        def init(loader, *a, **k):
            real_init(loader, *a, **k)
            self.loaders.append(loader)

        def call(aug, images, generator=None):
            # BatchAugment calls itself once more on the CPU (to run on one thread): count once
            depth.n = getattr(depth, "n", 0) + 1
            try:
                out = real_call(aug, images, generator)
            finally:
                depth.n -= 1
            if depth.n == 0:
                self.calls.append((aug, dict(aug.last_params) if aug.train else None))
            return out

        def no_per_image(*a, **k):
            raise AssertionError("the per-image DataLoaders were built with fast on")

        monkeypatch.setattr(fast.FastLoader, "__init__", init)
        monkeypatch.setattr(fast.BatchAugment, "__call__", call)
        monkeypatch.setattr("transfer_lib.train.loop.build_loaders", no_per_image)


def test_fast_run_is_complete_and_uses_the_light_batch_augment(tmp_path, cache_dir, monkeypatch):
    spy = Spy(monkeypatch)
    out = tmp_path / "fast"
    summary = train(TrainConfig(profile="smoke", fast=True, device="cpu", max_steps=3, out=str(out),
                                cache_dir=str(cache_dir), progress=False))
    for name in ("config.json", "metrics.jsonl", "last.pt", "best.pt", "summary.json"):
        assert (out / name).is_file(), name
    assert summary["complete"] and summary["pipeline"] == "fast"
    config = json.loads((out / "config.json").read_text())
    assert config["pipeline"] == "fast" and config["train_augment"].startswith("LightBatchAugment")
    assert config["cache"].startswith(str(cache_dir))
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert all(x["pipeline"] == "fast" and x["images_per_second"] > 0 and "test_accuracy" in x
               for x in lines)
    assert load_checkpoint(out / "last.pt")["global_step"] == 6
    assert load_checkpoint(out / "last.pt")["pipeline"] == "fast"

    train_loader, test_loader, val_loader = spy.loaders
    aug = train_loader.augment
    assert type(aug).__name__ == "LightBatchAugment" and isinstance(aug, fast.BatchAugment)
    assert (aug.scale, aug.ratio) == (LIGHT_CROP_SCALE, LIGHT_CROP_RATIO)
    assert train_loader.device == torch.device("cpu") and train_loader.shuffle
    assert train_loader.batch_size == 8 and train_loader.seed == 0
    assert not test_loader.shuffle and test_loader.augment.train is False
    assert not val_loader.shuffle and val_loader.augment.train is False
    assert len(val_loader.cache) == len(test_loader.cache) == 21
    train_calls = [p for a, p in spy.calls if a is aug]
    assert len(train_calls) == 6  # 3 steps x 2 epochs, no batch augmented beyond max_steps
    assert all(set(p) == {"crops", "flips"} for p in train_calls)  # crop + flip, no RandAugment
    # the test and val sets went through the cache: 21 images each, every epoch and none more
    assert sum(a is test_loader.augment for a, _ in spy.calls) == 2
    assert sum(a is val_loader.augment for a, _ in spy.calls) == 2
    assert all("val_accuracy" in x for x in lines) and summary["best_selected_on"] == "validation"


def test_paper_augment_runs_randaugment(tmp_path, cache_dir, monkeypatch):
    spy = Spy(monkeypatch)
    train(TrainConfig(profile="smoke", augment="paper", fast=True, device="cpu", epochs=1,
                      max_steps=1, out=str(tmp_path / "p"), cache_dir=str(cache_dir),
                      progress=False))
    aug = spy.loaders[0].augment
    assert type(aug) is fast.BatchAugment and aug.train
    params = [p for a, p in spy.calls if a is aug]
    assert len(params) == 1 and {"crops", "flips", "ops", "signs", "erase"} <= set(params[0])
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    assert config["train_augment"].startswith("BatchAugment(") and "train=True" in config["train_augment"]


def test_light_batch_augment_matches_the_per_image_transform():
    """Same crop and flip: the batched light augmentation is within one grey level of
    _light_train_transform's (PIL crop + resize, flip, ToTensor, Normalize)."""
    mc = make_config("transfer", "tiny", num_classes=7)
    aug = tr.batch_augment_for(mc, "light")
    g = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.arange(100.0), torch.arange(100.0), indexing="ij")
    smooth = torch.stack([xx * 2.5, yy * 2.5, (xx + yy) * 1.2])  # a smooth uint8 image
    images = (smooth.unsqueeze(0) + torch.rand(16, 3, 1, 1, generator=g) * 20).clamp(0, 255)
    images = images.round().to(torch.uint8)
    x = aug(images, generator=torch.Generator().manual_seed(0))
    crops, flips = aug.last_params["crops"], aug.last_params["flips"]
    assert x.shape == (16, 3, 64, 64) and flips.any() and not flips.all()
    mean, std = torch.tensor(mc.mean).view(3, 1, 1), torch.tensor(mc.std).view(3, 1, 1)
    for i in range(16):
        top, left, h, w = crops[i].tolist()
        assert 0.7 * 100 * 100 * 0.97 <= h * w <= 100 * 100 and 0.85 <= w / h <= 1.15
        pil = Image.fromarray(images[i].permute(1, 2, 0).numpy())
        ref = TVF.resized_crop(pil, top, left, h, w, [64, 64])
        if flips[i]:
            ref = TVF.hflip(ref)
        ref = (TVF.to_tensor(ref) - mean) / std
        grey_levels = ((x[i] - ref) * std * 255).abs().max()
        assert grey_levels <= 1.01, (i, float(grey_levels))


def test_ddp_shards_are_distinct_and_equally_long(tmp_path, monkeypatch):
    """What torchrun's ranks get: disjoint shards, the same number of batches on every rank."""
    from transfer_lib.data import build_dataset
    from transfer_lib.data.synth import ensure_synthetic

    smoke = get_profile("smoke")
    root = ensure_synthetic(smoke.synthetic_root, train=smoke.synthetic_train,
                            test=smoke.synthetic_test)
    train_set, test_set = build_dataset("rafdb", root, "train"), build_dataset("rafdb", root, "test")
    mc = make_config("transfer", "tiny", num_classes=7)
    monkeypatch.setattr("transfer_lib.train.data.barrier", lambda ctx: None)
    # 48 images. 2 ranks, batch 6: 3 a step, 24 a rank, drop_last. 5 ranks, batch 64: 12 a
    # step but 10 a rank, so no drop_last: padded by wrap-around to 50, one batch of 10 each.
    for world, batch, sizes in ((2, 6, [3] * 8), (5, 64, [10])):
        prof = smoke.replace(batch_size=batch, balance="none")  # permutations, not draws
        cfg = TrainConfig(profile=prof, cache_dir=str(tmp_path), seed=4)
        shards = []
        for rank in range(world):
            loader, test, val = tr.build_fast_loaders(cfg, prof, mc, root,
                                                      DistContext(rank=rank, world_size=world),
                                                      train_set, test_set)
            assert (test is None) == (rank > 0) and val is None and loader.world_size == world
            loader.set_epoch(1)
            assert [len(b) for b in loader._batches()] == sizes and len(loader) == len(sizes)
            shards.append(loader.indices().tolist())
        assert len(set().union(*shards)) == 48
        if world == 2:
            assert not set(shards[0]) & set(shards[1])
        loader.set_epoch(2)
        assert loader.indices().tolist() != shards[-1]  # reshuffled every epoch


ARGS = ["--profile", "smoke", "--epochs", "3", "--max-steps", "3", "--no-progress", "--seed", "1",
        "--fast", "--device", "cpu"]


def _train(out, cache, *extra, command=(sys.executable, "-m", "transfer_lib", "train")):
    return subprocess.run([*command, *ARGS, "--out", str(out), *extra], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "2",
                                          "TRANSFER_CACHE": str(cache)})


@pytest.mark.slow
def test_fast_sigkill_then_resume_gives_the_same_weights(tmp_path):
    cache = tmp_path / "cache"
    whole = _train(tmp_path / "whole", cache)
    assert whole.returncode == 0, whole.stderr

    # the train command with a callback that SIGKILLs it after the first step of epoch 2
    killed = _train(tmp_path / "cut", cache, command=kill_in_epoch(tmp_path, 2))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1

    resumed = _train(tmp_path / "cut", cache, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "warning" not in resumed.stderr

    a = load_checkpoint(tmp_path / "whole" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert a["pipeline"] == b["pipeline"] == "fast"
    assert a["epoch"] == b["epoch"] == 3 and a["global_step"] == b["global_step"] == 9
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    lines = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [x["pipeline"] for x in lines] == ["fast"] * 3


def test_switching_pipeline_on_resume_warns(tmp_path, cache_dir, capsys):
    out = tmp_path / "sw"
    common = dict(profile="smoke", device="cpu", max_steps=1, out=str(out),
                  cache_dir=str(cache_dir), progress=False)
    train(TrainConfig(epochs=1, fast=False, **common))  # per-image
    assert json.loads((out / "config.json").read_text())["pipeline"] == "per-image"
    summary = train(TrainConfig(epochs=2, fast=True, resume=True, new_recipe=True, **common))
    assert summary["pipeline"] == "fast"
    err = capsys.readouterr().err
    assert "per-image input pipeline" in err and "--no-fast" in err


def test_cli_fast_flags():
    import argparse

    from transfer_lib.cli.train import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for argv, want in (([], None), (["--fast"], True), (["--no-fast"], False)):
        cfg = config_from_args(parser.parse_args(["--profile", "smoke", *argv]))
        assert cfg.fast is want
    cfg = config_from_args(parser.parse_args(["--profile", "smoke", "--cache-dir", "/x/cache"]))
    assert cfg.cache_dir == "/x/cache"
