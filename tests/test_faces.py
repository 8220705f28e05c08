"""Face detection and RAF-DB-style alignment on a real photo, a drawn face and an empty image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skimage  # noqa: F401,E402  (the predict extra; installed by make setup)
from PIL import Image
from skimage import data  # noqa: E402

from transfer_lib import faces  # noqa: E402


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
