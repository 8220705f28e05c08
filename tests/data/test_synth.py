import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from transfer_lib.data import build_dataset, render_face, synth
from transfer_lib.data.synth import (
    PARTS,
    RAFDB_TRAIN_COUNTS,
    class_counts,
    ensure_synthetic,
    generate,
    most_frequent_class_accuracy,
)
from transfer_lib.utils.errors import DataError


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("syn") / "a", train=35, test=14, seed=3, workers=2)


def test_synth_read_back_by_rafdb_loader(small_set):
    train = build_dataset("rafdb", small_set, "train")
    test = build_dataset("synthetic", small_set, "test")
    val = build_dataset("synthetic", small_set, "val")
    assert (len(train), len(test), len(val)) == (35, 14, 14)  # val: as many as test
    assert train.val_source == val.val_source == "file"  # the val_ images, none carved
    assert np.bincount(val.targets, minlength=7).tolist() == class_counts(14, "rafdb")
    assert val.samples[0][0].name == "val_00001_aligned.jpg"
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


def test_most_frequent_class_accuracy_is_happiness_share():
    # RAF-DB's train counts: Happiness (4772 of 12271) is the most frequent class
    assert most_frequent_class_accuracy(12271) == pytest.approx(100 * 4772 / 12271)
    assert most_frequent_class_accuracy(700, "uniform") == pytest.approx(100 / 7)
    assert most_frequent_class_accuracy(1) == 100.0
    with pytest.raises(ValueError, match="at least one image"):
        most_frequent_class_accuracy(0)
    with pytest.raises(ValueError, match="balance"):
        most_frequent_class_accuracy(10, "skewed")


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


# ---------------------------------------------------------------------------------------------
# Nothing lost, nothing mixed (issue 12): foreign folders, interrupted runs, the marker's state
# ---------------------------------------------------------------------------------------------
LABELS = "basic/EmoLabel/list_patition_label.txt"


def _snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_synth_refuses_a_folder_holding_a_real_data_set(rafdb_root, capsys):
    from transfer_lib.cli import main

    before = _snapshot(rafdb_root)
    assert main(["synth", "--out", str(rafdb_root), "--train", "7", "--test", "7",
                 "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "RAF-DB" in err and "did not write" in err
    assert _snapshot(rafdb_root) == before  # not one byte changed
    # not even --force overwrites a label file this library did not write
    assert main(["synth", "--out", str(rafdb_root), "--train", "7", "--test", "7",
                 "--workers", "1", "--force"]) == 2
    assert "RAF-DB" in capsys.readouterr().err
    assert _snapshot(rafdb_root) == before


def test_synth_never_deletes_the_users_own_files(tmp_path, capsys):
    from transfer_lib.cli import main

    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    args = ["synth", "--out", str(out), "--train", "7", "--test", "7", "--workers", "1"]
    assert main(args) == 2  # a folder of the user's: refused, untouched
    err = capsys.readouterr().err
    assert "notes.txt" in err and "--force" in err and "Nothing was written" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert main([*args, "--force"]) == 0  # the set goes beside the user's file
    assert (out / "notes.txt").read_text() == "my notes"
    assert len(build_dataset("synthetic", out, "train")) == 7
    # now a synthetic set that also holds a file of the user's (in a folder of the set, too)
    (out / "basic" / "Image" / "aligned" / "mine.png").write_bytes(b"png")
    assert main([*args, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "also holds files" in err and "mine.png" in err and "notes.txt" in err
    assert main([*args, "--seed", "1", "--force"]) == 0  # replaced, the user's files kept
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "basic" / "Image" / "aligned" / "mine.png").read_bytes() == b"png"
    assert json.loads((out / "synthetic.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # no temporary left


def test_synth_cli_writes_the_marker_and_replaces_its_own_set(tmp_path):
    from transfer_lib.cli import main

    out = tmp_path / "s"
    assert main(["synth", "--out", str(out), "--train", "7", "--test", "7", "--workers", "1"]) == 0
    marker = json.loads((out / "synthetic.json").read_text())
    assert marker == {"version": synth.GENERATOR_VERSION, "train": 7, "test": 7, "val": 7,
                      "seed": 0, "occlusion": synth.DEFAULT_OCCLUSION, "balance": "rafdb",
                      "splits": ["train", "test", "val"], "task": "additive",
                      "part_occlusion": 0.0, "state": "complete"}
    # its own set (by the marker) is replaced without --force; no temporary folder is left
    assert main(["synth", "--out", str(out), "--train", "14", "--test", "7", "--seed", "1",
                 "--workers", "1"]) == 0
    assert len(build_dataset("synthetic", out, "train")) == 14
    assert [p.name for p in tmp_path.iterdir()] == ["s"]
    # and ensure_synthetic reuses what the command wrote with the same parameters
    stamp = (out / "synthetic.json").stat().st_mtime_ns
    assert ensure_synthetic(out, train=14, test=7, seed=1, workers=1) == out
    assert (out / "synthetic.json").stat().st_mtime_ns == stamp


def test_interrupted_synth_keeps_the_old_set_whole(tmp_path, monkeypatch):
    out = generate(tmp_path / "s", train=14, test=7, seed=0, workers=1)
    before = _snapshot(out)
    calls = []
    real = synth._write_chunk

    def dies_midway(job):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C after the first chunk of new images
        return real(job)

    monkeypatch.setattr(synth, "_write_chunk", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        generate(out, train=14, test=7, seed=5, workers=1)
    assert _snapshot(out) == before  # the old labels still describe the old images
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # the half-drawn set is gone


def test_loader_refuses_an_incomplete_set_and_stale_leftovers_are_cleaned(tmp_path, capsys):
    out = generate(tmp_path / "s", train=7, test=7, workers=1)
    marker = json.loads((out / "synthetic.json").read_text())
    (out / "synthetic.json").write_text(json.dumps({**marker, "state": "incomplete"}))
    with pytest.raises(DataError, match=r"incomplete.*synth --out"):
        build_dataset("synthetic", out, "train")
    # a run killed with SIGKILL leaves its temporary folder: the next run removes it
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    left = tmp_path / f".new.tmp-{dead}"
    (left / "basic").mkdir(parents=True)
    with pytest.raises(DataError) as err:  # what `train --data` / `eval --data` say meanwhile
        build_dataset("synthetic", tmp_path / "new", "train")
    assert "interrupted" in str(err.value) and "run it again" in str(err.value)
    assert "obtain" not in str(err.value)
    from transfer_lib.cli import main

    assert main(["train", "--profile", "smoke", "--data", str(tmp_path / "new"),
                 "--out", str(tmp_path / "run")]) == 2  # the same from the trainer
    assert "was interrupted" in capsys.readouterr().err
    generate(tmp_path / "new", train=7, test=7, workers=1)
    assert not left.exists()
    assert len(build_dataset("synthetic", tmp_path / "new", "test")) == 7


def test_ensure_synthetic_never_replaces_a_foreign_folder(rafdb_root):
    before = _snapshot(rafdb_root)
    with pytest.raises(DataError, match="did not write"):
        ensure_synthetic(rafdb_root, train=7, test=7, workers=1)
    assert _snapshot(rafdb_root) == before


@pytest.mark.parametrize("argv, words", [
    (["--train", "-5"], ["--train -5", "0 or more"]),
    (["--occlusion", "2"], ["--occlusion 2", "[0, 1]"]),
    (["--workers", "-1"], ["--workers -1", "1 or more"]),
])
def test_synth_bad_numbers_are_errors(argv, words, tmp_path, capsys):
    from transfer_lib.cli import main

    assert main(["synth", "--out", str(tmp_path / "s"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and all(w in err for w in words)
    assert not (tmp_path / "s").exists()


def test_synth_out_is_a_file(tmp_path, capsys):
    from transfer_lib.cli import main

    f = tmp_path / "notes.txt"
    f.write_text("mine")
    assert main(["synth", "--out", str(f), "--train", "7", "--test", "7"]) == 2
    assert "is a file" in capsys.readouterr().err and f.read_text() == "mine"


# ---------------------------------------------------------------------------------------------
# The validation split: drawn like train, and train and test exactly as before it existed
# ---------------------------------------------------------------------------------------------
#: sha256 of the train_ and test_ JPEG files (name then bytes, by name) and of the label file of
#: generate(train=14, test=7, seed=3), computed with the code before the val split was added
#: (commit 67231b0; Pillow 13.0.0, numpy 2.4.6). Committed results were trained on those bytes.
BEFORE_VAL_IMAGES = "f7eb376b4d354456af5aecf894d5dc76b410717833c6e6766a6f68d040832fb5"
BEFORE_VAL_LABELS = "4e542b31bba6f3098a47fd53f0573e63e895def182d37f25b60af6241f767082"


def _train_test_digests(root):
    h = hashlib.sha256()
    for f in sorted((root / "basic" / "Image" / "aligned").iterdir()):
        if f.name.startswith(("train_", "test_")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    lines = (root / LABELS).read_text().splitlines()
    kept = "".join(x + "\n" for x in lines if not x.startswith("val_"))
    return h.hexdigest(), hashlib.sha256(kept.encode()).hexdigest()


def test_val_left_train_and_test_byte_identical(tmp_path):
    out = generate(tmp_path / "s", train=14, test=7, seed=3, workers=1)
    assert _train_test_digests(out) == (BEFORE_VAL_IMAGES, BEFORE_VAL_LABELS)
    lines = (out / LABELS).read_text().splitlines()
    assert [x.split("_")[0] for x in lines] == ["train"] * 14 + ["test"] * 7 + ["val"] * 7
    # val is drawn from its own seeds: no val image repeats a train or test image
    aligned = out / "basic" / "Image" / "aligned"
    val = {f.read_bytes() for f in aligned.glob("val_*")}
    assert len(val) == 7 and not val & {f.read_bytes() for f in aligned.glob("t*")}


def test_val_size_option_and_class_balance(tmp_path):
    from transfer_lib.cli import main

    out = tmp_path / "s"
    assert main(["synth", "--out", str(out), "--train", "14", "--test", "7", "--val", "21",
                 "--balance", "uniform", "--workers", "1"]) == 0
    assert json.loads((out / "synthetic.json").read_text())["val"] == 21
    val = build_dataset("synthetic", out, "val")
    assert np.bincount(val.targets, minlength=7).tolist() == class_counts(21, "uniform")
    assert len(build_dataset("synthetic", out, "train")) == 14  # nothing carved from train
    from transfer_lib.utils.errors import TransferError

    with pytest.raises(TransferError, match="--val -1"):
        generate(tmp_path / "t", train=7, test=7, val=-1)


def _as_before_val(root):
    """Make ``root`` what the code before the val split wrote: no val_ images or lines, a
    marker without ``val`` and ``splits``."""
    for f in (root / "basic" / "Image" / "aligned").glob("val_*"):
        f.unlink()
    lines = (root / LABELS).read_text().splitlines()
    (root / LABELS).write_text("".join(x + "\n" for x in lines if not x.startswith("val_")))
    marker = json.loads((root / "synthetic.json").read_text())
    del marker["val"], marker["splits"]
    (root / "synthetic.json").write_text(json.dumps(marker))


def test_ensure_synthetic_completes_a_set_written_before_val(tmp_path, capsys):
    fresh = generate(tmp_path / "fresh", train=14, test=7, seed=3, workers=1)
    old = generate(tmp_path / "old", train=14, test=7, seed=3, workers=1)
    _as_before_val(old)
    train_image = old / "basic" / "Image" / "aligned" / "train_00003_aligned.jpg"
    inode = train_image.stat().st_ino
    assert ensure_synthetic(old, train=14, test=7, seed=3, workers=1) == old
    err = capsys.readouterr().err
    assert "written before the validation split: completing it with 7 val images" in err
    assert len(err.strip().splitlines()) == 1
    assert _snapshot(old) == _snapshot(fresh)  # the same set as one drawn whole
    assert train_image.stat().st_ino == inode  # train and test kept, not drawn again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "old"]
    # another size asked for: the old set is drawn again
    _as_before_val(old)
    ensure_synthetic(old, train=7, test=7, seed=3, workers=1)
    assert "regenerating it" in capsys.readouterr().err
    assert json.loads((old / "synthetic.json").read_text())["train"] == 7


def test_an_old_set_read_directly_carves_val_from_train(tmp_path):
    from transfer_lib.data.base import VAL_CARVED

    old = generate(tmp_path / "old", train=35, test=7, seed=3, workers=1)
    _as_before_val(old)
    train = build_dataset("synthetic", old, "train")
    val = build_dataset("synthetic", old, "val")
    assert val.val_source == train.val_source == VAL_CARVED
    assert len(train) + len(val) == 35 and len(val) >= 3
    assert not {p for p, _ in train.samples} & {p for p, _ in val.samples}


# The hostile round of the task options (synth's own remover, --out spellings, eval's cache)
def _dead_pid() -> str:
    return subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()


def test_stale_leftovers_of_names_with_glob_characters_and_odd_pids(tmp_path):
    """``.NAME.tmp-PID`` is matched by name, not as a glob: ``--out x[1]`` neither removes nor
    reports ``x1``'s leftover; a non-ASCII digit (``²``) is no process id (it raised
    ValueError); a dead run's ``.NAME.old-PID`` (killed while deleting the replaced set) goes,
    a running process's stays."""
    from transfer_lib.data.synth import interrupted_note

    dead = _dead_pid()
    x1 = tmp_path / f".x1.tmp-{dead}"
    (x1 / "basic").mkdir(parents=True)
    assert interrupted_note(tmp_path / "x[1]") == ""
    assert str(x1) in interrupted_note(tmp_path / "x1")
    generate(tmp_path / "x[1]", train=2, test=1, val=0, workers=1)
    assert x1.is_dir()
    odd, old_dead, old_live = (tmp_path / ".y.tmp-\u00b2", tmp_path / f".y.old-{dead}",
                               tmp_path / f".y.old-{os.getppid()}")
    for folder in (odd, old_dead, old_live):
        folder.mkdir()
    generate(tmp_path / "y", train=2, test=1, val=0, workers=1)
    assert odd.is_dir() and old_live.is_dir() and not old_dead.exists()


def test_out_through_a_link_or_as_the_current_folder(tmp_path, monkeypatch, capsys):
    from transfer_lib.cli import main

    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to("target")
    assert generate(tmp_path / "link", train=2, test=1, val=0, workers=1) == tmp_path / "link"
    assert (tmp_path / "link").is_symlink()  # the set went where the link points
    assert (tmp_path / "target" / "synthetic.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "target"]
    here = tmp_path / "here"
    (here / "sub").mkdir(parents=True)
    monkeypatch.chdir(here)
    for out in (".", "", "./", "sub/..", str(tmp_path)):
        assert main(["synth", "--out", out, "--train", "2", "--test", "1", "--val", "0",
                     "--workers", "1"]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert err.startswith("error: --out ") and "current folder" in err, err
    assert sorted(p.name for p in here.iterdir()) == ["sub"]


def test_the_occlusion_cache_goes_with_its_set(tmp_path):
    """`eval --occlusion` caches faces under SET/occlusion/: that is the set's, not the user's,
    so writing the set again is not refused (it was: "files this library did not write")."""
    from transfer_lib.data.synth import foreign_files
    from transfer_lib.evaluate.occlusion import rendered_split

    out = generate(tmp_path / "s", train=2, test=3, val=0, workers=1)
    rendered_split(out, build_dataset("synthetic", out, "test"), ["eyes"], workers=1)
    assert (out / "occlusion").is_dir() and foreign_files(out) == []
    generate(out, train=2, test=3, val=0, seed=4, workers=1)
    assert not (out / "occlusion").exists()  # drawn from the old set: gone with it
    rendered_split(out, build_dataset("synthetic", out, "test"), ["eyes"], workers=1)
    mine = next((out / "occlusion").iterdir()) / "notes.txt"
    mine.write_text("the user's")
    assert foreign_files(out) == [Path("occlusion")]
    with pytest.raises(DataError, match="did not write: occlusion"):
        generate(out, train=2, test=3, val=0, seed=5, workers=1)
    assert mine.read_text() == "the user's"
