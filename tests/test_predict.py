"""``python -m transfer_lib predict`` end to end with a tiny checkpoint made here."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import skimage  # noqa: F401,E402  (the predict extra; installed by make setup)
import torch
from PIL import Image
from skimage import data  # noqa: E402

from transfer_lib.cli import main  # noqa: E402
from transfer_lib.models import build_model  # noqa: E402
from transfer_lib.weights.checkpoint import save_atomic  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    model = build_model("transfer", "tiny")
    with torch.no_grad():  # the head starts at zero: give it weights so probabilities differ
        model.head.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
        model.head.bias.copy_(torch.linspace(-1, 1, model.config.num_classes))
    save_atomic({"model": model.state_dict(), "config": model.config.to_dict()}, root / "tiny.pt")
    Image.fromarray(data.astronaut()).save(root / "astronaut.jpg")
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(root / "grey.png")
    return root, model.eval()


def test_predict_photo_and_empty_image(files, capsys):
    root, model = files
    out = root / "out.json"
    crops = root / "crops"
    rc = main(["predict", str(root / "astronaut.jpg"), str(root / "grey.png"), "--checkpoint",
               str(root / "tiny.pt"), "--json", str(out), "--save-crops", str(crops)])
    captured = capsys.readouterr()
    assert rc == 1  # one image had no face, the other was still processed
    assert f"no face found in {root / 'grey.png'}" in captured.err
    assert "face 1/1" in captured.out and "aligned by eyes" in captured.out
    results = json.loads(out.read_text())
    assert [r["image"] for r in results] == [str(root / "astronaut.jpg"), str(root / "grey.png")]
    assert results[1]["faces"] == [] and "no face found" in results[1]["error"]
    face = results[0]["faces"][0]
    probs = face["probabilities"]
    assert list(probs) == sorted(probs, key=probs.get, reverse=True)  # sorted, most likely first
    assert set(probs) == set(model.config.class_names) and abs(sum(probs.values()) - 1) < 1e-5
    assert face["expression"] == next(iter(probs))
    # the printed order is the same, and matches the model run on the saved crop
    printed = [line.split()[0] for line in captured.out.splitlines() if line.startswith("    ")]
    assert printed == list(probs)
    # each class with its index and RAF-DB's label number, in text and JSON
    assert "Happiness" in captured.out and "(index 3, RAF-DB label 4)" in captured.out
    assert [c["index"] for c in face["classes"]] == list(range(7))
    assert [c["dataset_label"] for c in face["classes"]] == list(range(1, 8))
    assert all(c["probability"] == probs[c["name"]] for c in face["classes"])
    top = face["classes"][face["expression_index"]]
    assert top["name"] == face["expression"]
    assert face["expression_dataset_label"] == top["index"] + 1
    assert face["dataset_label_kind"] == "RAF-DB label"
    crop = np.asarray(Image.open(face["crop"]))
    assert crop.shape == (100, 100, 3)
    from transfer_lib.data.transforms import eval_transform

    with torch.no_grad():
        expected = model(eval_transform(model.config)(Image.fromarray(crop))[None]).softmax(1)[0]
    names = model.config.class_names
    for i, name in enumerate(names):
        assert abs(probs[name] - float(expected[i])) < 1e-5


def test_predict_no_detect_on_synthetic_face(files, capsys, tmp_path):
    root, _ = files
    from transfer_lib.data import synth
    Image.fromarray(synth.render_face("Happiness", seed=1)).save(tmp_path / "synth.png")
    assert main(["predict", str(tmp_path / "synth.png"), "--checkpoint", str(root / "tiny.pt"),
                 "--no-detect"]) == 0
    assert "box x=0 y=0 w=100 h=100" in capsys.readouterr().out


def test_predict_bad_inputs(files, capsys, tmp_path):
    root, _ = files
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    assert main(["predict", str(tmp_path / "broken.jpg"), "--checkpoint", str(root / "tiny.pt")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert main(["predict", str(root / "grey.png"), "--checkpoint", str(tmp_path / "absent.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    with open(tmp_path / "evil.pdparams", "wb") as f:
        pickle.dump({"x": print}, f)
    assert main(["predict", str(root / "grey.png"), "--official", str(tmp_path / "evil.pdparams")]) == 2
    assert "refused" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --checkpoint or --official is required
        main(["predict", str(root / "grey.png")])


def test_predict_reads_images_as_they_are_shown(files, capsys, tmp_path):
    """Each file as users have it (a phone's sideways JPEG with EXIF Orientation 6, a 16-bit PNG,
    a palette PNG, RGBA and LA with a transparent band, CMYK) beside the upright 8-bit RGB image
    it shows: the same face at the same box with the same probabilities. The pixels are
    identical by construction (the JPEG's reference is its own decoded pixels turned by hand), so
    the tolerance, 1e-6, is for float32 noise only; a wrong turn or a clipped 16-bit image moves
    the box or finds no face at all."""
    root, _ = files
    # a portrait, 192 x 256 (half size: the detector takes a second or more per larger image)
    upright = np.asarray(Image.fromarray(data.astronaut()[:, 64:448]).resize((192, 256), Image.LANCZOS))
    grey = np.asarray(Image.fromarray(upright).convert("L"))
    grey3 = np.repeat(grey[..., None], 3, axis=-1)
    pairs = []

    def save(name, pixels, **kw):
        Image.fromarray(np.ascontiguousarray(pixels)).save(tmp_path / name, **kw)
        return tmp_path / name

    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    phone = save("phone.jpg", np.rot90(upright, k=1), quality=95, exif=exif)
    with Image.open(phone) as im:
        stored = np.asarray(im.convert("RGB"))
    pairs.append((phone, save("phone_shown.png", np.rot90(stored, k=-1))))
    pairs.append((save("grey16.png", grey.astype(np.uint16) * 257), save("grey8.png", grey3)))
    palette = Image.fromarray(upright).quantize(256)
    palette.save(tmp_path / "palette.png")
    pairs.append((tmp_path / "palette.png", save("palette_rgb.png", palette.convert("RGB"))))
    alpha = np.full(grey.shape, 255, np.uint8)
    alpha[:16] = 0  # a transparent band at the top, shown white
    white_top = upright.copy()
    white_top[:16] = 255
    pairs.append((save("rgba.png", np.dstack([upright, alpha])), save("rgba_shown.png", white_top)))
    grey_white_top = grey3.copy()
    grey_white_top[:16] = 255
    pairs.append((save("la.png", np.dstack([grey, alpha])), save("la_shown.png", grey_white_top)))
    Image.fromarray(upright).convert("CMYK").save(tmp_path / "cmyk.tif")
    pairs.append((tmp_path / "cmyk.tif", save("rgb.png", upright)))

    out = tmp_path / "out.json"
    images = [str(p) for pair in pairs for p in pair]
    assert main(["predict", *images, "--checkpoint", str(root / "tiny.pt"), "--json", str(out)]) == 0
    capsys.readouterr()
    results = {r["image"]: r for r in json.loads(out.read_text())}
    for given, shown in pairs:
        got, expected = results[str(given)]["faces"], results[str(shown)]["faces"]
        assert len(got) == len(expected) == 1, given.name
        assert got[0]["box"] == expected[0]["box"], given.name
        for name, p in expected[0]["probabilities"].items():
            assert abs(got[0]["probabilities"][name] - p) <= 1e-6, (given.name, name)


def test_predict_refuses_images_too_small_for_a_face(files, capsys, tmp_path):
    root, _ = files
    Image.new("RGB", (1, 1), (200, 150, 120)).save(tmp_path / "dot.png")
    out = tmp_path / "out.json"
    for extra in ([], ["--no-detect"]):  # --no-detect once scored a 1 x 1 image silently
        assert main(["predict", str(tmp_path / "dot.png"), "--checkpoint", str(root / "tiny.pt"),
                     "--json", str(out), *extra]) == 1
        captured = capsys.readouterr()
        assert f"{tmp_path / 'dot.png'} is 1 x 1 pixels" in captured.err
        assert "at least 24 pixels" in captured.err and "Traceback" not in captured.err
        assert captured.out == ""
        [entry] = json.loads(out.read_text())
        assert entry["faces"] == [] and "1 x 1 pixels" in entry["error"]
    # a FER2013/FERPlus-sized face (48 x 48), smaller than the model's input, is still scored
    from transfer_lib.data import synth

    Image.fromarray(synth.render_face("Happiness", seed=1)).resize((48, 48)).save(tmp_path / "f.png")
    assert main(["predict", str(tmp_path / "f.png"), "--checkpoint", str(root / "tiny.pt"),
                 "--no-detect"]) == 0
    assert "box x=0 y=0 w=48 h=48" in capsys.readouterr().out
