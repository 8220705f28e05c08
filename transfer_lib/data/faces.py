"""Find faces in a photo and align them the way RAF-DB's aligned images are (chapter 8, the demo).

RAF-DB's ``basic/Image/aligned`` images are 100 x 100 crops, rotated so that the eyes are level
and scaled so that the face fills the square. ``align_face`` does the same from two eye
positions: a similarity transform (rotation, uniform scale, shift) puts the eyes at
``TEMPLATE_EYES``, the eye positions of the project's synthetic RAF-DB-style faces
(``transfer_lib.data.synth``: eyes 40 % down, a third of the side apart). We could not measure
RAF-DB's own template here; this one is an approximation of how its crops look.

Where the detector comes from. OpenCV 5.0 (``opencv-python-headless`` 5.0) no longer ships the
Haar cascades (``cv2.data.haarcascades`` is an empty folder) nor ``cv2.CascadeClassifier``; its
``FaceDetectorYN`` needs an ONNX model that is not installed. scikit-image ships OpenCV's LBP
frontal-face cascade (``skimage.data.lbp_frontal_face_cascade_filename()``) with its own
``skimage.feature.Cascade``, so that is the detector. There is no eye cascade anywhere, so the eyes
are located inside each face box as the strongest dark blobs (Laplacian of Gaussian) in the
left and right upper quarters, and accepted only if they are strong, level-ish and a plausible
distance apart; otherwise the face is aligned from the box alone and ``Face.eyes`` is None.

The LBP cascade fires on face-like textures too; in colour photos a candidate is kept only if
its centre is mostly skin-coloured (YCrCb rule), and overlapping candidates are merged.
Frontal, upright faces only; drawn or cartoon faces are often missed (use ``--no-detect`` with
images that are already aligned face crops).

Images as users have them: :func:`load_image` turns the file into the 8-bit RGB pixels the
detector and the model see. It applies the EXIF orientation first (a phone's portrait photo is
stored on its side with Orientation 6), scales 16-bit greyscale to 8 bits (v / 257, rounded:
65535 -> 255, and an 8-bit value stored as v * 257 comes back exactly), lays transparent
pixels (RGBA, LA, palette or single-colour transparency) over white, and converts palette,
CMYK, bilevel and greyscale images to RGB. Embedded colour profiles are not applied (CMYK is
converted with Pillow's plain formula). An image whose shorter side is below
:data:`MIN_IMAGE_SIDE` is refused by :func:`check_image_size`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from transfer_lib.utils.errors import TransferError

#: where ``align_face`` puts the eyes, as fractions of the output side: (x, y) left, right
TEMPLATE_EYES: tuple[tuple[float, float], tuple[float, float]] = ((0.33, 0.40), (0.67, 0.40))
#: where the eyes sit inside a box of the LBP cascade (measured on ``skimage.data.astronaut``),
#: used to align from the box alone when the eyes are not found
BOX_EYES: tuple[tuple[float, float], tuple[float, float]] = ((0.28, 0.34), (0.72, 0.34))
#: larger images are searched at this longest side (the cascade is slow on big photos)
MAX_SEARCH_SIDE = 640
#: the smallest face side the detector looks for, in pixels of the searched image
MIN_FACE_SIDE = 24
#: the shortest image side ``predict`` accepts, with or without detection: the smallest face the
#: detector looks for. Not the model's input side (112 for the paper's model): RAF-DB's own
#: aligned crops are 100 x 100 and FER2013/FERPlus faces 48 x 48, each resized to the input
MIN_IMAGE_SIDE = MIN_FACE_SIDE
#: what transparent pixels are laid over: white, as a page or viewer usually shows them
BACKGROUND: tuple[int, int, int] = (255, 255, 255)


@dataclass
class Face:
    """One detected face in image pixels.

    box: (x, y, width, height). eyes: ((x, y) of the eye on the image's left, (x, y) of the
    other) or None when they were not found. skin: share of skin-coloured pixels in the box's
    centre (1.0 for grey images, where it is not measured).
    """

    box: tuple[int, int, int, int]
    eyes: tuple[tuple[float, float], tuple[float, float]] | None = None
    skin: float = 1.0

    @property
    def aligned_by(self) -> str:
        return "eyes" if self.eyes is not None else "detector box (eyes not found)"

    def to_dict(self) -> dict:
        return {"box": list(self.box),
                "eyes": None if self.eyes is None else [list(map(float, e)) for e in self.eyes],
                "aligned_by": self.aligned_by}


@functools.lru_cache(maxsize=1)
def _cascade():
    from skimage import data, feature

    return feature.Cascade(data.lbp_frontal_face_cascade_filename())


class ImageError(TransferError):
    """An image that cannot be used: unreadable, of an unsupported kind, or too small."""


def as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 3) or (H, W, 4) -> (H, W, 3) uint8; uint16 is scaled to 8 bits (v / 257),
    floats up to 1.0 by 255, other values clipped to 0..255. An alpha channel is dropped."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    image = image[..., :3]
    if image.dtype == np.uint16:
        image = _sixteen_to_eight(image)
    elif image.dtype != np.uint8:
        scale = 255.0 if image.dtype.kind == "f" and image.max() <= 1.0 else 1.0
        image = np.clip(image * scale, 0, 255).astype(np.uint8)
    return image


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 by v / 257, rounded: full scale to full scale, v * 257 back to v."""
    return np.clip(np.rint(values.astype(np.float64) / 257), 0, 255).astype(np.uint8)


def image_to_rgb(im: Image.Image, name: str = "the image") -> np.ndarray:
    """A PIL image as the (H, W, 3) uint8 RGB pixels it shows: EXIF orientation applied, 16-bit
    and 32-bit greyscale scaled (not clipped) to 8 bits, transparency laid over
    :data:`BACKGROUND`, palette, CMYK, bilevel and greyscale converted. Raises
    :class:`ImageError` for a mode Pillow cannot convert to RGB."""
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a malformed EXIF block: the pixels as stored
        pass
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(im).astype(np.float64)
        top = float(values.max()) if values.size else 0.0
        if mode.startswith("I;16") or (mode == "I" and 255 < top <= 65535):
            grey = _sixteen_to_eight(values)  # 16-bit samples (32-bit mode I holding them too)
        else:  # floats in 0..1 scaled by 255; values in 0..255 as they are; larger ones by max
            scale = 255.0 if mode == "F" and top <= 1.0 else (255.0 / top if top > 255 else 1.0)
            grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    try:
        if "A" in mode or "a" in mode or "transparency" in im.info:
            rgba = np.asarray(im.convert("RGBA")).astype(np.uint32)
            alpha = rgba[..., 3:]
            background = np.asarray(BACKGROUND, np.uint32)
            mixed = (rgba[..., :3] * alpha + background * (255 - alpha) + 127) // 255
            return mixed.astype(np.uint8)
        return np.asarray(im.convert("RGB"))
    except ValueError as err:  # e.g. "conversion from LAB to RGB not supported"
        raise ImageError(f"cannot use {name}: its pixels are of mode {mode}, which cannot be "
                         f"converted to RGB here ({err}); save it as an RGB PNG or JPEG") from None


def load_image(path) -> np.ndarray:
    """The (H, W, 3) uint8 RGB pixels of an image file, as :func:`image_to_rgb` reads them (the
    first frame of an animation or multi-page file). Raises :class:`ImageError` when the file
    cannot be read as an image."""
    import warnings

    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # a photo of 90 to 179 megapixels is read (PIL's "could be decompression bomb DOS
            # attack" warning, with its source line, was printed to the user); a larger one is
            # refused below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return image_to_rgb(im, str(path))
    except Image.DecompressionBombError as err:
        raise ImageError(f"cannot read {path}: {err} Scale it down (a face needs a few hundred "
                         f"pixels) and try again") from None
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise ImageError(f"cannot read {path}: {err}") from None


def check_image_size(rgb: np.ndarray, name: str, minimum: int = MIN_IMAGE_SIDE) -> None:
    """Raise :class:`ImageError` when the image's shorter side is below ``minimum`` pixels."""
    h, w = rgb.shape[:2]
    if min(h, w) < minimum:
        raise ImageError(f"{name} is {w} x {h} pixels, too small to hold a face: the shorter side "
                         f"must be at least {minimum} pixels (the smallest face the detector "
                         f"looks for; each face is then resized to the model's input)")


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _skin_share(rgb: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Share of pixels in the central half of the box inside a YCrCb skin range."""
    x, y, w, h = box
    patch = rgb[y + h // 4: y + 3 * h // 4, x + w // 4: x + 3 * w // 4].astype(np.float32)
    if patch.size == 0:
        return 0.0
    r, g, b = patch[..., 0], patch[..., 1], patch[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    cr = (r - luma) * 0.713 + 128
    cb = (b - luma) * 0.564 + 128
    return float(((cr > 133) & (cr < 173) & (cb > 77) & (cb < 127)).mean())


def locate_eyes(grey: np.ndarray, box: tuple[int, int, int, int], min_strength: float = 0.5,
                ) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The two eyes inside a face box as the strongest dark blobs of its upper quarters.

    Returns ((x, y), (x, y)) in image pixels, left one first, or None when a blob is weak
    (response below ``min_strength``), the pair tilts more than 25 degrees, or their distance
    is outside 30-65 % of the box width.
    """
    from scipy import ndimage

    x, y, w, h = box
    crop = grey[y: y + h, x: x + w].astype(np.float32)
    if min(crop.shape) < 16:
        return None
    crop = (crop - crop.mean()) / (crop.std() + 1e-6)
    sigma = w / 22  # about the size of an iris and lids at this box scale
    response = ndimage.gaussian_laplace(crop, sigma) * sigma**2  # dark blob -> positive peak
    y0, y1 = int(0.2 * h), int(0.5 * h)
    eyes = []
    for fx0, fx1 in ((0.12, 0.48), (0.52, 0.88)):
        x0, x1 = int(fx0 * w), int(fx1 * w)
        window = response[y0:y1, x0:x1]
        iy, ix = np.unravel_index(np.argmax(window), window.shape)
        if window[iy, ix] < min_strength:
            return None
        eyes.append((x + x0 + ix + 0.5, y + y0 + iy + 0.5))
    (lx, ly), (rx, ry) = eyes
    distance = math.hypot(rx - lx, ry - ly)
    if not 0.30 * w <= distance <= 0.65 * w or abs(math.degrees(math.atan2(ry - ly, rx - lx))) > 25:
        return None
    return eyes[0], eyes[1]


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box's area."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return iw * ih / min(a[2] * a[3], b[2] * b[3])


def detect_faces(rgb: np.ndarray, min_neighbors: int = 4, min_skin: float = 0.25,
                 min_size: int | None = None) -> list[Face]:
    """Frontal faces in an RGB image (H, W, 3), largest first, each with its eyes if found.

    ``min_neighbors``: how many overlapping cascade hits make a detection (higher: fewer false
    faces, more missed ones). ``min_skin``: in colour images, the share of skin-coloured pixels
    a box's centre needs. ``min_size``: smallest face side in pixels (default: a twelfth of the
    image's shorter side, at least ``MIN_FACE_SIDE``, 24).
    """
    rgb = as_rgb(rgb)
    h, w = rgb.shape[:2]
    scale = min(1.0, MAX_SEARCH_SIDE / max(h, w))
    small = rgb if scale == 1.0 else np.asarray(
        Image.fromarray(rgb).resize((round(w * scale), round(h * scale)), Image.BILINEAR))
    sh, sw = small.shape[:2]
    floor = MIN_FACE_SIDE
    side = (max(floor, round(min(sh, sw) / 12)) if min_size is None
            else max(floor, round(min_size * scale)))
    if min(sh, sw) < side:
        return []
    hits = _cascade().detect_multi_scale(
        img=small, scale_factor=1.2, step_ratio=1, min_size=(side, side),
        max_size=(min(sh, sw), min(sh, sw)), min_neighbor_number=min_neighbors)
    grey = _grey(small)
    is_colour = bool(np.abs(small.astype(np.int16) - small[..., :1]).max() > 8)
    candidates = []
    for hit in hits:
        box = (int(hit["c"]), int(hit["r"]), int(hit["width"]), int(hit["height"]))
        skin = _skin_share(small, box) if is_colour else 1.0
        if skin < min_skin:
            continue
        candidates.append(Face(box, locate_eyes(grey, box), skin))
    # merge overlapping hits: prefer boxes whose eyes were found, then skin, then size
    candidates.sort(key=lambda f: (f.eyes is not None, round(f.skin, 1), f.box[2]), reverse=True)
    kept: list[Face] = []
    for face in candidates:
        if all(_overlap(face.box, k.box) < 0.3 for k in kept):
            kept.append(face)
    faces = [_rescale(f, 1 / scale) for f in kept]
    return sorted(faces, key=lambda f: f.box[2], reverse=True)


def _rescale(face: Face, s: float) -> Face:
    if s == 1.0:
        return face
    box = tuple(int(round(v * s)) for v in face.box)
    eyes = None if face.eyes is None else tuple((ex * s, ey * s) for ex, ey in face.eyes)
    return Face(box, eyes, face.skin)


def eye_positions(face: Face) -> tuple[tuple[float, float], tuple[float, float]]:
    """The face's eyes, or where the eyes usually sit in a detector box (``BOX_EYES``)."""
    if face.eyes is not None:
        return face.eyes
    x, y, w, h = face.box
    return tuple((x + fx * w, y + fy * h) for fx, fy in BOX_EYES)


def alignment_matrix(eyes, size: int = 100) -> np.ndarray:
    """2 x 3 similarity transform taking the two eyes to ``TEMPLATE_EYES`` in a size x size crop."""
    (lx, ly), (rx, ry) = eyes
    (tlx, tly), (trx, try_) = [(fx * size, fy * size) for fx, fy in TEMPLATE_EYES]
    angle = math.atan2(ry - ly, rx - lx) - math.atan2(try_ - tly, trx - tlx)
    scale = math.hypot(trx - tlx, try_ - tly) / max(math.hypot(rx - lx, ry - ly), 1e-6)
    c, s = scale * math.cos(-angle), scale * math.sin(-angle)
    rotation = np.array([[c, -s], [s, c]])
    shift = np.array([tlx, tly]) - rotation @ np.array([lx, ly])
    return np.hstack([rotation, shift[:, None]])


def align_face(rgb: np.ndarray, face: Face, size: int = 100) -> np.ndarray:
    """A (size, size, 3) uint8 crop with the eyes level at ``TEMPLATE_EYES``, RAF-DB style.

    Uses the face's eyes, or the detector box when they were not found. Pixels outside the
    photo repeat its border.
    """
    from skimage import transform

    rgb = as_rgb(rgb)
    eyes = eye_positions(face)
    matrix = alignment_matrix(eyes, size)
    zoom = math.hypot(*matrix[:, 0])
    image, eyes_in = rgb, eyes
    if zoom < 0.5:  # shrink first with an antialiasing filter, the warp then samples cleanly
        f = 2 * zoom
        h, w = rgb.shape[:2]
        image = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * f)), max(1, round(h * f))),
                                                       Image.LANCZOS))
        eyes_in = tuple((ex * image.shape[1] / w, ey * image.shape[0] / h) for ex, ey in eyes)
        matrix = alignment_matrix(eyes_in, size)
    forward = transform.AffineTransform(matrix=np.vstack([matrix, [0, 0, 1]]))
    out = transform.warp(image, forward.inverse, output_shape=(size, size), order=1, mode="edge",
                         preserve_range=True)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
