"""Face detection and RAF-DB-style alignment on a real photo, a drawn face and an empty image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage  # noqa: F401,E402  (the predict extra; installed by make setup)
from PIL import Image
from skimage import data  # noqa: E402

from transfer_lib.data import faces  # noqa: E402


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()  # 512 x 512, one face (Eileen Collins), top centre


def _box_in_crop(size: int = 100) -> tuple[int, int, int, int]:
    """Where a detector box sits in an aligned crop: BOX_EYES mapped onto TEMPLATE_EYES."""
    (bl, by), (br, _) = faces.BOX_EYES
    (tl, ty), (tr, _) = faces.TEMPLATE_EYES
    side = (tr - tl) / (br - bl) * size
    return round(tl * size - bl * side), round(ty * size - by * side), round(side), round(side)


def _eyes_in_crop(crop):
    return faces.locate_eyes(faces._grey(crop), _box_in_crop(crop.shape[0]))


def _eye_row_tilt(eyes) -> float:
    (lx, ly), (rx, ry) = eyes
    return math.degrees(math.atan2(ry - ly, rx - lx))


def test_detects_the_one_face_with_its_eyes(astronaut):
    found = faces.detect_faces(astronaut)
    assert len(found) == 1
    x, y, w, h = found[0].box
    assert 150 <= x <= 200 and 40 <= y <= 90 and 80 <= w <= 130  # her face, not the patch or flag
    assert found[0].eyes is not None
    (lx, ly), (rx, ry) = found[0].eyes
    assert 190 < lx < 215 and 235 < rx < 260 and 90 < ly < 115 and 90 < ry < 115


def test_alignment_is_100_square_eyes_level_upper_half(astronaut):
    face = faces.detect_faces(astronaut)[0]
    crop = faces.align_face(astronaut, face)
    assert crop.shape == (100, 100, 3) and crop.dtype == np.uint8
    # the matrix puts the detected eyes exactly on the template: level, in the upper half
    m = faces.alignment_matrix(face.eyes, 100)
    (lx, ly), (rx, ry) = [m @ np.array([ex, ey, 1.0]) for ex, ey in face.eyes]
    assert abs(ly - ry) < 1e-6 and ly < 50 and 25 < rx - lx < 45
    # and the crop really shows eyes there: dark blobs found again, level, upper half
    eyes_again = _eyes_in_crop(crop)
    assert eyes_again is not None
    assert abs(_eye_row_tilt(eyes_again)) < 8 and max(eyes_again[0][1], eyes_again[1][1]) < 50


def test_rotated_photo_is_levelled(astronaut):
    rotated = np.asarray(Image.fromarray(astronaut).rotate(12, resample=Image.BILINEAR))
    found = faces.detect_faces(rotated)
    assert found and found[0].eyes is not None
    assert 6 < abs(_eye_row_tilt(found[0].eyes)) < 18
    eyes_again = _eyes_in_crop(faces.align_face(rotated, found[0]))
    assert eyes_again is not None and abs(_eye_row_tilt(eyes_again)) < 8


def test_box_fallback_when_eyes_are_missing(astronaut):
    face = faces.detect_faces(astronaut)[0]
    no_eyes = faces.Face(face.box, None)
    assert no_eyes.aligned_by.startswith("detector box")
    crop = faces.align_face(astronaut, no_eyes)
    assert crop.shape == (100, 100, 3)
    # the box's typical eye positions land close to where the real eyes were put
    m = faces.alignment_matrix(faces.eye_positions(no_eyes), 100)
    real = [m @ np.array([ex, ey, 1.0]) for ex, ey in face.eyes]
    for (ex, ey), (tx, ty) in zip(real, faces.TEMPLATE_EYES):
        assert abs(ex - 100 * tx) < 8 and abs(ey - 100 * ty) < 8


def test_large_photo_is_searched_downscaled(astronaut):
    big = np.asarray(Image.fromarray(astronaut).resize((1400, 1400)))
    found = faces.detect_faces(big)
    assert len(found) == 1 and 400 < found[0].box[0] < 560
    assert faces.align_face(big, found[0]).shape == (100, 100, 3)


def test_no_face_in_plain_or_noise_images():
    assert faces.detect_faces(np.full((200, 300, 3), 128, np.uint8)) == []
    assert faces.detect_faces(np.full((10, 10), 128, np.uint8)) == []  # too small to search


def test_synthetic_faces_are_not_detected_and_need_no_detect():
    """The LBP cascade is trained on photos; the drawn synthetic faces are mostly missed, which
    is why ``predict --no-detect`` exists. Pin that honestly: if this starts failing, great."""
    from transfer_lib.data import synth

    found = [len(faces.detect_faces(synth.render_face(label, seed=label))) for label in range(7)]
    assert sum(found) <= 2


# --- images as users have them: orientation, bit depth, palette, transparency, CMYK -----------

def _portrait(astronaut) -> np.ndarray:
    """A taller-than-wide crop of the photo (384 x 512), so that a turn shows in the shape."""
    return np.ascontiguousarray(astronaut[:, 64:448])


def _save_with_orientation(pixels: np.ndarray, path, orientation: int, **kw) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation  # the EXIF Orientation tag
    Image.fromarray(pixels).save(path, exif=exif, **kw)


@pytest.mark.parametrize("orientation, turns", [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation_is_applied(orientation, turns, tmp_path):
    """EXIF: 6 = shown turned 90 degrees clockwise (every phone portrait), 8 = anticlockwise,
    3 = upside down. Written with numpy's turns, not Pillow's table, and lossless (PNG)."""
    shown = np.random.default_rng(orientation).integers(0, 256, (6, 4, 3), dtype=np.uint8)
    stored = np.rot90(shown, k=-turns)
    _save_with_orientation(np.ascontiguousarray(stored), tmp_path / "o.png", orientation)
    np.testing.assert_array_equal(faces.load_image(tmp_path / "o.png"), shown)


def test_phone_portrait_jpeg_finds_the_face_where_the_upright_photo_has_it(astronaut, tmp_path):
    upright = _portrait(astronaut)
    Image.fromarray(upright).save(tmp_path / "upright.jpg", quality=95)
    sideways = np.ascontiguousarray(np.rot90(upright, k=1))  # stored on its side, as phones do
    _save_with_orientation(sideways, tmp_path / "phone.jpg", 6, quality=95)
    with Image.open(tmp_path / "phone.jpg") as im:
        stored = np.asarray(im.convert("RGB"))
    assert stored.shape == (384, 512, 3)  # as stored: on its side
    loaded = faces.load_image(tmp_path / "phone.jpg")
    np.testing.assert_array_equal(loaded, np.rot90(stored, k=-1))  # turned, pixels untouched
    reference = faces.detect_faces(faces.load_image(tmp_path / "upright.jpg"))
    found = faces.detect_faces(loaded)
    # JPEG coded the turned photo in other 8 x 8 blocks (pixels differ by ~1 level on average),
    # so the boxes may differ by a cascade step; the face is the same one, eyes level
    assert len(found) == len(reference) == 1 and found[0].eyes is not None
    assert all(abs(a - b) <= 6 for a, b in zip(found[0].box, reference[0].box))
    assert abs(_eye_row_tilt(found[0].eyes)) < 8


def test_16_bit_greyscale_is_scaled_not_clipped(astronaut, tmp_path):
    grey = np.asarray(Image.fromarray(astronaut).convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")  # v * 257: 16-bit
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode == "I;16"
        clipped = np.asarray(im.convert("RGB"))  # Pillow's own conversion clips at 255
    assert (clipped == 255).mean() > 0.8 and faces.detect_faces(clipped) == []
    loaded = faces.load_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(loaded, np.repeat(grey[..., None], 3, axis=-1))
    found = faces.detect_faces(loaded)
    assert len(found) == 1 and found[0].eyes is not None
    ramp = np.array([[0, 128, 257, 32767, 65534, 65535]], np.uint16)  # rounds to the nearest
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    assert faces.load_image(tmp_path / "ramp.png")[0, :, 0].tolist() == [0, 0, 1, 127, 255, 255]
    Image.fromarray(ramp.astype(">u2")).save(tmp_path / "ramp.tif")  # big-endian, mode I;16B
    assert faces.load_image(tmp_path / "ramp.tif")[0, :, 0].tolist() == [0, 0, 1, 127, 255, 255]
    Image.fromarray(ramp.astype(np.int32)).save(tmp_path / "ramp32.tif")  # mode I
    assert faces.load_image(tmp_path / "ramp32.tif")[0, :, 0].tolist() == [0, 0, 1, 127, 255, 255]
    assert faces.as_rgb(ramp)[0, :, 0].tolist() == [0, 0, 1, 127, 255, 255]


def test_palette_greyscale_bilevel_and_cmyk_become_the_same_rgb(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    palette = Image.fromarray(rgb).quantize(64)
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(faces.load_image(tmp_path / "p.png"),
                                  np.asarray(palette.convert("RGB")))
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tif")  # lossless: exactly back
    np.testing.assert_array_equal(faces.load_image(tmp_path / "cmyk.tif"), rgb)
    smooth = np.asarray(Image.fromarray(rgb).resize((160, 120), Image.BILINEAR))
    Image.fromarray(smooth).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    back = faces.load_image(tmp_path / "cmyk.jpg").astype(int)
    assert np.abs(back - smooth).mean() < 3  # JPEG's loss only: the inks are not inverted
    grey = rgb[..., 0]
    Image.fromarray(grey).save(tmp_path / "l.png")
    np.testing.assert_array_equal(faces.load_image(tmp_path / "l.png"),
                                  np.repeat(grey[..., None], 3, axis=-1))
    Image.fromarray(grey > 127).save(tmp_path / "bw.png")  # mode 1
    assert set(np.unique(faces.load_image(tmp_path / "bw.png"))) == {0, 255}


def test_transparent_pixels_are_laid_over_white(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    alpha = np.full((20, 30), 255, np.uint8)
    alpha[:5] = 0  # a transparent band
    alpha[5:10] = 128  # and a half-transparent one
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")
    loaded = faces.load_image(tmp_path / "rgba.png").astype(int)
    np.testing.assert_array_equal(loaded[10:], rgb[10:])  # opaque: unchanged
    assert (loaded[:5] == 255).all()
    expected = (rgb[5:10].astype(int) * 128 + 255 * 127 + 127) // 255
    np.testing.assert_array_equal(loaded[5:10], expected)
    Image.fromarray(np.dstack([rgb[..., 1], alpha])).save(tmp_path / "la.png")  # grey + alpha
    la = faces.load_image(tmp_path / "la.png").astype(int)
    np.testing.assert_array_equal(la[10:, :, 0], rgb[10:, :, 1])
    assert (la[:5] == 255).all()
    palette = Image.fromarray(rgb).quantize(16)  # palette with one transparent entry
    index = np.asarray(palette)[0, 0]
    palette.save(tmp_path / "pt.png", transparency=int(index))
    p = faces.load_image(tmp_path / "pt.png")
    shown = np.asarray(palette.convert("RGB"))
    hidden = np.asarray(palette) == index
    assert (p[hidden] == 255).all() and (p[~hidden] == shown[~hidden]).all()


def test_unreadable_and_too_small_images_are_refused_clearly(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(faces.ImageError, match="cannot read .*broken.png"):
        faces.load_image(tmp_path / "broken.png")
    with pytest.raises(faces.ImageError, match=r"dot.png is 1 x 1 pixels.*at least 24 pixels"):
        faces.check_image_size(np.zeros((1, 1, 3), np.uint8), "dot.png")
    with pytest.raises(faces.ImageError, match=r"is 40 x 23 pixels"):
        faces.check_image_size(np.zeros((23, 40, 3), np.uint8), "thin.png")
    faces.check_image_size(np.zeros((24, 24, 3), np.uint8), "ok.png")
    assert issubclass(faces.ImageError, faces.TransferError)
