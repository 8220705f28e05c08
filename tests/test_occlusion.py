import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from transfer_lib.cli import main
from transfer_lib.data import build_dataset
from transfer_lib.data.synth import MARKER, PARTS, ensure_synthetic
from transfer_lib.data.transforms import eval_transform
from transfer_lib.evaluate import evaluate
from transfer_lib.evaluate.occlusion import (
    ALIGNED_PART_REGIONS,
    CONDITIONS,
    FILL,
    decode,
    evaluate_occlusion,
    hide_part,
    measure_part_regions,
    occlusion_sets,
    parse_parts,
    part_boxes,
    render_test_face,
    rendered_split,
    synthetic_marker,
)
from transfer_lib.models import build_model
from transfer_lib.train.profiles import PROFILES
from transfer_lib.utils.errors import DataError, TransferError
from transfer_lib.weights.checkpoint import save_atomic


@pytest.fixture(scope="module")
def smoke_root():
    p = PROFILES["smoke"]
    return ensure_synthetic(p.synthetic_root, train=p.synthetic_train, test=p.synthetic_test)


@pytest.fixture()
def plain_rafdb(smoke_root, tmp_path):
    """The smoke set without its marker: to the library, an aligned RAF-DB of its own."""
    root = tmp_path / "rafdb"
    shutil.copytree(smoke_root / "basic", root / "basic")
    return root


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model("ir50", "tiny").eval()


def test_rerendered_none_is_the_file_on_disk(smoke_root):
    marker = synthetic_marker(smoke_root)
    assert marker is not None and synthetic_marker(smoke_root / "basic") == marker
    for split in ("test", "train"):
        ds = build_dataset("rafdb", smoke_root, split)
        for i in (0, len(ds) - 1):
            path, label = ds.samples[i]
            index = int(path.name.split("_")[1]) - 1
            assert render_test_face(marker, split, index, label, None) == path.read_bytes()
            hidden = render_test_face(marker, split, index, label, "eyes")
            assert hidden != path.read_bytes()


def test_rendered_split_is_cached_and_matches_the_labels(smoke_root, tmp_path, monkeypatch):
    ds = build_dataset("rafdb", smoke_root, "test")
    jpegs = rendered_split(smoke_root, ds, ["mouth", "nose"], workers=2, cache_dir=tmp_path)
    assert set(jpegs) == {"mouth", "nose"} and all(len(j) == len(ds) for j in jpegs.values())
    on_disk = np.stack([np.asarray(ds.load_image(i)) for i in range(len(ds))])
    for files in jpegs.values():
        arr = np.stack([decode(j) for j in files])
        assert arr.shape == on_disk.shape and arr.dtype == np.uint8
        changed = (arr != on_disk).any(axis=(1, 2, 3))
        assert changed.all()  # every face has the part hidden ...
        same = (arr == on_disk).all(axis=-1).mean(axis=(1, 2))
        assert (same > 0.5).all()  # ... and stays the same face elsewhere

    def boom(*a, **k):
        raise AssertionError("cached faces were drawn again")

    monkeypatch.setattr("transfer_lib.evaluate.occlusion._render_chunk", boom)
    again = rendered_split(smoke_root, ds, ["nose"], cache_dir=tmp_path)
    assert again["nose"] == jpegs["nose"]


def test_rendering_refuses_another_generator(smoke_root, tmp_path):
    root = tmp_path / "synth"
    shutil.copytree(smoke_root / "basic", root / "basic")
    marker = json.loads((smoke_root / MARKER).read_text())
    (root / MARKER).write_text(json.dumps({**marker, "version": 999}))
    ds = build_dataset("rafdb", root, "test")
    with pytest.raises(DataError, match="generator version 999"):
        rendered_split(root, ds, ["eyes"], cache_dir=tmp_path / "c")
    # same version, but the files were drawn otherwise: the first face does not come out again
    (root / MARKER).write_text(json.dumps(marker))
    first = ds.samples[0][0]
    Image.new("RGB", (100, 100), (9, 9, 9)).save(first, quality=90)
    with pytest.raises(DataError, match="differs from the face its seed draws"):
        rendered_split(root, ds, ["eyes"], cache_dir=tmp_path / "c")


def test_grey_box_changes_only_the_part_region(plain_rafdb):
    sets, method = occlusion_sets(plain_rafdb, "rafdb", "test")
    assert method == "grey box" and list(sets) == list(CONDITIONS)
    for i in (0, 7):
        base = np.asarray(sets["none"][i][0])
        for part in PARTS:
            img = np.asarray(sets[part][i][0])
            inside = np.zeros(base.shape[:2], bool)
            for x0, y0, x1, y1 in part_boxes(part, base.shape[1], base.shape[0]):
                inside[y0:y1, x0:x1] = True
            assert inside.any() and (img[inside] == FILL).all()
            assert np.array_equal(img[~inside], base[~inside])
            assert sets[part][i][1] == sets["none"][i][1]
    # both image types, and a copy: the input is left as it was
    arr = np.full((50, 40, 3), 7, np.uint8)
    out = hide_part(arr, "mouth")
    assert (arr == 7).all() and (out == FILL).any() and out.shape == arr.shape
    pil = hide_part(Image.fromarray(arr), "mouth")
    assert isinstance(pil, Image.Image) and np.array_equal(np.asarray(pil), out)


def test_regions_were_measured_from_the_generator():
    measured = measure_part_regions(n=12)
    for part, boxes in ALIGNED_PART_REGIONS.items():
        assert len(measured[part]) == len(boxes)
        for box, got in zip(boxes, measured[part]):
            assert np.allclose(box, got, atol=0.1), (part, box, got)
            x0, y0, x1, y1 = box
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    assert ALIGNED_PART_REGIONS["eyes"][0][1] < ALIGNED_PART_REGIONS["mouth"][0][1]


@pytest.mark.parametrize("dataset_kind", ["synthetic", "plain"])
def test_evaluate_occlusion_shape_and_ranges(dataset_kind, smoke_root, plain_rafdb, tiny_model):
    root = smoke_root if dataset_kind == "synthetic" else plain_rafdb
    result = evaluate_occlusion(tiny_model, root, batch_size=16)
    table = result["occlusion"]
    assert list(table) == list(CONDITIONS) == result["conditions"]
    assert result["method"] == ("re-rendered" if dataset_kind == "synthetic" else "grey box")
    assert (result["regions"] is None) == (dataset_kind == "synthetic")
    for m in table.values():
        assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["mean_class_accuracy"] <= 1.0
        assert len(m["per_class_accuracy"]) == len(result["class_names"]) == 7
        assert all(a is None or 0.0 <= a <= 1.0 for a in m["per_class_accuracy"])
    # "none" is the plain evaluation of the files on disk
    plain = evaluate(tiny_model, build_dataset("rafdb", root, "test",
                                               eval_transform(tiny_model.config)))
    assert table["none"]["accuracy"] == plain["accuracy"]
    assert result["num_samples"] == plain["num_samples"]
    json.dumps(result)  # JSON-able as it is


def test_parse_parts():
    assert parse_parts(None) == PARTS
    assert parse_parts("mouth, eyes") == ("eyes", "mouth")  # the order of PARTS
    with pytest.raises(TransferError, match="unknown part.*chin"):
        parse_parts("eyes,chin")
    with pytest.raises(TransferError, match="none given"):
        parse_parts(",")


@pytest.fixture(scope="module")
def checkpoint(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("occ") / "last.pt"
    save_atomic({"model": tiny_model.state_dict(), "config": tiny_model.config.to_dict()}, path)
    return path


def test_eval_cli_occlusion(smoke_root, checkpoint, tmp_path, capsys):
    js = tmp_path / "o.json"
    assert main(["eval", "--data", str(smoke_root), "--checkpoint", str(checkpoint), "--occlusion",
                 "--parts", "mouth,eyes", "--json", str(js), "--batch-size", "32"]) == 0
    printed = capsys.readouterr().out
    result = json.loads(js.read_text())
    assert list(result["occlusion"]) == ["none", "eyes", "mouth"]
    assert result["source"] == str(checkpoint) and "mouth" in printed and "drop" in printed
    assert result["classes"][0] == {"index": 0, "name": "Surprise", "dataset_label": 1}
    assert "0 Surprise (RAF-DB label 1)" in printed
    assert result["checkpoint"]["kind"] == "other"  # saved by hand: no record of its selection


def test_eval_cli_occlusion_errors(smoke_root, checkpoint, tmp_path, capsys):
    base = ["eval", "--data", str(smoke_root), "--checkpoint", str(checkpoint)]
    assert main([*base, "--occlusion", "--parts", "eyes,chin"]) == 2
    assert "unknown part(s) chin" in capsys.readouterr().err
    assert main([*base, "--parts", "eyes"]) == 2
    assert "go with --occlusion" in capsys.readouterr().err
    # a data set without a test split
    root = tmp_path / "train-only"
    shutil.copytree(smoke_root / "basic", root / "basic")
    labels = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    labels.write_text("".join(line + "\n" for line in labels.read_text().splitlines()
                              if line.startswith("train_")))
    assert main(["eval", "--data", str(root), "--checkpoint", str(checkpoint), "--occlusion"]) == 2
    assert "no 'test_' images" in capsys.readouterr().err
    assert main(["eval", "--data", str(tmp_path / "nowhere"), "--checkpoint", str(checkpoint),
                 "--occlusion"]) == 2
    assert "not found" in capsys.readouterr().err


def test_planted_sets_rerender_their_val_faces_and_stale_caches_go(tmp_path):
    """On a set written with --part-occlusion, a val face drawn again with nothing more hidden
    is the file on disk (its planted part included); a killed run's cache temporary is removed."""
    import os

    from transfer_lib.data import build_dataset
    from transfer_lib.data.synth import generate, read_marker
    from transfer_lib.evaluate.occlusion import (
        occlusion_cache_dir,
        render_test_face,
        rendered_split,
    )

    root = generate(tmp_path / "p", train=7, test=7, val=14, seed=0, workers=1,
                    task="occlusion-shift", part_occlusion=1.0)
    marker = read_marker(root)
    marker.pop("state")
    val = build_dataset("rafdb", root, "val")
    for i, (path, label) in enumerate(val.samples):
        assert render_test_face(marker, "val", i, int(label), None) == path.read_bytes()
    folder = occlusion_cache_dir(root, json.loads((root / "synthetic.json").read_text()), "val")
    folder.mkdir(parents=True)
    dead = folder / ".eyes.999999999.npz"  # the earlier naming, of a process that is gone
    dead.write_bytes(b"x")
    live = folder / f".mouth.{os.getpid()}.npz"
    live.write_bytes(b"x")
    rendered_split(root, val, ["eyes"], workers=1)
    assert not dead.exists() and live.exists()
