"""A synthetic facial-expression data set in RAF-DB's exact layout.

Built in chapter 2 (``book/02_data.ipynb``); the occlusion chapter renders the same faces with
one part hidden (:func:`render_face` with ``occlude_part=``).

Why it is not a toy. TransFER's argument is that an expression is a *relation between local
parts*, that several expressions share parts, and that a model must not lean on one part because
any part can be hidden. The generator is built to make that true here:

* every expression is a combination of local cues on five parts (brows, eyes, mouth, nose,
  cheeks), see :data:`EXPRESSION_CUES`. Classes share parts on purpose:

  - Surprise and Fear both raise the brows, widen the eyes and open the mouth; they differ by the
    brows' *shape* (arched vs. straight and pulled up at the inner end) and the mouth's shape
    (round vs. stretched sideways);
  - Anger and Disgust both lower the brows and narrow the eyes; they differ at the nose (wrinkle)
    and the mouth (raised upper lip vs. pressed lips);
  - Sadness shares Fear's inner-raised brows but has drooping lids and a closed, down-turned mouth;
  - Happiness is mouth + raised cheeks + narrowed eyes; Neutral is everything at rest;

* each cue has a random intensity (``0.5 .. 1``, :data:`INTENSITY_RANGE`) plus per-sample
  jitter, so some samples are subtle and close to Neutral;
* nuisance: identity (face shape, skin tone, hair style and colour, brow thickness, resting
  mouth), pose (rotation, scale, shift, a little yaw), background, lighting gradient, contrast,
  noise, blur and JPEG compression;
* partial occlusion (sunglasses, hat brim, surgical mask, hand, random patch) on a share of the
  images (``occlusion=0.3`` by default), so no single part is always visible.

Images are 100 x 100 RGB JPEG, labels 1..7 in RAF-DB's order (:data:`RAFDB_CLASSES`). Each image
has its own seed (``SeedSequence(seed, spawn_key=(split, index))``), so generation runs in worker
processes with identical results.

Three splits: ``train``, ``test`` and ``val`` (a validation split, drawn like train: the same
generator and class balance, its own split code, by default as many images as test). Each split
has its own seeds, so adding ``val`` left every train and test image and label as it was; the
label file lists train, then test, then val (``val_00001.jpg 4``). The trainer picks ``best.pt``
on ``val`` and reports ``test``.

Difficulty (default embedded set: train 3000 / test 700 (val 700), seed 0, RAF-DB balance, generator
version 2; ``python benchmarks/data_difficulty.py`` on a 2-core CPU shared with other jobs,
figures in ``data/README.md``): the majority class gives 38.9 % test accuracy (balanced 14.3 %),
a logistic regression on raw pixels 52.6 % (balanced 38.4 %), a small CNN trained for two
minutes (11 epochs at 48 px) 90.4 % (balanced 88.4 %). Version 1 (intensity 0.25..1, smaller
faces, thinner strokes) left small models at the majority class for epochs; the levers are
:data:`INTENSITY_RANGE`, :data:`FACE_SCALE`, :data:`STROKE` and :data:`NUISANCE`.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from transfer_lib.models.config import RAFDB_CLASSES
from transfer_lib.utils.atomic import link_or_copy
from transfer_lib.utils.pool import chunk_size, map_chunks

#: Bump when the drawing changes: :func:`ensure_synthetic` then regenerates the embedded set.
GENERATOR_VERSION = 2
#: Size of the embedded default set (small enough to generate in a few seconds on 2 cores).
DEFAULT_TRAIN = 3000
DEFAULT_TEST = 700
#: The validation split's size when none is given: the test split's.
DEFAULT_VAL = None
DEFAULT_OCCLUSION = 0.3
IMAGE_SIZE = 100
#: RAF-DB's training counts per class, in RAF-DB order: the default class balance.
RAFDB_TRAIN_COUNTS: tuple[int, ...] = (1290, 281, 717, 4772, 1982, 705, 2524)
BALANCES = ("rafdb", "uniform")
#: Parts that :func:`render_face` can hide with ``occlude_part=``.
PARTS = ("brows", "eyes", "nose", "cheeks", "mouth")
#: What a class is (``synth --task``): ``additive``, the default, classes are sums of local cues
#: (:data:`EXPRESSION_CUES`); ``relational``, four classes with the same cues on every part that
#: differ only in how three parts agree (:data:`RELATIONAL_CLASSES`); ``occlusion-shift``, the
#: additive classes with no occluder in train and val, so that the per-part occluded test
#: (:mod:`transfer_lib.evaluate.occlusion`) shows an occlusion training never did.
TASKS = ("additive", "relational", "occlusion-shift")
#: Kinds of natural occluder, and what they hide.
OCCLUDERS = ("glasses", "hat", "mask", "hand", "patch")
MARKER = "synthetic.json"
# How hard the set is. Version 1 drew intensities from 0.25..1, faces at 0.85..1.1 of the frame
# and strokes at 1x: a small CNN at 64 px stayed at the majority class for epochs (see
# data/README.md, "Difficulty"). These are the levers that were measured one at a time.
#: Range of the random cue intensity (fraction of the full expression) and a factor on the
#: per-cue jitter (:data:`_JITTER`).
INTENSITY_RANGE: tuple[float, float] = (0.5, 1.0)
JITTER_SCALE = 1.0
#: Range of the face's scale in the frame (1 = the canonical 100 x 100 face frame; above 1 the
#: face fills the frame as in RAF-DB's aligned crops, hair and chin cut off).
FACE_SCALE: tuple[float, float] = (1.1, 1.3)
#: Factor on the width of the expression-bearing strokes (brows, lids, lip lines, wrinkles).
STROKE = 1.5
#: Factor on the photometric nuisance (noise sigma, blur radius, lighting gradient).
NUISANCE = 1.0

#: Each split's first spawn-key element. Never change one: the images of a split are drawn from
#: it (val came later with its own code, so train and test stayed byte for byte the same).
_SPLIT_CODE = {"train": 0, "test": 1, "val": 2}
#: The splits of a set written here, in the label file's order (val last: it came later).
SPLITS = ("train", "test", "val")
_S = 2  # drawing is supersampled 2x, then reduced to 100 x 100 (antialiasing)
_W = IMAGE_SIZE * _S

# --------------------------------------------------------------------------------------------
# Expressions as local cues
# --------------------------------------------------------------------------------------------
#: Cue parameters at rest (Neutral).
REST = dict(
    brow_raise=0.0,  # + raised, - lowered
    brow_tilt=0.0,  # + inner ends up (fear, sadness), - inner ends down (anger)
    brow_arch=0.0,  # + arched (surprise)
    eye_open=1.0,  # lid opening, 1 = rest
    lid_droop=0.0,  # outer upper lids lowered (sadness)
    mouth_open=0.0,
    mouth_width=1.0,
    mouth_curve=0.0,  # + corners up, - corners down
    lip_press=0.0,  # thin pressed lips (anger)
    upper_lip=0.0,  # upper lip raised, asymmetric (disgust)
    teeth=0.0,
    nose_wrinkle=0.0,
    cheek_raise=0.0,
)

#: Displacement of each cue from REST at full intensity, per class (RAF-DB order).
EXPRESSION_CUES: dict[str, dict[str, float]] = {
    "Surprise": dict(brow_raise=1.0, brow_arch=1.0, eye_open=0.6, mouth_open=1.0,
                     mouth_width=-0.3),
    "Fear": dict(brow_raise=0.6, brow_tilt=1.0, brow_arch=-0.3, eye_open=0.6, mouth_open=0.45,
                 mouth_width=0.3, mouth_curve=-0.3, teeth=1.0),
    "Disgust": dict(brow_raise=-0.6, brow_tilt=-0.3, eye_open=-0.3, nose_wrinkle=1.0,
                    upper_lip=1.0, mouth_open=0.15, mouth_curve=-0.5, cheek_raise=0.3),
    "Happiness": dict(mouth_curve=1.0, mouth_width=0.25, mouth_open=0.35, teeth=1.0,
                      cheek_raise=1.0, eye_open=-0.25),
    "Sadness": dict(brow_tilt=1.0, brow_raise=0.1, eye_open=-0.25, lid_droop=1.0,
                    mouth_curve=-0.9, mouth_width=-0.1),
    "Anger": dict(brow_raise=-0.9, brow_tilt=-1.0, eye_open=-0.2, lip_press=1.0,
                  mouth_width=-0.15, mouth_curve=-0.2, nose_wrinkle=0.2),
    "Neutral": dict(),
}
#: Which parts each cue is drawn on (for the occlusion chapter).
CUE_PART = dict(brow_raise="brows", brow_tilt="brows", brow_arch="brows", eye_open="eyes",
                lid_droop="eyes", mouth_open="mouth", mouth_width="mouth", mouth_curve="mouth",
                lip_press="mouth", upper_lip="mouth", teeth="mouth", nose_wrinkle="nose",
                cheek_raise="cheeks")
#: The relational task. Each of brows, eyes and mouth shows one of two states (0 or 1, below); a
#: face draws the brows' state at random and the class says which part, if any, disagrees with the
#: other two. So every part shows each state in half the faces of every class: a part on its own
#: says nothing about the class, and a sum of per-part scores, :func:`relational_cap`, is right
#: on at most 5 of the 8 state combinations (62.5 %; chance is 25 %).
RELATIONAL_CLASSES: tuple[str, ...] = ("all agree", "mouth odd", "eyes odd", "brows odd")
RELATIONAL_ODD: tuple[str | None, ...] = (None, "mouth", "eyes", "brows")
RELATIONAL_PARTS: tuple[str, ...] = ("brows", "eyes", "mouth")
#: Displacement from REST at full intensity of each relational part's state 0 and state 1.
RELATIONAL_CUES: dict[str, tuple[dict[str, float], dict[str, float]]] = {
    "brows": (dict(brow_raise=-0.9), dict(brow_raise=1.0)),  # lowered | raised
    "eyes": (dict(eye_open=-0.5), dict(eye_open=0.6)),  # narrowed | wide
    "mouth": (dict(mouth_curve=-0.9), dict(mouth_curve=1.0)),  # corners down | up
}
_JITTER = dict(brow_raise=0.15, brow_tilt=0.15, brow_arch=0.15, eye_open=0.1, lid_droop=0.1,
               mouth_open=0.06, mouth_width=0.07, mouth_curve=0.15, lip_press=0.1,
               upper_lip=0.1, teeth=0.0, nose_wrinkle=0.1, cheek_raise=0.12)


def _desaturate(rgb: np.ndarray) -> np.ndarray:
    return 0.5 * rgb + 0.5 * rgb.mean()


def _label_index(label: int | str) -> int:
    if isinstance(label, str):
        if label not in RAFDB_CLASSES:
            raise ValueError(f"label {label!r} is not one of {RAFDB_CLASSES}")
        return RAFDB_CLASSES.index(label)
    if not 0 <= int(label) < len(RAFDB_CLASSES):
        raise ValueError(f"label {label} must lie in 0..{len(RAFDB_CLASSES) - 1} (0-based)")
    return int(label)


# --------------------------------------------------------------------------------------------
# Sampling a face: identity, expression, pose, photometry, occlusion
# --------------------------------------------------------------------------------------------
@dataclass
class FaceSpec:
    """Everything needed to draw one face; drawn from one seed by :func:`sample_face`."""

    label: int
    intensity: float
    cues: dict
    identity: dict
    pose: dict
    photo: dict
    occluder: str | None
    occluder_params: dict


def sample_identity(rng: np.random.Generator) -> dict:
    """Draw who a face is: skin and hair colour, hair style, face shape, the geometry of eyes,
    brows, nose and mouth, the resting mouth curve (``rest_curve``, added to the expression's
    ``mouth_curve``), iris colour, gaze and beard. :func:`sample_face` draws it after the
    expression, in this order."""
    u = rng.uniform
    skin_t = float(u())
    skin = np.array([238, 200, 170]) * (1 - skin_t) + np.array([110, 72, 50]) * skin_t
    skin = skin * rng.uniform(0.93, 1.07, 3)
    hair_choices = np.array([[30, 25, 20], [70, 45, 25], [140, 100, 55], [200, 170, 110],
                             [120, 120, 120], [160, 60, 30]])
    hair = hair_choices[rng.integers(len(hair_choices))] * rng.uniform(0.8, 1.2)
    return dict(
        skin=skin, hair=hair, hair_style=int(rng.integers(5)),
        face_w=float(u(66, 80)), face_h=float(u(82, 94)), jaw=float(u(0.0, 1.0)),
        eye_y=float(u(-3, 3)), eye_dx=float(u(15, 19)), eye_w=float(u(7, 9)),
        brow_thick=float(u(1.8, 3.5)), brow_gap=float(u(4, 7)),
        mouth_y=float(u(-3, 3)), mouth_w=float(u(11, 14)), rest_curve=float(rng.normal(0, 0.15)),
        nose_len=float(u(-3, 3)), iris=np.array([60, 40, 25]) * u(0.5, 1.8),
        gaze=float(u(-2, 2)), beard=bool(u() < 0.1),
    )


def relational_states(label: int, brows: int) -> dict[str, int]:
    """The states (0 or 1) of brows, eyes and mouth in a relational face of class ``label``
    (0-based index into :data:`RELATIONAL_CLASSES`) whose brows show ``brows``."""
    states = dict.fromkeys(RELATIONAL_PARTS, int(brows))
    odd = RELATIONAL_ODD[label]
    if odd is not None:
        states[odd] = 1 - int(brows)
    return states


def relational_cap() -> dict[str, float]:
    """The best accuracy on the relational task (noise-free states, classes equally frequent) of a
    model that sees one part (``one_part``), two parts (``two_parts``) or all three parts but
    scores each on its own and sums the scores (``per_part_sum``), with ``chance``; as fractions.

    ``per_part_sum``, the bound: with two states a part, any per-part score is affine in the
    states' signs, so class k's score on a state combination x and on its mirror image (every part
    flipped) sums to the same constant c_k for every x. A class's two combinations are mirror
    images. If both are answered k, then c_k > c_j for every other class j, which holds for one
    class at most; so at most 2 + 1 + 1 + 1 = 5 of the 8 equally likely combinations are answered
    right. 5 is reached (tests check a construction), so the cap is 5 / 8. ``one_part`` and
    ``two_parts`` are counted exactly over the combinations here.
    """
    combos = [(k, b) for k in range(len(RELATIONAL_CLASSES)) for b in (0, 1)]

    def best(parts: tuple[str, ...]) -> float:
        seen: dict[tuple, list[int]] = {}
        for k, b in combos:
            s = relational_states(k, b)
            seen.setdefault(tuple(s[p] for p in parts), []).append(k)
        return sum(max(ks.count(k) for k in set(ks)) for ks in seen.values()) / len(combos)

    return dict(chance=1 / len(RELATIONAL_CLASSES), one_part=best(("brows",)),
                two_parts=best(("brows", "eyes")), per_part_sum=5 / 8)


def sample_face(label: int | str, rng: np.random.Generator, occlusion: float = DEFAULT_OCCLUSION,
                intensity: float | None = None, identity: dict | None = None,
                task: str = "additive") -> FaceSpec:
    """Draw a face of class ``label`` (0-based or a name). The draw order is fixed, so the same
    ``rng`` state gives the same identity whatever is asked of the occluder afterwards.

    ``identity`` (a :func:`sample_identity` dict) fixes who the face is; ``rng`` then draws no
    identity, only expression, pose, photometry and occluder (see :func:`identity_face`).
    ``task="relational"``: ``label`` is a :data:`RELATIONAL_CLASSES` index and the cues are its
    parts' states (:data:`RELATIONAL_CUES`); the rest is drawn as for the additive task.
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not one of {', '.join(TASKS)}")
    relational = task == "relational"
    if relational:
        k = int(label)
        if not 0 <= k < len(RELATIONAL_CLASSES):
            raise ValueError(f"label {label}: the relational task has classes 0..3")
    else:
        k = _label_index(label)
    u = rng.uniform
    t = float(u(*INTENSITY_RANGE)) if intensity is None else float(intensity)
    if relational:
        displacement: dict[str, float] = {}
        for part, state in relational_states(k, int(rng.integers(2))).items():
            displacement.update(RELATIONAL_CUES[part][state])
    else:
        displacement = EXPRESSION_CUES[RAFDB_CLASSES[k]]
    cues = {}
    for name, rest in REST.items():
        d = displacement.get(name, 0.0)
        cues[name] = rest + t * d + float(rng.normal(0.0, JITTER_SCALE * _JITTER[name]))
    # some expressions vary in how they use the mouth
    if not relational and RAFDB_CLASSES[k] == "Happiness" and u() < 0.4:
        cues["mouth_open"] = 0.0  # closed smile
        cues["teeth"] = 0.0
    if not relational and RAFDB_CLASSES[k] == "Anger" and u() < 0.35:
        cues["mouth_open"] = 0.25 * t  # bared, clenched teeth instead of pressed lips
        cues["teeth"] = 1.0
        cues["lip_press"] = 0.3
    if identity is None:
        identity = sample_identity(rng)
    else:
        identity = dict(identity)  # the caller's dict is shared by its images
    cues["mouth_curve"] += identity["rest_curve"]
    pose = dict(angle=float(rng.normal(0, 8)), scale=float(u(*FACE_SCALE)),
                dx=float(u(-7, 7)), dy=float(u(-7, 7)), yaw=float(u(-0.35, 0.35)))
    bg_kind = int(rng.integers(3))
    photo = dict(
        bg_kind=bg_kind, bg_a=_desaturate(rng.uniform(0, 255, 3)),
        bg_b=_desaturate(rng.uniform(0, 255, 3)),
        bg_noise=rng.uniform(0, 1, (6, 6, 3)), light_dir=float(u(0, 2 * math.pi)),
        light_amp=NUISANCE * float(u(0.0, 0.45)), gain=float(u(0.75, 1.2)), bias=float(u(-20, 20)),
        noise=NUISANCE * float(u(0, 8)),
        blur=NUISANCE * float(u(0, 1.0)) if u() < 0.5 else 0.0,
        quality=int(rng.integers(70, 96)), noise_seed=int(rng.integers(2**31)),
    )
    occluder = None
    if u() < occlusion:
        occluder = OCCLUDERS[int(rng.choice(5, p=[0.25, 0.1, 0.2, 0.25, 0.2]))]
    occ = dict(
        color=rng.uniform(0, 255, 3), side=float(rng.choice([-1.0, 1.0])),
        target=int(rng.integers(3)), x=float(u(-28, 28)), y=float(u(-35, 38)),
        w=float(u(16, 32)), h=float(u(14, 28)), textured=bool(u() < 0.5),
        tex=rng.uniform(0, 255, (4, 4, 3)),
    )
    return FaceSpec(k, t, cues, identity, pose, photo, occluder, occ)


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------
def _mix(a, b, alpha: float) -> tuple[int, int, int]:
    alpha = float(np.clip(alpha, 0.0, 1.0))
    c = np.asarray(a, float) * (1 - alpha) + np.asarray(b, float) * alpha
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _col(c) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(c, 0, 255))


class _Canvas:
    """Canonical 100 x 100 face frame (drawn at 2x) with a yaw that squeezes one side."""

    def __init__(self, yaw: float):
        self.img = Image.new("RGBA", (_W, _W), (0, 0, 0, 0))
        self.d = ImageDraw.Draw(self.img)
        self.yaw = yaw

    def x(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, float) - 50.0
        squeeze = np.where(x < 0, 1 + 0.3 * self.yaw, 1 - 0.3 * self.yaw)
        return (50.0 + 8 * self.yaw + x * squeeze) * _S

    def pts(self, xs, ys) -> list[tuple[float, float]]:
        return list(zip(self.x(xs).tolist(), (np.asarray(ys, float) * _S).tolist()))

    def poly(self, xs, ys, fill) -> None:
        self.d.polygon(self.pts(xs, ys), fill=_col(fill) + (255,))

    def line(self, xs, ys, fill, width: float) -> None:
        self.d.line(self.pts(xs, ys), fill=_col(fill) + (255,), width=max(1, int(round(width * _S))),
                    joint="curve")

    def ellipse(self, cx, cy, rx, ry, fill) -> None:
        xs = self.x([cx - rx, cx + rx])
        self.d.ellipse([float(min(xs)), (cy - ry) * _S, float(max(xs)), (cy + ry) * _S],
                       fill=_col(fill) + (255,))


def _arc(x0, x1, y_end, y_mid, n=12):
    """Parabola through (x0, y_end), ((x0+x1)/2, y_mid), (x1, y_end)."""
    xs = np.linspace(x0, x1, n)
    u = (xs - (x0 + x1) / 2) / ((x1 - x0) / 2)
    return xs, y_end + (y_mid - y_end) * (1 - u**2)


def _draw_face(spec: FaceSpec, occlude_part: str | None) -> Image.Image:
    idt, c = spec.identity, spec.cues
    sk = STROKE
    cv = _Canvas(spec.pose["yaw"])
    skin, hair = idt["skin"], idt["hair"]
    dark = skin * 0.45
    cx, cy = 50.0, 52.0
    fw, fh = idt["face_w"] / 2, idt["face_h"] / 2
    style = idt["hair_style"]
    if style == 1:  # long hair behind the face
        cv.ellipse(cx, cy + 5, fw + 9, fh + 12, hair)
        cv.poly([cx - fw - 9, cx + fw + 9, cx + fw + 9, cx - fw - 9], [cy, cy, 100, 100], hair)
    cv.poly([cx - 14, cx + 14, cx + 18, cx - 18], [cy + 30, cy + 30, 101, 101], skin * 0.85)  # neck
    cv.ellipse(cx - fw, cy + 2, 4.5, 8, skin * 0.92)  # ears
    cv.ellipse(cx + fw, cy + 2, 4.5, 8, skin * 0.92)
    # face: ellipse with a jaw that is rounder or squarer
    a = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    r = 1 + idt["jaw"] * 0.08 * np.clip(np.sin(a), 0, 1) ** 4
    cv.poly(cx + fw * np.cos(a) * np.where(np.sin(a) > 0, r, 1), cy + fh * np.sin(a), skin)
    if style in (0, 1, 3):  # hair on top
        ta = np.linspace(np.pi, 2 * np.pi, 20)
        top = cy - fh * 0.55
        cv.poly(np.r_[cx + (fw + 2) * np.cos(ta), cx + fw + 2, cx - fw - 2],
                np.r_[cy + (fh + 3) * np.sin(ta), top, top], hair)
        if style == 3:  # fringe
            fx = np.linspace(cx - fw, cx + fw, 9)
            cv.poly(np.r_[fx, fx[::-1]], np.r_[np.full(9, top - 1), top + 5 + 5 * (np.arange(9) % 2)],
                    hair)
    if idt["beard"]:
        ba = np.linspace(0.1 * np.pi, 0.9 * np.pi, 16)
        cv.poly(np.r_[cx + fw * np.cos(ba), cx - fw * 0.6, cx + fw * 0.6],
                np.r_[cy + fh * np.sin(ba), cy + 18, cy + 18], hair * 0.9)

    # ---- cheeks: raised cheeks swell (highlight) and deepen the nasolabial folds
    ey = cy - 12 + idt["eye_y"]
    my = cy + 21 + idt["mouth_y"]
    mw = idt["mouth_w"] * np.clip(c["mouth_width"], 0.6, 1.5)
    cheek = float(np.clip(c["cheek_raise"], 0, 1.3))
    for s in (-1, 1):
        if cheek > 0.05:
            cv.ellipse(cx + s * (idt["eye_dx"] + 1), ey + 15 - 2 * cheek, 7.5, 5,
                       _mix(skin, (235, 120, 120), 0.35 * cheek))
        fold = float(np.clip(0.15 + 0.8 * cheek + 0.5 * max(c["upper_lip"], 0), 0, 1.2))
        cv.line([cx + s * 7, cx + s * (9 + 3 * fold), cx + s * (mw + 2)],
                [cy + 3, cy + 10, my + 1 - 3 * fold], _mix(skin, dark, 0.35 * fold), sk * (0.7 + 0.7 * fold))
        if cheek > 0.3:  # crow's feet
            ox = cx + s * (idt["eye_dx"] + idt["eye_w"] + 1.5)
            for k in (-1, 0, 1):
                cv.line([ox, ox + s * 3], [ey + k * 1.5, ey + k * 2.5], _mix(skin, dark, 0.5 * cheek), sk * 0.8)

    # ---- eyes
    eo = float(np.clip(c["eye_open"], 0.25, 1.8))
    for s in (-1, 1):
        ex = cx + s * idt["eye_dx"]
        w = idt["eye_w"]
        xs = np.linspace(ex - w, ex + w, 14)
        uu = np.clip((xs - ex) / w, -1.0, 1.0)
        droop = np.clip(c["lid_droop"], 0, 1.2) * np.clip(s * uu, 0, 1)  # outer half droops
        up = ey - 4 * eo * (1 - uu**2) * (1 - 0.6 * droop)
        lo = ey + 2.6 * min(eo, 1.2) * (1 - uu**2) * (1 - 0.5 * cheek)
        cv.poly(np.r_[xs, xs[::-1]], np.r_[up, lo[::-1]], (245, 245, 240))
        ir = 3.4
        ix = ex + idt["gaze"] * 0.6
        cv.ellipse(ix, ey, ir, ir, idt["iris"])
        cv.ellipse(ix, ey, ir * 0.45, ir * 0.45, (10, 10, 10))
        # re-cover what lies outside the lids (clips the iris)
        cv.poly(np.r_[xs, xs[::-1]], np.r_[up, np.full(14, ey - ir - 2)], skin)
        cv.poly(np.r_[xs, xs[::-1]], np.r_[lo, np.full(14, ey + ir + 2)], skin)
        cv.line(xs, up, (25, 20, 20), sk * 1.2)
        cv.line(xs, lo, _mix(skin, dark, 0.6), sk * 0.6)

    # ---- brows: inner end at the centre, outer end out; raise, tilt and arch move them
    for s in (-1, 1):
        u = np.linspace(0, 1, 10)
        xs = cx + s * (idt["brow_gap"] + u * 17)
        by = ey - 8 - 3.5 * c["brow_raise"] - 3.2 * c["brow_tilt"] * (1 - u) * (1 - 0.5 * u)
        by = by - 3 * c["brow_arch"] * np.sin(np.pi * np.clip(0.25 + 0.8 * u, 0, 1)) - 1.0 * np.sin(np.pi * u)
        th = sk * idt["brow_thick"] * (1.2 - 0.5 * u)
        cv.poly(np.r_[xs, xs[::-1]], np.r_[by - th / 2, (by + th / 2)[::-1]], hair * 0.7)
        if c["brow_tilt"] < -0.4:  # vertical frown lines between lowered brows
            cv.line([cx + s * 2, cx + s * 2.5], [ey - 9, ey - 4], _mix(skin, dark, 0.5), sk * 0.6)

    # ---- nose: bridge shading, nostrils, wrinkle
    nl = idt["nose_len"]
    cv.line([cx + 1.5, cx + 3, cx + 3.5], [ey + 2, cy + 6 + nl, cy + 9 + nl], _mix(skin, dark, 0.35), 0.8)
    flare = 1 + 0.3 * max(c["nose_wrinkle"], 0)
    for s in (-1, 1):
        cv.ellipse(cx + s * 3.5 * flare, cy + 10 + nl, 1.8 * flare, 1.1, _mix(skin, (40, 20, 20), 0.7))
    wr = float(np.clip(c["nose_wrinkle"], 0, 1.3))
    if wr > 0.1:
        for k in range(3):
            yy = ey + 1 + 2.4 * k
            xs, ys = _arc(cx - 5, cx + 5, yy + 1.2, yy - 1.0)
            cv.line(xs, ys, _mix(skin, dark, 0.7 * wr), sk * (0.5 + 0.5 * wr))

    # ---- mouth: corners from curve, opening from mouth_open, upper lip raise on one side
    op = float(np.clip(c["mouth_open"], 0, 1.3))
    curve = float(np.clip(c["mouth_curve"], -1.3, 1.3))
    press = float(np.clip(c["lip_press"], 0, 1.2))
    ul = float(np.clip(c["upper_lip"], 0, 1.3))
    lip = _mix(skin, (150, 50, 60), 0.45)
    xs = np.linspace(cx - mw, cx + mw, 16)
    uu = np.clip((xs - cx) / mw, -1.0, 1.0)
    corner = my - 4.5 * curve
    centre_shift = 2.0 * curve  # a smile bends the middle down relative to the corners
    asym = 1 + 0.6 * (uu * idt["gaze"] / 3)  # disgust raises one side more
    inner_up = my + centre_shift * (1 - uu**2) - op * 2.5 * (1 - uu**2) - ul * 3 * (1 - uu**2) * asym
    inner_lo = my + centre_shift * (1 - uu**2) + op * 12 * (1 - uu**2) ** 0.5
    inner_up = corner * uu**2 + inner_up * (1 - uu**2)
    inner_lo = corner * uu**2 + inner_lo * (1 - uu**2)
    lip_t = 2.8 * (1 - 0.7 * press)
    cv.poly(np.r_[xs, xs[::-1]], np.r_[inner_up - lip_t * (1 - uu**2) ** 0.5, inner_up[::-1]], lip)
    cv.poly(np.r_[xs, xs[::-1]], np.r_[inner_lo, (inner_lo + 1.2 * lip_t * (1 - uu**2) ** 0.5)[::-1]],
            lip)
    if op > 0.08 or ul > 0.4:
        cv.poly(np.r_[xs, xs[::-1]], np.r_[inner_up, inner_lo[::-1]], (50, 15, 20))
        if c["teeth"] > 0.5 or ul > 0.4:
            cv.poly(np.r_[xs, xs[::-1]],
                    np.r_[inner_up, np.minimum(inner_up + 2.5, inner_lo)[::-1]], (235, 232, 220))
    cv.line(xs, inner_up, _mix(lip, (40, 10, 10), 0.6), sk * (0.8 + 0.6 * press))

    # ---- occluders, drawn in the face frame so they follow the pose
    o = spec.occluder_params
    if spec.occluder == "glasses":
        col = _mix((10, 10, 15), o["color"], 0.3)
        for s in (-1, 1):
            cv.ellipse(cx + s * idt["eye_dx"], ey + 1, 10, 7, col)
        cv.line([cx - 10, cx + 10], [ey - 2, ey - 2], col, 1.2)
        cv.line([cx - fw, cx - idt["eye_dx"] - 9], [ey - 3, ey - 3], col, 1.0)
        cv.line([cx + idt["eye_dx"] + 9, cx + fw], [ey - 3, ey - 3], col, 1.0)
    elif spec.occluder == "hat":
        y0 = ey - 6 - 6 * (o["target"] == 0)
        cv.poly([cx - fw - 10, cx + fw + 10, cx + fw + 8, cx - fw - 8], [y0, y0, y0 - 5, y0 - 5], o["color"])
        cv.poly([cx - fw, cx + fw, cx + fw - 4, cx - fw + 4], [y0 - 4, y0 - 4, 0, 0], o["color"] * 0.8)
    elif spec.occluder == "mask":
        col = [(230, 235, 240), (120, 170, 210), (30, 30, 35)][o["target"]]
        ma = np.linspace(0.05 * np.pi, 0.95 * np.pi, 14)
        top = cy + 6 + nl
        cv.poly(np.r_[cx + (fw - 1) * np.cos(ma), cx - fw + 2, cx + fw - 2],
                np.r_[cy + (fh - 2) * np.sin(ma), top, top], col)
        cv.line([cx - fw, cx - fw + 3], [cy, top], col, 1.0)
        cv.line([cx + fw, cx + fw - 3], [cy, top], col, 1.0)
    elif spec.occluder == "hand":
        hand = _mix(skin, o["color"], 0.15)
        hx = [cx + o["side"] * 8, cx + o["side"] * 16, cx + o["side"] * 10][o["target"]]
        hy = [my + 2, cy + 6, ey + 4][o["target"]]
        cv.ellipse(hx, hy, 13, 11, hand)
        for k in range(4):
            fx, tip = hx - 9 + 6 * k, hy - 17 + 1.5 * abs(k - 1.5)
            cv.poly([fx - 2.5, fx + 2.5, fx + 2.5, fx - 2.5], [hy, hy, tip, tip], hand)
            cv.line([fx + 2.5, fx + 2.5], [hy - 6, hy - 14], _mix(hand, dark, 0.4), 0.4)
    elif spec.occluder == "patch":
        x0, y0 = cx + o["x"] - o["w"] / 2, cy + o["y"] - o["h"] / 2
        cv.poly([x0, x0 + o["w"], x0 + o["w"], x0], [y0, y0, y0 + o["h"], y0 + o["h"]], o["color"])
    if occlude_part is not None:
        boxes = _part_boxes(idt, cx, cy, ey, my, mw)
        if occlude_part not in boxes:
            raise ValueError(f"occlude_part={occlude_part!r} is not one of {PARTS} or None")
        for (x0, y0, x1, y1) in boxes[occlude_part]:
            cv.poly([x0, x1, x1, x0], [y0, y0, y1, y1], (128, 128, 128))
    return cv.img


def _part_boxes(idt, cx, cy, ey, my, mw) -> dict[str, list[tuple[float, float, float, float]]]:
    """Boxes (x0, y0, x1, y1) in the 100 x 100 face frame that hide one part completely."""
    dx, w = idt["eye_dx"], idt["eye_w"]
    return {
        "brows": [(cx - dx - w - 4, ey - 19, cx + dx + w + 4, ey - 4.5)],
        "eyes": [(cx - dx - w - 3, ey - 6, cx + dx + w + 3, ey + 4.5)],
        "nose": [(cx - 8, ey - 1, cx + 8, cy + 13 + idt["nose_len"])],
        "cheeks": [(cx - dx - 10, ey + 6, cx - 7, my + 2), (cx + 7, ey + 6, cx + dx + 10, my + 2)],
        "mouth": [(cx - mw - 5, my - 9, cx + mw + 5, my + 15)],
    }


def _background(spec: FaceSpec) -> np.ndarray:
    p = spec.photo
    yy, xx = np.mgrid[0:_W, 0:_W] / _W
    if p["bg_kind"] == 0:  # flat
        bg = np.broadcast_to(p["bg_a"], (_W, _W, 3)).copy()
    elif p["bg_kind"] == 1:  # two-colour gradient
        t = (xx * math.cos(p["light_dir"]) + yy * math.sin(p["light_dir"]))[..., None]
        t = (t - t.min()) / (np.ptp(t) + 1e-6)
        bg = p["bg_a"] * (1 - t) + p["bg_b"] * t
    else:  # blotchy low-frequency texture
        small = Image.fromarray((p["bg_noise"] * 255).astype(np.uint8))
        tex = np.asarray(small.resize((_W, _W), Image.BICUBIC), float) / 255
        bg = p["bg_a"] * (1 - tex) + p["bg_b"] * tex
    return bg


def _finish(spec: FaceSpec, layer: Image.Image, size: int) -> np.ndarray:
    """Pose the face layer, put it on the background, light it, add blur and noise."""
    po, p = spec.pose, spec.photo
    # inverse affine: output pixel -> face-frame pixel (rotation and scale about the centre)
    a = math.radians(po["angle"])
    sc = po["scale"]
    ca, sa = math.cos(a) / sc, math.sin(a) / sc
    c0 = _W / 2
    tx, ty = po["dx"] * _S, po["dy"] * _S
    coeffs = (ca, sa, c0 - ca * (c0 + tx) - sa * (c0 + ty), -sa, ca, c0 + sa * (c0 + tx) - ca * (c0 + ty))
    posed = layer.transform((_W, _W), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    bg = Image.fromarray(_background(spec).astype(np.uint8))
    bg = bg.convert("RGBA")
    bg.alpha_composite(posed)
    img = bg.convert("RGB").resize((size, size), Image.BILINEAR, reducing_gap=None)
    if p["blur"] > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(p["blur"] * size / IMAGE_SIZE))
    x = np.asarray(img, np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    light = 1 + p["light_amp"] * (xx * math.cos(p["light_dir"]) + yy * math.sin(p["light_dir"])) * 2
    x = x * (light[..., None] * p["gain"]) + p["bias"]
    if p["noise"] > 0:
        x += np.random.default_rng(p["noise_seed"]).normal(0, p["noise"], x.shape).astype(np.float32)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def render_face(label: int | str, seed: int = 0, occlusion: str | None = None,
                occlude_part: str | None = None, intensity: float | None = None,
                size: int = IMAGE_SIZE, nuisance: bool = True,
                task: str = "additive") -> np.ndarray:
    """One face of class ``label`` (0-based index into RAFDB_CLASSES, or its name) as a
    (size, size, 3) uint8 array.

    ``seed`` fixes identity, expression intensity, pose and photometry; the same seed with a
    different ``occlude_part`` ("brows", "eyes", "nose", "cheeks", "mouth") shows the same face
    with that part hidden by a grey box. ``occlusion`` adds a natural occluder (one of
    :data:`OCCLUDERS`) or none (None). ``intensity`` (0..1) overrides the random cue strength;
    ``nuisance=False`` gives a frontal, evenly lit face on a plain background (for figures).
    ``task="relational"``: ``label`` is a :data:`RELATIONAL_CLASSES` index (0-3).
    """
    spec = sample_face(label, np.random.default_rng(seed), occlusion=0.0, intensity=intensity,
                       task=task)
    if occlusion is not None:
        if occlusion not in OCCLUDERS:
            raise ValueError(f"occlusion={occlusion!r} is not one of {OCCLUDERS} or None")
        spec.occluder = occlusion
    if not nuisance:
        spec.pose = dict(angle=0.0, scale=1.0, dx=0.0, dy=0.0, yaw=0.0)
        spec.photo.update(bg_kind=0, bg_a=np.array([215.0, 220, 225]), light_amp=0.0, gain=1.0,
                          bias=0.0, noise=0.0, blur=0.0)
    return _finish(spec, _draw_face(spec, occlude_part), size)


def render_sample(label: int, seed_seq: np.random.SeedSequence, occlusion: float,
                  occlude_part: str | None = None, task: str = "additive") -> np.ndarray:
    """The image of one data-set sample (what :func:`generate` writes, before JPEG) and its JPEG
    quality."""
    spec = sample_face(label, np.random.default_rng(seed_seq), occlusion=occlusion, task=task)
    return _finish(spec, _draw_face(spec, occlude_part), IMAGE_SIZE), spec.photo["quality"]


# --------------------------------------------------------------------------------------------
# Identity faces: the same person under every expression (face-recognition pretraining)
# --------------------------------------------------------------------------------------------
#: First element of every identity-face spawn key. The expression data set's seeds are
#: ``SeedSequence(seed, spawn_key=(split code, ...))`` with split codes 0, 1 and 2
#: (:data:`_SPLIT_CODE`), so no identity or identity image shares a seed with an image of any
#: expression set, whatever the base seed: the people are other people.
IDENTITY_SPAWN_CODE = 1000


def identity_seed(seed: int, identity: int) -> np.random.SeedSequence:
    """The seed of person ``identity``'s :func:`sample_identity` draw."""
    return np.random.SeedSequence(seed, spawn_key=(IDENTITY_SPAWN_CODE, identity))


def identity_image_seed(seed: int, identity: int, image: int) -> np.random.SeedSequence:
    """The seed of everything but the identity in image ``image`` of person ``identity``."""
    return np.random.SeedSequence(seed, spawn_key=(IDENTITY_SPAWN_CODE, identity, image))


def identity_face(identity: int, image: int, seed: int = 0, occlusion: float = DEFAULT_OCCLUSION,
                  size: int = IMAGE_SIZE) -> tuple[np.ndarray, FaceSpec]:
    """Image ``image`` of synthetic person ``identity``: a (size, size, 3) uint8 array and its
    :class:`FaceSpec`.

    The identity (``spec.identity``) comes from :func:`identity_seed` alone, so every image of a
    person shows the same face; the expression (a class drawn uniformly from all seven, at a
    random intensity), pose, lighting, background, noise, blur and occluder come from
    :func:`identity_image_seed` and vary from image to image. ``spec.label`` is that expression,
    a nuisance here: face-recognition pretraining labels an image with ``identity``. Seeds are
    disjoint from the expression set's (:data:`IDENTITY_SPAWN_CODE`). No JPEG round trip.
    """
    person = sample_identity(np.random.default_rng(identity_seed(seed, identity)))
    rng = np.random.default_rng(identity_image_seed(seed, identity, image))
    label = int(rng.integers(len(RAFDB_CLASSES)))
    spec = sample_face(label, rng, occlusion=occlusion, identity=person)
    return _finish(spec, _draw_face(spec, None), size), spec


# --------------------------------------------------------------------------------------------
# Writing the data set
# --------------------------------------------------------------------------------------------
def class_counts(n: int, balance: str = "rafdb", task: str = "additive") -> list[int]:
    """How many of ``n`` images each of the 7 labels gets (largest remainder, so they sum to
    ``n``). The relational task uses labels 0-3 only, equally often, whatever ``balance``."""
    if balance not in BALANCES:
        raise ValueError(f"balance={balance!r} is not one of {BALANCES}")
    if task == "relational":
        weights = np.array([1.0] * len(RELATIONAL_CLASSES) + [0.0] * 3)
    else:
        weights = np.array(RAFDB_TRAIN_COUNTS if balance == "rafdb" else [1] * 7, float)
    share = weights / weights.sum() * n
    counts = np.floor(share).astype(int)
    for k in np.argsort(-(share - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    return counts.tolist()


def most_frequent_class_accuracy(n: int, balance: str = "rafdb") -> float:
    """Test accuracy (%) of always answering the most frequent class on a split of ``n`` images.

    The line a run must rise above to have learnt anything: the book counts a run that ends at
    or below it as one that has not started to learn (chapters 6, 7 and 9).
    """
    if n < 1:
        raise ValueError(f"n={n}: a split needs at least one image")
    return 100.0 * max(class_counts(n, balance)) / n


def split_labels(n: int, split: str, seed: int, balance: str = "rafdb",
                 task: str = "additive") -> np.ndarray:
    """The 0-based labels of a split, in file order (a seeded shuffle of exact class counts)."""
    labels = np.repeat(np.arange(7), class_counts(n, balance, task))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SPLIT_CODE[split], 2**20)))
    return rng.permutation(labels)


def _image_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=(_SPLIT_CODE[split], index))


def hidden_part(seed: int, split: str, index: int, share: float) -> str | None:
    """The part under a grey box in training or validation image ``index`` of a set written with
    ``part_occlusion=share`` (None: none; test images never have one). Drawn from its own seed,
    so the image's face is the one the set without part occlusion holds."""
    if share <= 0.0 or split == "test":
        return None
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SPLIT_CODE[split], index,
                                                                         2**21)))
    return PARTS[int(rng.integers(len(PARTS)))] if rng.uniform() < share else None


def _write_chunk(job: tuple) -> int:
    folder, split, params, items = job
    seed, occlusion, task = params["seed"], params["occlusion"], params["task"]
    for index, label in items:
        part = hidden_part(seed, split, index, params["part_occlusion"])
        img, quality = render_sample(label, _image_seed(seed, split, index), occlusion,
                                     occlude_part=part, task=task)
        Image.fromarray(img).save(os.path.join(folder, f"{split}_{index + 1:05d}_aligned.jpg"),
                                  quality=quality)
    return len(items)


def generate(out: str | os.PathLike, train: int = DEFAULT_TRAIN, test: int = DEFAULT_TEST,
             seed: int = 0, occlusion: float | None = None, balance: str = "rafdb",
             workers: int | None = None, progress: bool = False, force: bool = False,
             val: int | None = DEFAULT_VAL, task: str = "additive",
             part_occlusion: float = 0.0) -> Path:
    """Write the synthetic set under ``out`` in RAF-DB's layout and return ``out``.

    ``out/basic/EmoLabel/list_patition_label.txt`` lists ``train_00001.jpg 5`` (labels 1..7),
    then the ``test_`` and ``val_`` images; ``out/basic/Image/aligned/train_00001_aligned.jpg``
    holds the 100 x 100 image and ``out/synthetic.json`` (:data:`MARKER`) the generation
    parameters. ``val`` (None: as many as ``test``) images are drawn like the training images
    (same class balance) from their own seeds. Same arguments, same bytes, whatever ``workers``
    is. ``task`` (:data:`TASKS`) says what a class is; ``occlusion-shift`` needs ``occlusion=0``.
    ``part_occlusion`` hides a random part under a grey box (the occlusion test's) in that share
    of the train and val images (:func:`hidden_part`): the planted control of the
    occlusion-shift task.

    Nothing is lost or mixed: ``out`` must be missing, empty or a synthetic set written here (its
    marker) holding nothing else; files the set would not hold are refused (DataError), or with
    ``force`` kept beside the new set, never deleted (:func:`check_target`). The set
    is drawn in a temporary sibling folder and swapped in for ``out`` at the end, so an
    interrupted run leaves the old set (or nothing) at ``out``, never a mixture.
    """
    params = _params(train, test, seed, occlusion, balance, workers, val, task, part_occlusion)
    given, out = Path(out), _target(out)
    check_target(out, force=force)
    tmp = _fresh_tmp(out)
    try:
        _write_set(tmp, params, workers, progress)
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        print(f"wrote {sum(params[s] for s in SPLITS)} images to {given}")
    return given


def _params(train: int, test: int, seed: int, occlusion: float | None, balance: str,
            workers: int | None, val: int | None = DEFAULT_VAL, task: str = "additive",
            part_occlusion: float = 0.0) -> dict:
    """The marker's generation parameters, checked (TransferError names the bad one). ``val``
    None is ``test``; ``splits`` names the splits the set holds (a marker without it, or without
    ``val``, was written before the validation split: :func:`ensure_synthetic` completes it)."""
    from transfer_lib.utils.errors import TransferError

    val = test if val is None else val
    if occlusion is None:  # the task's own: occluders in the additive task only
        occlusion = DEFAULT_OCCLUSION if task == "additive" else 0.0
    for name, n in (("train", train), ("test", test), ("val", val)):
        if n < 0:
            raise TransferError(f"--{name} {n}: the number of {name} images must be 0 or more")
    if train + test + val == 0:
        raise TransferError("--train 0 --test 0 --val 0: a data set needs at least one image")
    if not 0.0 <= occlusion <= 1.0:  # also refuses nan
        raise TransferError(f"--occlusion {occlusion}: the share of occluded images must lie in "
                            f"[0, 1] (e.g. 0.3)")
    if balance not in BALANCES:
        raise TransferError(f"--balance {balance!r} is not one of {', '.join(BALANCES)}")
    if task not in TASKS:
        raise TransferError(f"--task {task!r} is not one of {', '.join(TASKS)}")
    if task == "occlusion-shift" and occlusion != 0.0:
        raise TransferError(f"--task occlusion-shift --occlusion {occlusion}: this task's training "
                            f"images have no occluder; leave --occlusion out (0)")
    if not 0.0 <= part_occlusion <= 1.0:
        raise TransferError(f"--part-occlusion {part_occlusion}: the share of images with a part "
                            f"hidden must lie in [0, 1] (e.g. 0.3)")
    if task == "relational":
        balance = "uniform"  # four classes, equally often
    occlusion, part_occlusion = float(occlusion) + 0.0, float(part_occlusion) + 0.0  # never -0.0
    if workers is not None and workers < 1:
        raise TransferError(f"--workers {workers}: the number of processes must be 1 or more "
                            f"(leave it out for {min(2, os.cpu_count() or 1)})")
    return dict(version=GENERATOR_VERSION, train=train, test=test, val=val, seed=seed,
                occlusion=occlusion, balance=balance, splits=list(SPLITS), task=task,
                part_occlusion=part_occlusion)


def read_marker(root: str | os.PathLike) -> dict | None:
    """The marker of the synthetic set at ``root`` (parameters and ``state``: ``complete`` or
    ``incomplete`` while it is being written), or None when ``root`` holds none or an unreadable
    one. Markers written before ``state`` existed were written complete."""
    try:
        marker = json.loads((Path(root) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict):
        return None
    # markers written before the task variants describe additive sets without part occlusion
    return {"task": "additive", "part_occlusion": 0.0, **marker,
            "state": marker.get("state", "complete")}


#: The names a set written here holds, folder by folder (anything else in ``out`` is foreign).
_OWN_IMAGE = re.compile(r"^(train|test|val)_\d{5}_aligned\.jpg$")
#: ``out/occlusion/``: the faces ``eval --occlusion`` drew again with a part hidden
#: (:func:`transfer_lib.evaluate.occlusion.occlusion_cache_dir`), one folder per split and marker, each
#: holding ``PART.npz``, ``params.json`` and the temporaries of their writes.
_OCCLUSION_CACHE_DIR = re.compile(r"^(train|test|val)-v\d+-[0-9a-f]{12}$")
_OCCLUSION_CACHE_FILE = re.compile(
    r"^(params\.json|[a-z]+\.npz|\.[a-z]+\.\d+\.npz|\.(params\.json|[a-z]+\.npz)\.\d+\.[0-9a-f]{8}\.tmp)$")


def _is_occlusion_cache(folder: Path) -> bool:
    """Whether ``folder`` (``out/occlusion``) holds only what the occlusion test caches there:
    it is derived from the set and goes with it. Anything else in it makes the whole folder
    the user's."""
    def only(path: Path, name: re.Pattern, is_dir: bool) -> bool:
        return all(e.is_dir() == is_dir and not e.is_symlink() and name.match(e.name)
                   for e in path.iterdir())

    try:
        return (folder.is_dir() and not folder.is_symlink()
                and only(folder, _OCCLUSION_CACHE_DIR, True)
                and all(only(sub, _OCCLUSION_CACHE_FILE, False) for sub in folder.iterdir()))
    except OSError:
        return False


def foreign_files(out: Path) -> list[Path]:
    """The entries under ``out`` that a set written here would not hold (paths relative to
    ``out``, outermost first): the user's own files, which must never be deleted. The occlusion
    test's cache (``occlusion/``, :func:`_is_occlusion_cache`) is the set's own."""
    own_dirs = {Path("basic"), Path("basic/Image"), Path("basic/Image/aligned"),
                Path("basic/EmoLabel")}
    own_files = {Path(MARKER), Path("basic/EmoLabel/list_patition_label.txt")}
    found: list[Path] = []

    def walk(rel: Path) -> None:
        for entry in sorted((out / rel).iterdir()):
            r = rel / entry.name
            if entry.is_dir() and not entry.is_symlink() and r in own_dirs:
                walk(r)
            elif r in own_files or (rel == Path("basic/Image/aligned") and entry.is_file()
                                    and _OWN_IMAGE.match(entry.name)):
                continue
            elif r == Path("occlusion") and _is_occlusion_cache(entry):
                continue
            else:
                found.append(r)

    if out.is_dir():
        walk(Path("."))
    return [Path(*f.parts) for f in found]


def check_target(out: Path, force: bool = False) -> None:
    """Refuse (DataError) to write a set at ``out`` when it is a file, or a folder holding files
    a set written here would not hold (the user's own), unless ``force``: then those files are
    kept, beside the new set. A foreign file where the set writes one of its own (a real RAF-DB
    label file, say) is refused even with ``force``."""
    from transfer_lib.utils.errors import DataError

    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file, not a folder: give --out a folder (new or empty) for "
                        f"the synthetic set")
    if not out.is_dir():
        return
    is_set = (out / MARKER).is_file()
    if not is_set and (out / "basic" / "EmoLabel" / "list_patition_label.txt").exists():
        raise DataError(f"{out} holds a RAF-DB label file that this library did not write (no "
                        f"{MARKER}): it may be your RAF-DB. Choose another --out.")
    if force:
        return
    found = foreign_files(out)
    if found:
        shown = ", ".join(map(str, found[:5])) + (f" and {len(found) - 5} more"
                                                  if len(found) > 5 else "")
        what = ("is a synthetic set, but it also holds files this library did not write"
                if is_set else f"is not empty and is not a synthetic set (no {MARKER})")
        raise DataError(
            f"{out} {what}: {shown}. Nothing was written. Choose a new or empty folder with "
            f"--out, or pass --force to write the set there and keep those files beside it.")


def _leftovers(out: Path, kind: str = "tmp") -> list[Path]:
    """The folders ``.NAME.tmp-PID`` (``kind`` "tmp": a set being drawn) or ``.NAME.old-PID``
    ("old": the set it replaces, deleted last) beside ``out``, in name order."""
    if not out.name:
        return []
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.{kind}-([0-9]+)$")
    return sorted(p for p in out.parent.glob(f".{glob.escape(out.name)}.{kind}-*")
                  if pattern.match(p.name))


def _fresh_tmp(out: Path) -> Path:
    """A new temporary sibling of ``out``; leftovers of interrupted runs whose process is gone
    (``.NAME.tmp-PID``, and ``.NAME.old-PID`` of one killed while it deleted the set it had
    replaced) are removed first.

    These are folders, which :func:`transfer_lib.utils.atomic.remove_stale_temporaries` (files only,
    never a folder) leaves alone; the test of the process is its :func:`process_alive`. A link
    of such a name is not followed (``shutil.rmtree`` refuses it)."""
    from transfer_lib.utils.atomic import process_alive

    out.parent.mkdir(parents=True, exist_ok=True)
    for old in _leftovers(out, "tmp") + _leftovers(out, "old"):
        if not process_alive(int(old.name.rsplit("-", 1)[-1])):
            shutil.rmtree(old, ignore_errors=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def _target(out: str | os.PathLike) -> Path:
    """The folder a set written to ``out`` goes to: absolute, ``.`` and ``..`` taken away, a link
    followed (the set is swapped in for the folder it names, never for the link). Refused
    (DataError) when it is the current folder or holds it: the swap would pull it from under
    the shell."""
    from transfer_lib.utils.errors import DataError

    given = os.fspath(out)
    path = Path(os.path.realpath(given or "."))
    cwd = Path(os.path.realpath(os.getcwd()))
    if path == cwd or path in cwd.parents or not path.name:
        raise DataError(f"--out {given or repr(given)} is the current folder or holds it: the set "
                        f"is drawn beside --out and swapped in for it. Give a folder elsewhere "
                        f"(e.g. --out data/synthetic), or run from another folder.")
    return path


def interrupted_note(root: str | os.PathLike) -> str:
    """For an error about a missing ``root``: a sentence saying that a ``synth`` into it was
    interrupted (its temporary folder is there), or "" when none was."""
    root = Path(root)
    left = _leftovers(root, "tmp")
    if not left:
        return ""
    return (f" A `synth --out {root}` was interrupted before it finished (it left {left[0]}, "
            f"removed by the next run): run it again to write the synthetic set.")


def _write_marker(out: Path, params: dict, state: str) -> None:
    (out / MARKER).write_text(json.dumps({**params, "state": state}, indent=1))


def _label_lines(params: dict, splits: tuple[str, ...] = SPLITS) -> list[str]:
    """The label file's lines of ``splits`` (in :data:`SPLITS` order) of the set ``params``."""
    lines = []
    for split in SPLITS:
        if split in splits:
            labels = split_labels(params[split], split, params["seed"], params["balance"],
                                  params.get("task", "additive"))
            lines += [f"{split}_{i + 1:05d}.jpg {int(k) + 1}" for i, k in enumerate(labels)]
    return lines


def _write_set(out: Path, params: dict, workers: int | None, progress: bool,
               draw: tuple[str, ...] = SPLITS) -> None:
    """Draw the splits ``draw`` of the set described by ``params`` into ``out`` and write the
    label file of every split (its marker says ``incomplete`` until the label file is written).
    A split left out of ``draw`` must already be in ``out`` (:func:`_complete_set`)."""
    seed, balance = params["seed"], params["balance"]
    folder = out / "basic" / "Image" / "aligned"
    folder.mkdir(parents=True, exist_ok=True)
    (out / "basic" / "EmoLabel").mkdir(parents=True, exist_ok=True)
    _write_marker(out, params, "incomplete")
    jobs = []
    workers = workers or min(2, os.cpu_count() or 1)
    total = sum(params[split] for split in draw)
    for split in draw:
        labels = split_labels(params[split], split, seed, balance, params["task"])
        items = list(enumerate(labels.tolist()))
        step = chunk_size(len(items), workers, 200)
        jobs += [(str(folder), split, params, items[i:i + step])
                 for i in range(0, len(items), step)]
    t0 = time.perf_counter()
    done = 0

    def report(n_done: int) -> None:
        nonlocal done
        done += n_done
        if progress:
            print(f"\r{done}/{total} images", end="", flush=True)

    map_chunks(_write_chunk, jobs, workers, on_result=report)
    if progress:
        print(f"\rdrew {total} images in {time.perf_counter() - t0:.1f} s")
    (out / "basic" / "EmoLabel" / "list_patition_label.txt").write_text(
        "\n".join(_label_lines(params)) + "\n")
    _write_marker(out, params, "complete")


def _without_val(marker: dict) -> dict:
    """A marker's parameters less what the validation split added (``val``, ``splits``)."""
    return {k: v for k, v in marker.items() if k not in ("val", "splits", "state")}


def _completable(root: Path, marker: dict | None, params: dict) -> bool:
    """Whether the set at ``root`` is ``params``'s set written before the validation split:
    complete, same parameters otherwise, and its label file exactly the train and test lines
    this version writes (so its images are those too)."""
    if marker is None or marker.get("state") != "complete" or "val" in marker.get("splits", ()):
        return False
    if _without_val(marker) != _without_val(params):
        return False
    try:
        text = (root / "basic" / "EmoLabel" / "list_patition_label.txt").read_text()
    except (OSError, UnicodeDecodeError):
        return False
    return text == "\n".join(_label_lines(params, ("train", "test"))) + "\n"


def _complete_set(root: Path, tmp: Path, params: dict, workers: int | None) -> None:
    """Write into ``tmp`` the set at ``root`` (written before the validation split) with its
    ``val`` images added: the train and test images are linked (copied where links fail), never
    drawn again; the label file and the marker are new files, so the set at ``root`` is not
    touched until ``tmp`` is swapped in."""
    src, dst = root / "basic" / "Image" / "aligned", tmp / "basic" / "Image" / "aligned"
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name.startswith(("train_", "test_")) and f.is_file():
            link_or_copy(f, dst / f.name)
    _write_set(tmp, params, workers, progress=False, draw=("val",))


def _swap_in(tmp: Path, root: Path) -> None:
    """Put the finished set ``tmp`` at ``root``: files of ``root`` that a set does not hold (the
    user's own, :func:`foreign_files`) are moved into ``tmp`` first, then the old folder is
    renamed aside, ``tmp`` renamed into place and the old one deleted (a reader sees the old set,
    none, or the new one; nothing of the user's is lost)."""
    if root.is_dir():
        for rel in foreign_files(root):
            target = tmp / rel
            if target.exists():  # check_target refuses these; never overwrite either side
                from transfer_lib.utils.errors import DataError

                raise DataError(f"{root / rel} is in the way of the new set's {rel}: move it "
                                f"and run again (nothing was changed)")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(root / rel, target)
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    if root.exists():
        os.replace(root, old)
    os.replace(tmp, root)
    shutil.rmtree(old, ignore_errors=True)


def ensure_synthetic(root: str | os.PathLike = "data/synthetic", train: int = DEFAULT_TRAIN,
                     test: int = DEFAULT_TEST, seed: int = 0, occlusion: float | None = None,
                     balance: str = "rafdb", workers: int | None = None,
                     val: int | None = DEFAULT_VAL, task: str = "additive",
                     part_occlusion: float = 0.0) -> Path:
    """The synthetic set at ``root``, generated on first use and reused afterwards.

    A relative ``root`` is taken from the project root (the folder with ``pyproject.toml``), so
    chapters and tests share one copy. ``root/synthetic.json`` records the generation parameters;
    if they differ from the ones asked for, the set is generated again. A set written before the
    validation split (its marker has no ``val``) with the parameters asked for otherwise is
    completed: its ``val`` images are drawn, its train and test images kept (they are the same
    bytes), and one line on stderr says so. Generation happens in a temporary sibling folder
    that is renamed into place, so a half-written set is never used. A folder at ``root`` that
    is not a synthetic set is refused (DataError), never replaced.
    """
    from transfer_lib.train.profiles import project_root

    root = Path(root)
    if not root.is_absolute():
        root = project_root() / root
    params = _params(train, test, seed, occlusion, balance, workers, val, task, part_occlusion)

    def ready() -> bool:
        marker = read_marker(root)
        return marker is not None and marker.pop("state") == "complete" and marker == params

    if ready():
        return root
    check_target(root)
    marker = read_marker(root)
    complete = _completable(root, marker, params)
    if marker is not None and marker.get("state") == "complete" \
            and "val" not in marker.get("splits", ()):
        what = (f"completing it with {params['val']} val images (train and test kept)" if complete
                else "regenerating it (its parameters differ from the ones asked for)")
        print(f"{root} holds a synthetic set written before the validation split: {what}",
              file=sys.stderr, flush=True)
    tmp = _fresh_tmp(root)
    try:
        if complete:
            _complete_set(root, tmp, params, workers)
        else:
            _write_set(tmp, params, workers, progress=False)
        if not ready():  # another process may have finished first
            _swap_in(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
