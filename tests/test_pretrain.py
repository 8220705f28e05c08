"""Face-recognition pretraining on synthetic identities (``transfer_lib.weights.pretrain``) and the
generator's identity faces (``synth.identity_face``): labels are people, not expressions; people
are not the expression set's; the file loads through ``load_ir50_stem``; the cache is reused;
the default expression set is unchanged by the refactor that made identities drawable alone."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import PIL
import pytest
import torch

from transfer_lib.cli import main
from transfer_lib.data import synth
from transfer_lib.models import IR50Stem, build_model
from transfer_lib.utils.errors import TransferError
from transfer_lib.weights import pretrain as pt
from transfer_lib.weights.convert import load_ir50_stem

TINY = dict(identities=4, images=2, held_out=1, epochs=1, batch_size=4)


def _canon(x):
    if isinstance(x, dict):
        return {k: _canon(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return _canon(x.tolist())
    if isinstance(x, (list, tuple)):
        return [_canon(v) for v in x]
    if isinstance(x, float):
        return float(f"{x:.9g}")
    return x


def _spec_hash(spec: synth.FaceSpec) -> str:
    text = json.dumps(_canon(dataclasses.asdict(spec)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# (split, index, label, FaceSpec hash, image hash, JPEG quality) of the default embedded set
# (seed 0, 3000 / 700, occlusion 0.3), computed with the generator before sample_identity was
# factored out. Labels cover Happiness's and Anger's extra draws; train 3 has an occluder.
DEFAULT_SET_REFERENCE = [
    ("train", 0, 3, "7d7a262e6650edf0", "32d03d07a3899742", 91),
    ("train", 7, 0, "66ba4fedcce16b92", "847eb1d98e3ddcca", 82),
    ("train", 123, 4, "cf51044f55834b59", "977412f02eae2158", 86),
    ("test", 1, 3, "5bd1b5c71d9e4e23", "9b3c3a7e293704f8", 93),
    ("test", 699, 3, "c7089868d6254ea9", "41546e04ccdfc6ba", 79),
    ("train", 67, 1, "a372d56c05c1a055", "11eb2a406bc06eb4", 91),
    ("train", 24, 2, "c8e3d4daaa1c8de0", "cfb0c3a24cf132c6", 72),
    ("train", 4, 5, "78facff97280799a", "c83af2e3c58aba90", 83),
    ("train", 3, 6, "ba44d684715fdeb0", "56d15929088f0e8f", 90),
]
#: the image hashes above were computed with this Pillow; drawing may differ in another
REFERENCE_PILLOW = "13.0"


def test_default_set_unchanged():
    labels = {s: synth.split_labels(n, s, 0) for s, n in (("train", 3000), ("test", 700))}
    same_pillow = PIL.__version__.startswith(REFERENCE_PILLOW + ".")
    for split, i, label, spec_hash, image_hash, quality in DEFAULT_SET_REFERENCE:
        assert int(labels[split][i]) == label
        seed = synth._image_seed(0, split, i)
        spec = synth.sample_face(label, np.random.default_rng(seed), occlusion=0.3)
        assert _spec_hash(spec) == spec_hash, (split, i)
        img, q = synth.render_sample(label, seed, 0.3)
        assert q == quality
        if same_pillow:
            assert hashlib.sha256(img.tobytes()).hexdigest()[:16] == image_hash, (split, i)


def test_identity_face_same_person_varied_expression():
    specs = [synth.identity_face(5, j, size=32)[1] for j in range(12)]
    first = specs[0].identity
    for s in specs[1:]:
        assert s.identity.keys() == first.keys()
        for k, v in first.items():
            assert np.array_equal(s.identity[k], v), k
    assert len({s.label for s in specs}) >= 3  # expressions vary, the person does not
    assert len({round(s.pose["angle"], 6) for s in specs}) == 12
    other = synth.identity_face(6, 0, size=32)[1].identity
    assert other["face_w"] != first["face_w"] and not np.array_equal(other["skin"], first["skin"])
    img, _ = synth.identity_face(5, 0, size=32)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert np.array_equal(img, synth.identity_face(5, 0, size=32)[0])


def test_given_identity_sets_rest_curve_and_is_not_mutated():
    person = synth.sample_identity(np.random.default_rng(1))
    kept = {k: np.copy(v) for k, v in person.items()}
    shifted = dict(person, rest_curve=person["rest_curve"] + 0.5)
    a = synth.sample_face("Neutral", np.random.default_rng(9), identity=person)
    b = synth.sample_face("Neutral", np.random.default_rng(9), identity=shifted)
    assert b.cues["mouth_curve"] - a.cues["mouth_curve"] == pytest.approx(0.5)
    assert a.pose == b.pose  # the given identity consumed no draws
    a.identity["face_w"] = -1.0
    assert all(np.array_equal(person[k], kept[k]) for k in kept)


def test_identity_seeds_disjoint_from_expression_set():
    assert synth.IDENTITY_SPAWN_CODE not in synth._SPLIT_CODE.values()
    expression = {tuple(synth._image_seed(s, split, i).generate_state(4))
                  for s in (0, 1) for split in ("train", "test") for i in range(64)}
    identity = {tuple(synth.identity_seed(s, p).generate_state(4)) for s in (0, 1) for p in range(64)}
    images = {tuple(synth.identity_image_seed(s, p, j).generate_state(4))
              for s in (0, 1) for p in range(8) for j in range(8)}
    assert not expression & identity and not expression & images and not identity & images
    # the people themselves differ from the expression set's
    widths = {synth.sample_face(0, np.random.default_rng(synth._image_seed(0, "train", i)))
              .identity["face_w"] for i in range(64)}
    assert not widths & {synth.identity_face(p, 0, size=16)[1].identity["face_w"] for p in range(64)}


def test_render_identities_labels_are_people_and_workers_agree():
    x1, y1 = pt.render_identities(3, [0, 1], size=24, workers=1)
    x2, y2 = pt.render_identities(3, [0, 1], size=24, workers=2)
    assert x1.shape == (6, 3, 24, 24) and x1.dtype == torch.uint8
    assert y1.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    expected = synth.identity_face(1, 1, size=24)[0]
    assert np.array_equal(x1[3].permute(1, 2, 0).numpy(), expected)


def test_identity_net_forward_and_margin():
    net = pt.IdentityNet((8, 16, 16), (1, 1, 1), num_identities=5, embed_dim=12).eval()
    x = torch.randn(3, 3, 32, 32)
    y = torch.tensor([0, 4, 2])
    plain, margined = net(x), net(x, y)
    assert plain.shape == (3, 5)
    diff = plain - margined
    assert torch.allclose(diff[torch.arange(3), y], torch.full((3,), net.scale * net.margin))
    diff[torch.arange(3), y] = 0
    assert torch.all(diff == 0)
    keys = net.backbone_state_dict()
    assert not any(k.startswith(("stem.", "head.")) for k in keys)
    assert {k.split(".")[0] for k in keys} == {"input_layer", "body", "output_layer"}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    return pt.ensure_pretrained(root, workers=1, **TINY)


def test_file_loads_into_tiny_stem(tiny_weights):
    assert tiny_weights.name == pt.weights_name("tiny") == "ir50-tiny-identity.pth"
    state = torch.load(tiny_weights, weights_only=True)
    model = build_model("transfer", "tiny")
    report = load_ir50_stem(model.stem, tiny_weights, verbose=False)
    stem_keys = set(model.stem.state_dict())
    assert set(report.loaded) == stem_keys  # every stem key filled
    # stage 4 (units 8, 9 after the tiny stem's 2 + 2 + 4) and output_layer: left out, reported
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in report.skipped} == {
        "body.8", "body.9", "output_layer.0", "output_layer.3", "output_layer.4"}
    for k, v in model.stem.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert set(state) == stem_keys | set(report.skipped)
    plain = IR50Stem((16, 32, 64), (2, 2, 4))
    load_ir50_stem(plain, tiny_weights, verbose=False)
    record = json.loads(tiny_weights.with_suffix(".json").read_text())
    assert record["params"] == pt.PretrainConfig(**TINY).params()
    assert record["held_out_images"] == 4 and record["train_images"] == 8
    assert 0.0 <= record["identification_accuracy"] <= 1.0
    assert record["torch"] == torch.__version__


def test_cache_reused_and_refreshed(tiny_weights, monkeypatch):
    root = tiny_weights.parent
    before = tiny_weights.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("trained again although the parameters are the same")

    monkeypatch.setattr(pt, "pretrain", no_training)
    assert pt.ensure_pretrained(root, workers=1, **TINY) == tiny_weights
    assert tiny_weights.stat().st_mtime_ns == before
    with pytest.raises(AssertionError, match="trained again"):
        pt.ensure_pretrained(root, workers=1, **dict(TINY, epochs=2))


def test_cli_pretrain(tmp_path, capsys):
    args = ["pretrain", "--out", str(tmp_path), "--identities", "3", "--images", "2",
            "--held-out", "1", "--epochs", "1", "--batch-size", "4", "--workers", "1",
            "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "identification accuracy (held out):" in out
    assert (tmp_path / "ir50-tiny-identity.pth").is_file()
    assert (tmp_path / "ir50-tiny-identity.json").is_file()
    assert main(args[:-1] + ["--identities", "1"]) == 2  # TransferError: at least 2 people
    assert "--identities 1: expected an integer, 2 or more" in capsys.readouterr().err


def test_augment_grayscale_share():
    x = torch.randint(0, 256, (5, 3, 20, 20), dtype=torch.uint8)
    zero, one = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    grey = pt._augment(x, zero, one, 16, torch.Generator().manual_seed(0), grayscale=1.0)
    assert grey.shape == (5, 3, 16, 16)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    colour = pt._augment(x, zero, one, 16, torch.Generator().manual_seed(0), grayscale=0.0)
    assert not torch.equal(colour[:, 0], colour[:, 1])
    with pytest.raises(TransferError, match="grayscale"):
        pt.PretrainConfig(grayscale=1.5)
