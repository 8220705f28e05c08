"""PaddleClas's RandAugment and the authors' RandomErasing, per image and batched.

Each op is checked against the formula of ``ppcls/data/preprocess/ops/randaugment.py`` (and
PIL's arithmetic, which that file calls), and the batched ops against the per-image ones.
"""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from transfer_lib.data import transforms as T
from transfer_lib.data.fast import BatchAugment, erase_mask, paddle_op_batch
from transfer_lib.data.synth import render_face
from transfer_lib.models.config import TransFERConfig

S = 112
LEVELS = T.paddle_levels(5)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """Four synthetic faces and two noise images at 112 x 112, uint8 (6, 112, 112, 3)."""
    rng = np.random.default_rng(0)
    imgs = [render_face(label, seed=i) for i, label in enumerate(["Fear", "Happiness", "Anger", "Neutral"])]
    imgs += [rng.integers(0, 256, (100, 100, 3), dtype=np.uint8) for _ in range(2)]
    return np.stack([np.asarray(Image.fromarray(a).resize((S, S), Image.BILINEAR)) for a in imgs])


def _pil(a: np.ndarray, name: str, sign: int) -> np.ndarray:
    return np.asarray(T.paddle_op(Image.fromarray(a), name, LEVELS[name], sign)).astype(np.int64)


def _batch(a: np.ndarray, name: str, sign: int) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float()
    out = paddle_op_batch(x, name, LEVELS[name], torch.full((len(a),), float(sign)))
    return out.permute(0, 2, 3, 1).numpy().astype(np.int64)


def test_magnitude_5_of_10_gives_the_spec_levels():
    assert LEVELS["shearX"] == LEVELS["shearY"] == pytest.approx(0.15)
    assert LEVELS["translateX"] == pytest.approx(150 / 331 * 0.5)
    assert math.floor(0.5 + LEVELS["translateX"] * S) == 25  # pixels at 112 (PIL's nearest)
    assert LEVELS["rotate"] == 15
    for name in ("color", "contrast", "sharpness", "brightness"):
        assert LEVELS[name] == pytest.approx(0.45)  # factor 1 +- 0.45
    assert LEVELS["posterize"] == 2 and LEVELS["solarize"] == 128
    assert T.PADDLE_OPS == tuple(LEVELS) and len(T.PADDLE_OPS) == 14
    assert not any("identity" in n.lower() for n in T.PADDLE_OPS)  # every draw changes something


def test_shear_direction_magnitude_and_grey_fill():
    """shearX: output (x, y) reads input x + 0.15 (y + 0.5) (+0.5 offsets): a grey wedge on the
    right growing downwards for +, on the left for -."""
    white = np.full((1, S, S, 3), 200, np.uint8)
    for sign in (1, -1):
        for out in (_pil(white[0], "shearX", sign), _batch(white, "shearX", sign)[0]):
            for y in (0, 50, S - 1):
                xin = np.arange(S) + 0.5 + sign * 0.15 * (y + 0.5)
                outside = (xin < 0) | (xin >= S)
                assert (out[y, outside] == 128).all() and (out[y, ~outside] == 200).all(), (sign, y)
            assert (out == 128).any()
        transposed = _pil(white[0], "shearY", sign)
        assert (transposed == _pil(white[0].transpose(1, 0, 2).copy(), "shearX", sign).transpose(1, 0, 2)).all()


def test_translate_moves_25_pixels_with_grey_fill(faces):
    a = faces[0]
    for sign in (1, -1):
        for out in (_pil(a, "translateX", sign), _batch(faces[:1], "translateX", sign)[0]):
            if sign == 1:  # output x reads input x + 25
                assert (out[:, : S - 25] == a[:, 25:]).all() and (out[:, S - 25:] == 128).all()
            else:
                assert (out[:, 25:] == a[:, : S - 25]).all() and (out[:, :25] == 128).all()
        out = _pil(a, "translateY", sign)
        rows = (slice(0, S - 25), slice(25, S)) if sign == 1 else (slice(25, S), slice(0, S - 25))
        assert (out[rows[0]] == a[rows[1]]).all()


def test_rotation_is_always_plus_15_degrees_with_grey_fill(faces):
    """Counter-clockwise by 15 degrees about the centre (nearest), whatever the sign: the
    per-image op equals the authors' RGBA rotate + composite on grey and a nearest rotation
    written out; the batched one agrees but for points on a pixel edge."""
    a = faces[1]
    plus, minus = _pil(a, "rotate", 1), _pil(a, "rotate", -1)
    assert (plus == minus).all()
    img = Image.fromarray(a)  # ppcls's rotate_with_fill
    rot = img.convert("RGBA").rotate(15)
    authors = Image.composite(rot, Image.new("RGBA", rot.size, (128,) * 4), rot).convert(img.mode)
    assert (np.asarray(authors) == plus).all()
    th = math.radians(15)
    yy, xx = np.mgrid[0:S, 0:S] + 0.5
    dx, dy = xx - S / 2, yy - S / 2
    xin = math.cos(th) * dx - math.sin(th) * dy + S / 2  # inverse map of a ccw turn (y down)
    yin = math.sin(th) * dx + math.cos(th) * dy + S / 2
    inside = (xin >= 0) & (xin < S) & (yin >= 0) & (yin < S)
    ref = np.full_like(plus, 128)
    ref[inside] = a[np.floor(yin[inside]).astype(int), np.floor(xin[inside]).astype(int)]
    assert (ref == plus).all(axis=-1).mean() > 0.999
    assert (plus[0, 0] == 128).all() and (plus[S - 1, S - 1] == 128).all()
    batched = _batch(faces[1:2], "rotate", -1)[0]
    assert (batched == plus).all(axis=-1).mean() > 0.999


def test_photometric_ops_follow_their_formulas(faces):
    a = faces[2]
    ai = a.astype(np.int64)
    flat = np.full((S, S, 3), 100, np.uint8)
    assert (_pil(flat, "brightness", 1) == 145).all() and (_pil(flat, "brightness", -1) == 55).all()
    assert (_pil(flat, "sharpness", 1) == 100).all() and (_pil(flat, "color", -1) == 100).all()
    assert (_pil(a, "posterize", 1) == (ai & 0b11000000)).all()  # 2 bits kept
    assert (_pil(a, "solarize", 1) == np.where(ai < 128, ai, 255 - ai)).all()
    assert (_pil(a, "invert", 1) == 255 - ai).all()
    lo, hi = ai.min((0, 1)), ai.max((0, 1))  # autocontrast: each channel stretched, truncated
    assert (_pil(a, "autocontrast", 1) == np.clip(((ai - lo) * 255.0 / (hi - lo)).astype(int), 0, 255)).sum() \
        > 0.999 * ai.size
    luma = (ai[..., 0] * 19595 + ai[..., 1] * 38470 + ai[..., 2] * 7471 + 0x8000) >> 16
    mean = int(luma.mean() + 0.5)  # contrast: blend with the mean grey, factor 1.45 or 0.55
    for sign, f in ((1, 1.45), (-1, 0.55)):
        ref = np.clip(np.floor(mean + np.float32(f) * (ai - mean).astype(np.float32)), 0, 255)
        assert (_pil(a, "contrast", sign) == ref).all()
    eq = _pil(a, "equalize", 1)
    for c in range(3):  # PIL's rule: lut[i] = (step // 2 + count below i) // step
        h = np.bincount(ai[..., c].ravel(), minlength=256)
        step = (h.sum() - h[np.nonzero(h)[0][-1]]) // 255
        lut = (step // 2 + np.concatenate([[0], np.cumsum(h)[:-1]])) // step
        assert (eq[..., c] == np.minimum(lut, 255)[ai[..., c]]).all()


@pytest.mark.parametrize("name", T.PADDLE_OPS)
def test_batched_ops_equal_the_per_image_ops(faces, name):
    for sign in (1, -1):
        ref = np.stack([_pil(a, name, sign) for a in faces])
        ours = _batch(faces, name, sign)
        same = (ours == ref).all(axis=-1).mean()
        if name == "rotate":  # PIL's fixed-point rotation: a point on a pixel edge may go either way
            assert same > 0.999, same
        else:
            assert same == 1.0, (name, sign, same)


def test_ops_are_drawn_uniformly_with_random_signs(monkeypatch):
    drawn = []
    monkeypatch.setattr(T, "paddle_op", lambda img, name, level, sign=1: drawn.append((name, sign)) or img)
    ra = T.PaddleRandAugment()
    img = Image.new("RGB", (8, 8))
    torch.manual_seed(0)
    for _ in range(700):
        ra(img)
    names = [n for n, _ in drawn]
    assert len(names) == 1400  # two ops a call
    counts = np.array([names.count(n) for n in T.PADDLE_OPS])
    assert counts.min() > 60 and counts.max() < 140  # 100 expected each
    assert 0.45 < np.mean([s == 1 for _, s in drawn]) < 0.55
    aug = BatchAugment(TransFERConfig(input_size=32), train=True)
    aug(torch.zeros(64, 3, 32, 32, dtype=torch.uint8), generator=torch.Generator().manual_seed(0))
    ops = aug.last_params["ops"]
    assert ops.shape == (2, 64) and set(ops.unique().tolist()) <= set(range(14)) and ops.unique().numel() > 10


def test_erasing_as_the_authors_ran_it_touches_the_top_row_only():
    config = TransFERConfig(input_size=S)
    torch.manual_seed(0)
    authors = T.AuthorsRandomErasing("hwc")
    touched = []
    for _ in range(200):
        x = torch.ones(3, S, S)
        authors(x)
        hit = x == 0
        assert not hit[:, 1:].any()  # rows below the first are never written
        touched.append(hit.float().mean().item())
    assert 0 < np.mean(touched) < 0.001  # a few values of one row: in effect off
    x = torch.ones(3, S, S)
    for _ in range(20):
        T.AuthorsRandomErasing("chw")(x)
    assert (x == 0).all(0).any(1).sum() > 10  # as the config reads: rectangles in every channel
    # the batched masks write what the per-image code writes, for the same boxes
    for erasing, shape in (("authors", (S, S, 3)), ("config", (3, S, S))):
        boxes = T.sample_authors_erasing(50, shape, generator=torch.Generator().manual_seed(1))
        mask = erase_mask(boxes, S, erasing)
        for i in range(50):
            x = torch.ones(3, S, S)
            T.erase_authors(x.permute(1, 2, 0) if erasing == "authors" else x, boxes[i])
            assert torch.equal(x == 0, mask[i]), (erasing, i)
    # in the batched pipeline (whole grey levels never normalise to exactly 0): "authors"
    # writes zeros into row 0 only, "off" nowhere
    images = torch.full((16, 3, 100, 100), 90, dtype=torch.uint8)
    for erasing in ("authors", "off"):
        aug = BatchAugment(config, train=True, erasing=erasing)
        out = aug(images, generator=torch.Generator().manual_seed(0))
        assert out.shape == (16, 3, S, S) and (aug.last_params["erase"][:, 2] > 0).any()
        assert not (out[:, :, 1:] == 0).any()
        assert (out[:, :, 0] == 0).any() == (erasing == "authors")


def test_train_transform_switches():
    config = TransFERConfig(input_size=64)
    steps = lambda tf: [type(t).__name__ for t in tf.transforms]  # noqa: E731
    assert steps(T.train_transform(config))[2] == "PaddleRandAugment"
    assert steps(T.train_transform(config))[-1] == "AuthorsRandomErasing"
    assert T.train_transform(config).transforms[-1].layout == "hwc"
    assert T.train_transform(config, erasing="config").transforms[-1].layout == "chw"
    assert "AuthorsRandomErasing" not in steps(T.train_transform(config, erasing="off"))
    assert isinstance(T.train_transform(config, "torchvision").transforms[2], v2.RandAugment)
    with pytest.raises(ValueError, match="randaugment='timm'"):
        T.train_transform(config, "timm")
    with pytest.raises(ValueError, match="erasing='sometimes'"):
        BatchAugment(config, erasing="sometimes")
    out = T.train_transform(config)(Image.fromarray(render_face("Fear", seed=0)))
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32
