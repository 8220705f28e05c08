"""synth --task: the relational task (classes told apart by relations only), the
occlusion-shift task (no occluder in training), the planted part occlusion, the markers."""

import itertools
import json

import numpy as np
import pytest

from transfer_lib.cli import main
from transfer_lib.data import build_dataset
from transfer_lib.data.synth import (
    PARTS,
    RELATIONAL_CLASSES,
    RELATIONAL_CUES,
    RELATIONAL_PARTS,
    class_counts,
    ensure_synthetic,
    generate,
    hidden_part,
    read_marker,
    relational_cap,
    relational_states,
    sample_face,
)
from transfer_lib.utils.errors import TransferError


def _state(cues: dict, part: str) -> int:
    """Which of its two states a relational part shows (the sign of its one cue)."""
    (name, low), (_, high) = (next(iter(c.items())) for c in RELATIONAL_CUES[part])
    rest = {"brow_raise": 0.0, "eye_open": 1.0, "mouth_curve": 0.0}[name]
    return int(cues[name] - rest > 0) if high > 0 else int(cues[name] - rest < 0)


def test_relational_classes_are_relations_and_no_part_tells_the_class():
    rng = np.random.default_rng(0)
    raised = np.zeros((4, 3))
    agree = 0
    for k in range(4):
        for _ in range(300):
            spec = sample_face(k, rng, occlusion=0.0, task="relational")
            s = {p: _state(spec.cues, p) for p in ("brows", "eyes")}
            # the class says whether brows and eyes agree (the mouth's cue also carries the
            # identity's resting curve: left out here); jitter flips a state now and then
            agree += (s["brows"] == s["eyes"]) == (RELATIONAL_CLASSES[k] in ("all agree",
                                                                            "mouth odd"))
            raised[k, 0] += s["brows"]
            raised[k, 1] += s["eyes"]
            raised[k, 2] += spec.cues["mouth_curve"] > 0
    assert agree / 1200 > 0.98, agree
    share = raised / 300
    # each part shows each state in about half the faces of every class (binomial sd 0.029)
    assert np.all(np.abs(share - 0.5) < 0.1), share


def test_relational_cap_is_exact_and_reached():
    cap = relational_cap()
    assert cap == dict(chance=0.25, one_part=0.25, two_parts=0.5, per_part_sum=0.625)
    combos = [(k, b) for k in range(4) for b in (0, 1)]
    sign = lambda k, b: np.array([2 * relational_states(k, b)[p] - 1  # noqa: E731
                                  for p in RELATIONAL_PARTS])

    def right(c, w):  # combinations an affine per-part scorer answers right
        return sum(int(np.argmax([c[j] + w[j] @ sign(k, b) for j in range(4)]) == k)
                   for k, b in combos)
    # the construction: "all agree" gets both of its combinations, each other class one
    w = [np.zeros(3)] + [0.5 * sign(k, 1) for k in (1, 2, 3)]
    assert right([1.0, 0, 0, 0], w) == 5
    # and nothing does better: 20000 random scorers never exceed 5 of 8
    rng = np.random.default_rng(1)
    assert max(right(rng.normal(size=4), rng.normal(size=(4, 3))) for _ in range(20000)) <= 5
    # the classes really are the 8 combinations, two each, mirror images of each other
    assert sorted(tuple(sign(k, b)) for k, b in combos) == \
        sorted(itertools.product((-1, 1), repeat=3))
    assert all((sign(k, 0) == -sign(k, 1)).all() for k in range(4))


def test_relational_set_uses_four_labels_equally(tmp_path):
    root = generate(tmp_path / "rel", train=16, test=8, val=8, seed=0, workers=1,
                    task="relational")
    marker = read_marker(root)
    assert marker["task"] == "relational" and marker["occlusion"] == 0.0
    assert marker["balance"] == "uniform"
    train = build_dataset("rafdb", root, "train")
    assert np.bincount(train.targets, minlength=7).tolist() == [4, 4, 4, 4, 0, 0, 0]
    assert class_counts(16, "rafdb", "relational") == [4, 4, 4, 4, 0, 0, 0]


def test_additive_sets_are_unchanged_by_the_task_option(tmp_path):
    a = generate(tmp_path / "a", train=7, test=7, val=0, seed=2, workers=1)
    b = generate(tmp_path / "b", train=7, test=7, val=0, seed=2, workers=1, task="additive",
                 occlusion=0.3)
    files = lambda r: {f.name: f.read_bytes()  # noqa: E731
                       for f in (r / "basic" / "Image" / "aligned").iterdir()}
    assert files(a) == files(b)
    assert read_marker(a)["task"] == "additive" and read_marker(a)["occlusion"] == 0.3


def test_a_marker_from_before_the_tasks_is_additive_and_reused(tmp_path):
    root = ensure_synthetic(tmp_path / "s", train=7, test=7, seed=0, workers=1)
    path = root / "synthetic.json"
    old = {k: v for k, v in json.loads(path.read_text()).items()
           if k not in ("task", "part_occlusion")}
    path.write_text(json.dumps(old))
    stamp = path.stat().st_mtime_ns
    assert ensure_synthetic(tmp_path / "s", train=7, test=7, seed=0, workers=1) == root
    assert path.stat().st_mtime_ns == stamp  # read as additive: not written again


def test_occlusion_shift_has_no_occluder_and_refuses_one(tmp_path):
    root = generate(tmp_path / "o", train=14, test=7, val=7, seed=0, workers=1,
                    task="occlusion-shift")
    assert read_marker(root)["occlusion"] == 0.0
    with pytest.raises(TransferError, match="no occluder"):
        generate(tmp_path / "x", train=7, test=7, task="occlusion-shift", occlusion=0.3)


def test_planted_part_occlusion_hides_train_and_val_parts_only(tmp_path):
    drawn = [hidden_part(0, split, i, 0.3) for split in ("train", "val") for i in range(400)]
    share = sum(p is not None for p in drawn) / len(drawn)
    assert 0.25 < share < 0.35 and set(drawn) == {None, *PARTS}
    assert all(hidden_part(0, "test", i, 1.0) is None for i in range(50))
    plain = generate(tmp_path / "p", train=7, test=7, val=0, seed=0, workers=1,
                     task="occlusion-shift")
    hidden = generate(tmp_path / "h", train=7, test=7, val=0, seed=0, workers=1,
                      task="occlusion-shift", part_occlusion=1.0)
    folder = lambda r: r / "basic" / "Image" / "aligned"  # noqa: E731
    for f in folder(plain).iterdir():
        same = f.read_bytes() == (folder(hidden) / f.name).read_bytes()
        assert same == f.name.startswith("test_"), f.name


def test_synth_cli_task_option(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "r"), "--train", "8", "--test", "4",
                 "--task", "relational", "--workers", "1"]) == 0
    assert read_marker(tmp_path / "r")["task"] == "relational"
    with pytest.raises(SystemExit) as err:
        main(["synth", "--out", str(tmp_path / "q"), "--task", "nonsense"])
    assert err.value.code == 2


def test_negative_zero_shares_are_recorded_as_zero(tmp_path):
    """``--occlusion -0`` passes [0, 1]; the marker said ``-0.0`` (another cache key)."""
    root = generate(tmp_path / "z", train=2, test=1, val=0, workers=1, task="occlusion-shift",
                    occlusion=-0.0, part_occlusion=-0.0)
    assert "-0" not in (root / "synthetic.json").read_text()
    assert main(["synth", "--out", str(tmp_path / "c"), "--train", "2", "--test", "1", "--val",
                 "0", "--workers", "1", "--occlusion", "-0", "--part-occlusion", "-0"]) == 0
    assert "-0" not in (tmp_path / "c" / "synthetic.json").read_text()


def test_relational_rafdb_balance_and_faces_drawn_again(tmp_path):
    """``--task relational --balance rafdb`` writes 4 uniform classes and says uniform in the
    marker; the occlusion test draws each face again with the relational task: with nothing
    hidden it is the file on disk, byte for byte, in every split."""
    from transfer_lib.evaluate.occlusion import render_test_face

    root = tmp_path / "rel"
    assert main(["synth", "--out", str(root), "--task", "relational", "--balance", "rafdb",
                 "--train", "8", "--test", "4", "--val", "4", "--workers", "1"]) == 0
    marker = read_marker(root)
    assert marker["balance"] == "uniform" and marker["task"] == "relational"
    for split in ("train", "test", "val"):
        ds = build_dataset("rafdb", root, split)
        assert np.bincount(ds.targets, minlength=7).tolist()[4:] == [0, 0, 0]
        for i, (path, label) in enumerate(ds.samples):
            assert path.name == f"{split}_{i + 1:05d}_aligned.jpg"
            assert render_test_face(marker, split, i, int(label), None) == path.read_bytes()


def test_render_face_draws_relational_faces():
    from transfer_lib.data.synth import render_face

    a = render_face(1, seed=3, task="relational", nuisance=False)
    b = render_face(1, seed=3, task="relational", nuisance=False)
    assert a.shape == (100, 100, 3) and (a == b).all()
    assert not (a == render_face(1, seed=3, nuisance=False)).all()  # not the additive face
