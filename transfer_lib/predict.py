"""Find the faces in photos and print their expression probabilities.

    python -m transfer_lib predict photo.jpg --checkpoint runs/cpu/best.pt
    python -m transfer_lib predict photo.jpg --official RAFa_2_6131_ep33_90p91.pdparams --json out.json
    python -m transfer_lib predict crop.png --checkpoint best.pt --no-detect
    python -m transfer_lib predict photos/ --checkpoint best.pt      # every image in a folder

Each face is found with scikit-image's LBP frontal-face cascade, aligned by its eyes like
RAF-DB's aligned images (100 x 100, eyes level; from the detector box when the eyes are not
found, which is said), then passed through the model's own eval transform. ``--no-detect``
treats each whole image as an already aligned face (RAF-DB's aligned images, the synthetic set,
drawn faces the detector misses). A folder stands for the images in it (.jpg, .jpeg, .png, .bmp,
.webp, .tif, .tiff; not its sub-folders). Each image is read as it is shown: EXIF orientation
applied (phone portraits), 16-bit greyscale scaled to 8 bits, transparency laid over white,
palette, CMYK and greyscale converted to RGB (``transfer_lib.data.faces.load_image``). An image
without a face, one that cannot be read, or one under 24 pixels on its shorter side (too small
to hold a face; with ``--no-detect`` too) prints why and the command exits 1 after processing
the others.

Each class is printed with its index (the model's output) and its label in the data set's own
files (RAF-DB 1..7, AffectNet's expression code, FERPlus's column); ``--json`` writes, per face,
``probabilities`` (name -> probability, most likely first), ``expression``, and ``classes``:
``[{"index", "name", "dataset_label", "probability"}, ...]`` in index order.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from transfer_lib.utils.errors import TransferError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                        help="photos to read, or folders of them")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, metavar="PATH",
                        help="a checkpoint of this project (RUN_DIR/best.pt)")
    source.add_argument("--official", type=Path, metavar="PDPARAMS",
                        help="the authors' released RAF-DB weights (Paddle .pdparams)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--save-crops", type=Path, metavar="DIR",
                        help="save each aligned face as DIR/IMAGESTEM_faceN.png (images that "
                             "share a stem: IMAGESTEM-2_faceN.png, ...)")
    parser.add_argument("--no-detect", action="store_true",
                        help="treat each whole image as one aligned face")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


#: What a folder given as IMAGE stands for: its files with these suffixes.
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def expand_images(paths: list[Path]) -> list[Path]:
    """``paths`` with each folder replaced by the images in it (sorted by name); a folder
    without images, or ``-`` (standard input, not read) where no file has that name, raises
    TransferError."""
    out: list[Path] = []
    for path in paths:
        if str(path) == "-" and not path.exists():
            raise TransferError("IMAGE '-': reading a photo from standard input is not "
                                "supported; give an image file or a folder of images "
                                "(save the photo to a file first)")
        if not path.is_dir():
            out.append(path)
            continue
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise TransferError(f"{path} is a folder without images ({', '.join(IMAGE_SUFFIXES)}): "
                                f"give image files, e.g. {path}/*.jpg, or a folder holding some")
        out += found
    return out


def crop_names(images: list[Path]) -> dict[Path, str]:
    """The IMAGESTEM of each image's ``--save-crops`` files: its stem, or, for images that
    share one (``a/face.jpg``, ``b/face.jpg``, ``a/face.png``), the stem with ``-2``, ``-3``
    ... after the first, so that no crop replaces another's. An image given twice is one."""
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for path in images:
        if path in names:
            continue
        stem, n = path.stem, 1
        while stem in taken:
            n += 1
            stem = f"{path.stem}-{n}"
        taken.add(stem)
        names[path] = stem
    return names


def check_crops_spare_images(folder: Path, images: list[Path], stems: dict[Path, str]) -> None:
    """Refuse a ``--save-crops`` folder where a crop would replace one of the images read
    (``predict photos --save-crops photos`` wrote a.png's crop over photos/a_face1.png)."""
    from transfer_lib.cli import same_file

    source = {stem: path for path, stem in stems.items()}
    for image in images:
        m = re.fullmatch(r"(.+)_face[0-9]+\.png", image.name)
        if m and m[1] in source and same_file(image.parent, folder):
            raise TransferError(f"--save-crops {folder}: a crop of {source[m[1]]} saved there "
                                f"would replace {image}, one of the images read. Give another "
                                f"folder for the crops")


def _load_model(args: argparse.Namespace):
    from transfer_lib.train.distributed import pick_device

    device = pick_device(args.device)
    if args.official is not None:
        from transfer_lib.weights.checkpoint import check_finite_weights
        from transfer_lib.weights.convert import load_official_transfer

        model = load_official_transfer(args.official)
        check_finite_weights(model.state_dict(), args.official)
        return model.to(device)
    from transfer_lib.weights.checkpoint import model_from_checkpoint

    return model_from_checkpoint(args.checkpoint, map_location=device)


def _eval_transform(config):
    from transfer_lib.data.transforms import eval_transform

    return eval_transform(config)


def predict_faces(model, crops, device: str = "cpu") -> list[dict[str, float]]:
    """Class probabilities for aligned face crops (each (H, W, 3) uint8), one dict per crop."""
    import torch
    from PIL import Image

    transform = _eval_transform(model.config)
    batch = torch.stack([transform(Image.fromarray(c)) for c in crops]).to(device)
    with torch.inference_mode():
        probs = model(batch).softmax(dim=1).cpu()
    names = model.config.class_names
    return [{names[i]: float(p[i]) for i in range(len(names))} for p in probs]


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    try:
        from transfer_lib.data import faces as face_lib
    except ModuleNotFoundError as err:  # scikit-image / scipy are in the [predict] extra
        raise TransferError(f"predict needs {err.name}: pip install 'transfer_lib[predict]'") from None

    from transfer_lib.cli import check_output_dir, check_output_file

    check_output_dir(args.save_crops, "--save-crops")
    images = expand_images(args.images)
    check_output_file(args.json, "--json", [("--checkpoint", args.checkpoint),
                                            ("--official", args.official),
                                            *(("IMAGE", image) for image in images)])
    crop_stems = crop_names(images)
    if args.save_crops is not None:
        check_crops_spare_images(args.save_crops, images, crop_stems)
    model = _load_model(args)
    from transfer_lib.data.labels import class_table, label_kind

    rows = class_table(model.config.class_names)
    rows_by_name = {row["name"]: row for row in rows}
    kind = label_kind(model.config.class_names)
    results, status = [], 0
    for path in images:
        entry: dict = {"image": str(path), "faces": []}
        results.append(entry)
        try:
            rgb = face_lib.load_image(path)
            face_lib.check_image_size(rgb, str(path))
        except face_lib.ImageError as err:
            entry["error"] = str(err)
            print(entry["error"], file=sys.stderr)
            status = 1
            continue
        if args.no_detect:
            h, w = rgb.shape[:2]
            found = [face_lib.Face((0, 0, w, h))]
            crops = [rgb]
        else:
            found = face_lib.detect_faces(rgb)
            crops = [face_lib.align_face(rgb, f) for f in found]
        if not found:
            entry["error"] = f"no face found in {path}"
            print(entry["error"] + " (frontal faces only; for an aligned face crop use --no-detect)",
                  file=sys.stderr)
            status = 1
            continue
        for i, (face, crop, probs) in enumerate(zip(found, crops, predict_faces(model, crops, args.device))):
            ranked = dict(sorted(probs.items(), key=lambda kv: kv[1], reverse=True))
            expression = next(iter(ranked))
            record = face.to_dict() | {
                "probabilities": ranked, "expression": expression,
                "expression_index": rows_by_name[expression]["index"],
                "expression_dataset_label": rows_by_name[expression]["dataset_label"],
                "dataset_label_kind": kind,
                "classes": [row | {"probability": probs[row["name"]]} for row in rows],
            }
            if args.no_detect:
                record["aligned_by"] = "none (--no-detect: the whole image)"
            if args.save_crops is not None:
                args.save_crops.mkdir(parents=True, exist_ok=True)
                crop_path = args.save_crops / f"{crop_stems[path]}_face{i + 1}.png"
                Image.fromarray(crop).save(crop_path)
                record["crop"] = str(crop_path)
            entry["faces"].append(record)
            x, y, w, h = face.box
            print(f"{path}  face {i + 1}/{len(found)}  box x={x} y={y} w={w} h={h}  "
                  f"aligned by {record['aligned_by']}")
            for name, p in ranked.items():
                row = rows_by_name[name]
                own = f", {kind} {row['dataset_label']}" if kind else ""
                print(f"    {name:<10} {p:6.1%}   (index {row['index']}{own})")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        from transfer_lib.utils.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    return status
