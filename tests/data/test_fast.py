import os
import time

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from tests.data.conftest import write_rafdb
from transfer_lib.data import build_dataset, eval_transform, train_transform
from transfer_lib.data.fast import (
    BatchAugment,
    FastLoader,
    build_cache,
    sample_crops,
)
from transfer_lib.data.synth import generate
from transfer_lib.data.transforms import CROP_RATIO, CROP_SCALE, sample_authors_erasing
from transfer_lib.models.config import TransFERConfig


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("faces") / "s", train=48, test=8, seed=1, workers=1)
    return build_dataset("synthetic", root, "train")


@pytest.fixture(scope="module")
def cache(faces, tmp_path_factory):
    return build_cache(faces, tmp_path_factory.mktemp("cache"))


def test_cache_contents(faces, cache):
    assert cache.images.shape == (48, 100, 100, 3) and cache.images.dtype == np.uint8
    assert cache.labels.tolist() == faces.targets and cache.classes == faces.classes
    assert (cache.images[5] == np.asarray(faces.load_image(5))).all()


def test_cache_rebuilt_when_a_source_file_changes(tmp_path):
    root = write_rafdb(tmp_path / "r")
    ds = build_dataset("rafdb", root, "train")
    c1 = build_cache(ds, tmp_path / "cache")
    assert build_cache(ds, tmp_path / "cache").path == c1.path  # reused
    img = root / "basic" / "Image" / "aligned" / "train_00002_aligned.jpg"
    from PIL import Image
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(img)
    os.utime(img, ns=(time.time_ns(), time.time_ns() + 10**9))
    c2 = build_cache(build_dataset("rafdb", root, "train"), tmp_path / "cache")
    assert c2.path != c1.path and c2.images[1].max() <= 8
    assert not c1.path.exists()  # the stale cache is removed
    assert not [p for p in (tmp_path / "cache").iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize("damage", ["truncated json", "missing labels", "short images"])
def test_a_damaged_cache_is_rebuilt_with_a_warning(tmp_path, capsys, damage):
    root = write_rafdb(tmp_path / "r")
    ds = build_dataset("rafdb", root, "train")
    good = build_cache(ds, tmp_path / "cache")
    expected = np.array(good.images)
    meta = good.path.with_name(good.path.name[:-len(".npy")] + ".json")
    del good
    if damage == "truncated json":
        meta.write_text(meta.read_text()[:20])
    elif damage == "missing labels":
        next((tmp_path / "cache").glob("*-labels.npy")).unlink()
    else:
        img = next(p for p in (tmp_path / "cache").glob("*.npy") if "labels" not in p.name)
        np.save(img, np.zeros((1, 100, 100, 3), np.uint8))
    again = build_cache(ds, tmp_path / "cache")
    err = capsys.readouterr().err
    assert "is damaged" in err and "rebuilding it" in err
    assert (np.array(again.images) == expected).all() and again.labels.tolist() == ds.targets


@pytest.mark.parametrize("size", [112, 64])
def test_eval_path_matches_per_image_within_one_grey_level(faces, cache, size):
    config = TransFERConfig(input_size=size)
    per_image = torch.stack([eval_transform(config)(faces.load_image(i)) for i in range(16)])
    x, _ = cache.batch(torch.arange(16))
    batched = BatchAugment(config, train=False)(x)
    std = torch.tensor(config.std).view(1, 3, 1, 1)
    diff = ((per_image - batched) * std * 255).abs()
    assert batched.shape == (16, 3, size, size)
    assert diff.max() <= 1.0 + 1e-3, diff.max()


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.sort(np.concatenate([a, b]))
    ca = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(ca - cb).max())


def _authors_erasing_reference(shape, rng) -> tuple[int, int, int, int]:
    """The authors' RandomErasing.__call__ (random_erasing.py, EPSILON 0.5, sl 0.02, sh 0.4,
    r1 0.3) on an array of ``shape``, ported line by line: the box it erases, or zeros."""
    import math

    if rng.uniform(0, 1) > 0.5:
        return 0, 0, 0, 0
    for _ in range(100):
        area = shape[1] * shape[2]
        target_area = rng.uniform(0.02, 0.4) * area
        aspect_ratio = rng.uniform(0.3, 1 / 0.3)
        h = int(round(math.sqrt(target_area * aspect_ratio)))
        w = int(round(math.sqrt(target_area / aspect_ratio)))
        if w < shape[2] and h < shape[1]:
            return rng.randint(0, shape[1] - h), rng.randint(0, shape[2] - w), h, w
    return 0, 0, 0, 0


def test_crop_and_erase_parameters_follow_torchvision():
    from torchvision import transforms as v1

    threads = torch.get_num_threads()  # thousands of tiny ops: OpenMP only spins (busy machines)
    torch.set_num_threads(1)
    try:
        _crop_and_erase_parameters_follow_torchvision(v1)
    finally:
        torch.set_num_threads(threads)


def _crop_and_erase_parameters_follow_torchvision(v1):

    g = torch.Generator().manual_seed(0)
    img = torch.zeros(3, 100, 100)
    n = 3000
    ours = sample_crops(n, 100, 100, generator=g).numpy()
    ref = np.array([v1.RandomResizedCrop.get_params(img, CROP_SCALE, list(CROP_RATIO)) for _ in range(n)])
    for col in range(4):  # top, left, h, w
        assert _ks(ours[:, col], ref[:, col]) < 0.05, col
    area_o, area_r = ours[:, 2] * ours[:, 3], ref[:, 2] * ref[:, 3]
    assert _ks(area_o, area_r) < 0.05

    import random

    rng = random.Random(0)
    for shape in [(3, 112, 112), (112, 112, 3)]:  # "config" (CHW) and "authors" (their HWC)
        er = sample_authors_erasing(n, shape, generator=g).numpy()
        ref_e = np.array([_authors_erasing_reference(shape, rng) for _ in range(n)])
        applied, ref_applied = er[:, 2] > 0, ref_e[:, 2] > 0
        assert abs(applied.mean() - ref_applied.mean()) < 0.04 and abs(applied.mean() - 0.5) < 0.04
        for col in range(4):  # x1, y1, h, w of the boxes drawn
            assert _ks(er[applied, col], ref_e[ref_applied, col]) < 0.06, (shape, col)
        assert (er[:, 2] < shape[1]).all() and (er[:, 3] < shape[2]).all()
        assert (er[:, 0] + er[:, 2] <= shape[1]).all() and (er[:, 1] + er[:, 3] <= shape[2]).all()


@pytest.mark.parametrize("randaugment,erasing", [("paddle", "authors"), ("torchvision", "config")])
def test_train_paths_have_the_same_output_statistics(faces, cache, randaugment, erasing):
    config = TransFERConfig(input_size=64)
    torch.manual_seed(0)
    tf = train_transform(config, randaugment, erasing)
    per_image = torch.stack([tf(faces.load_image(i % 48)) for i in range(384)])
    aug = BatchAugment(config, train=True, randaugment=randaugment, erasing=erasing)
    g = torch.Generator().manual_seed(0)
    x, _ = cache.batch(torch.arange(48))
    batched = torch.cat([aug(x, generator=g) for _ in range(8)])
    assert batched.shape == per_image.shape
    for name, stat in [("mean", lambda t: t.mean((0, 2, 3))), ("std", lambda t: t.std((0, 2, 3)))]:
        a, b = stat(per_image), stat(batched)
        assert (a - b).abs().max() < 0.08, (name, a, b)
    # share of zeroed pixels (erasing + torchvision's black fill), of grey-128 ones (Paddle's fill)
    zero_a, zero_b = (per_image == 0).all(1).float().mean(), (batched == 0).all(1).float().mean()
    assert abs(zero_a - zero_b) < 0.03, (zero_a, zero_b)
    grey = ((torch.tensor(128 / 255) - torch.tensor(config.mean)) / torch.tensor(config.std)).view(1, 3, 1, 1)
    grey_a = ((per_image - grey).abs() < 1e-4).all(1).float().mean()
    grey_b = ((batched - grey).abs() < 1e-4).all(1).float().mean()
    assert abs(grey_a - grey_b) < 0.03, (grey_a, grey_b)
    if randaugment == "paddle":
        assert grey_a > 0.01 and zero_a < 0.01  # grey fill, and no erasing in effect
    # per-image means: same spread (crops, lighting ops)
    ma, mb = per_image.mean((1, 2, 3)).numpy(), batched.mean((1, 2, 3)).numpy()
    assert _ks(ma, mb) < 0.15
    # flip rate (drawn per sample whatever the image size: small images keep this cheap)
    small = x[:, :, :16, :16].contiguous()
    flips = torch.cat([aug(small, generator=g) is not None and aug.last_params["flips"] for _ in range(20)])
    assert abs(flips.float().mean() - 0.5) < 0.05


def test_batch_augment_detects_a_wrong_distribution(faces, cache):
    """The statistics above can fail: no RandAugment and no erasing shift the zero share."""
    config = TransFERConfig(input_size=64)
    tf = v2.Compose([v2.RandomResizedCrop(64), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize(config.mean, config.std)])
    per_image = torch.stack([tf(faces.load_image(i % 48)) for i in range(192)])
    x, _ = cache.batch(torch.arange(48))
    aug = BatchAugment(config, train=True, randaugment="torchvision", erasing="config")
    batched = torch.cat([aug(x, generator=torch.Generator().manual_seed(i)) for i in range(4)])
    zero_a, zero_b = (per_image == 0).all(1).float().mean(), (batched == 0).all(1).float().mean()
    assert abs(zero_a - zero_b) > 0.03


def test_loader_epochs_resume_shards_and_drop_last(cache):
    aug = BatchAugment(TransFERConfig(input_size=32), train=True)
    a = FastLoader(cache, 10, shuffle=True, drop_last=True, device="cpu", augment=aug, seed=7)
    b = FastLoader(cache, 10, shuffle=True, drop_last=True, device="cpu", augment=aug, seed=7)
    assert len(a) == 4
    a.set_epoch(3)
    b.set_epoch(3)
    xa, ya = zip(*list(a))
    xb, yb = zip(*list(b))
    assert all(torch.equal(p, q) for p, q in zip(xa, xb)) and all(torch.equal(p, q) for p, q in zip(ya, yb))
    assert xa[0].shape == (10, 3, 32, 32) and xa[0].dtype == torch.float32 and ya[0].dtype == torch.long
    b.set_epoch(4)
    assert not torch.equal(a.indices(), b.indices())
    full = FastLoader(cache, 10, shuffle=False, drop_last=False, device="cpu")
    assert len(full) == 5 and sum(len(y) for _, y in full) == 48
    x, _ = next(iter(full))
    assert x.dtype == torch.uint8
    shards = [FastLoader(cache, 8, shuffle=True, seed=1, rank=r, world_size=3, device="cpu")
              for r in range(3)]
    idx = [s.indices() for s in shards]
    assert all(len(i) == 16 for i in idx)
    assert sorted(torch.cat(idx).tolist()) == list(range(48))
    uneven = [FastLoader(cache, 8, seed=1, rank=r, world_size=5, device="cpu").indices() for r in range(5)]
    assert all(len(i) == 10 for i in uneven) and set(torch.cat(uneven).tolist()) == set(range(48))


@pytest.mark.parametrize("size", [112, 64])  # 112: every crop enlarged (grid_sample); 64: some shrink
def test_crop_and_flip_match_pil_within_one_grey_level(cache, size):
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    from transfer_lib.data.fast import resized_crops

    g = torch.Generator().manual_seed(3)
    x, _ = cache.batch(torch.arange(32))
    crops = sample_crops(32, 100, 100, generator=g)
    flips = torch.rand(32, generator=g) < 0.5
    ref = []
    for b in range(32):
        im = TF.resized_crop(Image.fromarray(x[b].permute(1, 2, 0).numpy()), *crops[b].tolist(),
                             [size, size], antialias=True)
        im = TF.horizontal_flip(im) if flips[b] else im
        ref.append(torch.from_numpy(np.array(im)).permute(2, 0, 1).float())
    ours = resized_crops(x, crops, flips, size).round()
    assert ours.shape == (32, 3, size, size)
    assert (ours - torch.stack(ref)).abs().max() <= 1.0


def test_a_failed_cache_build_leaves_no_half_written_file(tmp_path):
    from transfer_lib.utils.errors import DataError

    root = write_rafdb(tmp_path / "r", n_train=5, n_test=2)
    (root / "basic" / "Image" / "aligned" / "train_00004_aligned.jpg").write_bytes(b"not a jpeg")
    ds = build_dataset("rafdb", root, "train")
    cache_dir = tmp_path / "cache"
    with pytest.raises(DataError, match="train_00004_aligned.jpg"):
        build_cache(ds, cache_dir, workers=1)
    assert list(cache_dir.iterdir()) == []


def test_leftovers_of_a_killed_build_are_removed_on_the_next_start(tmp_path):
    import subprocess
    import sys

    root = write_rafdb(tmp_path / "r", n_train=3, n_test=2)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    left = cache_dir / f"rafdb-train-0123456789abcdef.npy.tmp{dead}-140.npy"
    left.write_bytes(b"\0" * 1000)
    running = cache_dir / f"rafdb-test-0123456789abcdef.npy.tmp{os.getpid()}-7.npy"
    running.write_bytes(b"\0" * 10)  # a build of a process still running is left alone
    atomic = cache_dir / f".rafdb-train-0123456789abcdef.npy.{dead}.0123abcd.tmp"  # today's name
    atomic.write_bytes(b"\0" * 1000)
    alive = cache_dir / f".rafdb-test-0123456789abcdef.npy.{os.getpid()}.0123abcd.tmp"
    alive.write_bytes(b"\0" * 10)
    build_cache(build_dataset("rafdb", root, "train"), cache_dir, workers=1)
    assert not left.exists() and running.exists()
    assert not atomic.exists() and alive.exists()
    assert len([p for p in cache_dir.iterdir() if p.name.startswith("rafdb-train-")]) == 3
