import numpy as np
import pytest

from transfer_lib.data import build_dataset, render_face
from transfer_lib.data.synth import (
    PARTS,
    RAFDB_TRAIN_COUNTS,
    class_counts,
    ensure_synthetic,
    generate,
)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("syn") / "a", train=35, test=14, seed=3, workers=2)


def test_synth_read_back_by_rafdb_loader(small_set):
    train = build_dataset("rafdb", small_set, "train")
    test = build_dataset("synthetic", small_set, "test")
    assert (len(train), len(test)) == (35, 14)
    img, _ = train[0]
    assert img.size == (100, 100) and img.mode == "RGB"
    assert np.bincount(train.targets, minlength=7).tolist() == class_counts(35, "rafdb")


def test_synth_deterministic_for_a_seed(small_set, tmp_path):
    again = generate(tmp_path / "b", train=35, test=14, seed=3, workers=1)
    other = generate(tmp_path / "c", train=35, test=14, seed=4, workers=1)
    label_file = "basic/EmoLabel/list_patition_label.txt"
    assert (again / label_file).read_text() == (small_set / label_file).read_text()
    name = "basic/Image/aligned/train_00007_aligned.jpg"
    assert (again / name).read_bytes() == (small_set / name).read_bytes()
    assert (other / name).read_bytes() != (small_set / name).read_bytes()


def test_class_balance():
    assert class_counts(12271, "rafdb") == list(RAFDB_TRAIN_COUNTS)
    assert class_counts(700, "uniform") == [100] * 7
    assert sum(class_counts(1001, "rafdb")) == 1001


def test_render_face_same_identity_with_part_hidden():
    base = render_face("Surprise", seed=11)
    assert base.shape == (100, 100, 3) and base.dtype == np.uint8
    assert (render_face(0, seed=11) == base).all()
    changed = {}
    for part in PARTS:
        hidden = render_face(0, seed=11, occlude_part=part)
        diff = np.abs(hidden.astype(int) - base).sum(-1) > 30
        changed[part] = diff.mean()
        assert 0.005 < changed[part] < 0.3, (part, changed[part])
    with pytest.raises(ValueError):
        render_face(0, seed=11, occlude_part="ears")


def test_classes_differ_at_their_parts():
    # Surprise and Fear differ at the brows (same seed = same identity and pose)
    s = render_face("Surprise", seed=5, intensity=1.0, nuisance=False).astype(int)
    f = render_face("Fear", seed=5, intensity=1.0, nuisance=False).astype(int)
    n = render_face("Neutral", seed=5, intensity=1.0, nuisance=False).astype(int)
    assert np.abs(s - f).sum() > 0 and np.abs(s - n).sum() > np.abs(n - n).sum()


def test_ensure_synthetic_reuses_and_regenerates(tmp_path):
    root = ensure_synthetic(tmp_path / "s", train=14, test=7, seed=0, workers=1)
    marker = root / "synthetic.json"
    stamp = marker.stat().st_mtime_ns
    assert ensure_synthetic(tmp_path / "s", train=14, test=7, seed=0, workers=1) == root
    assert marker.stat().st_mtime_ns == stamp  # reused
    ensure_synthetic(tmp_path / "s", train=14, test=7, seed=1, workers=1)
    assert marker.stat().st_mtime_ns != stamp  # parameters differ: regenerated
    assert len(build_dataset("synthetic", root, "test")) == 7


def test_difficulty_levers(monkeypatch):
    from transfer_lib.data import synth

    lo, hi = synth.INTENSITY_RANGE
    ts = [synth.sample_face(0, np.random.default_rng(s)).intensity for s in range(50)]
    assert lo <= min(ts) and max(ts) <= hi
    pose = [synth.sample_face(0, np.random.default_rng(s)).pose["scale"] for s in range(50)]
    assert synth.FACE_SCALE[0] <= min(pose) and max(pose) <= synth.FACE_SCALE[1]
    base = render_face("Anger", seed=2, nuisance=False)
    monkeypatch.setattr(synth, "STROKE", 2 * synth.STROKE)
    thick = render_face("Anger", seed=2, nuisance=False)
    assert (np.abs(thick.astype(int) - base).sum(-1) > 30).mean() > 0.002  # wider strokes
