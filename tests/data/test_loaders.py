from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.conftest import write_affectnet, write_ferplus, write_rafdb
from transfer_lib.cli import main
from transfer_lib.data import (
    AFFECTNET_CLASSES,
    FERPLUS_CLASSES,
    build_dataset,
    majority_label,
)
from transfer_lib.models.config import RAFDB_CLASSES
from transfer_lib.utils.errors import DataError


def test_rafdb_reads_splits_labels_and_classes(rafdb_root):
    train = build_dataset("rafdb", rafdb_root, "train")
    test = build_dataset("rafdb", rafdb_root, "test")
    assert (len(train), len(test)) == (6, 3)
    assert train.classes == RAFDB_CLASSES
    assert train.targets == [(i % 7) for i in range(1, 7)]  # file labels 1..7 -> 0..6
    img, label = train[0]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (100, 100)
    assert label == 1
    assert train.samples[0][0].name == "train_00001_aligned.jpg"


def test_rafdb_accepts_basic_folder_and_split_files(rafdb_root):
    assert len(build_dataset("rafdb", rafdb_root / "basic", "test")) == 3
    emo = rafdb_root / "basic" / "EmoLabel"
    lines = (emo / "list_patition_label.txt").read_text().splitlines()
    (emo / "list_patition_label.txt").unlink()
    (emo / "train.txt").write_text("\n".join(x for x in lines if x.startswith("train")) + "\n")
    (emo / "test.txt").write_text("\n".join(x for x in lines if x.startswith("test")) + "\n")
    assert len(build_dataset("rafdb", rafdb_root, "train")) == 6
    assert len(build_dataset("rafdb", rafdb_root, "test")) == 3


def test_missing_folder_names_layout_and_readme(tmp_path):
    with pytest.raises(DataError) as e:
        build_dataset("rafdb", tmp_path / "nowhere", "train")
    msg = str(e.value)
    assert "nowhere" in msg and "list_patition_label.txt" in msg and "data/README.md" in msg


def test_missing_label_file(rafdb_root):
    (rafdb_root / "basic" / "EmoLabel" / "list_patition_label.txt").unlink()
    with pytest.raises(DataError, match="label file not found.*list_patition_label"):
        build_dataset("rafdb", rafdb_root, "train")


def _edit_line(root: Path, lineno: int, text: str) -> Path:
    f = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    lines = f.read_text().splitlines()
    lines[lineno - 1] = text
    f.write_text("\n".join(lines) + "\n")
    return f


def test_unknown_label_reports_file_and_line(rafdb_root):
    _edit_line(rafdb_root, 3, "train_00003.jpg 9")
    with pytest.raises(DataError, match=r"list_patition_label.txt, line 3: unknown label '9'"):
        build_dataset("rafdb", rafdb_root, "train")


def test_duplicate_reports_both_lines(rafdb_root):
    _edit_line(rafdb_root, 4, "train_00002.jpg 3")
    with pytest.raises(DataError, match=r"line 4: duplicate entry train_00002.jpg \(first at line 2\)"):
        build_dataset("rafdb", rafdb_root, "train")


def test_missing_image_reports_line_and_path(rafdb_root):
    (rafdb_root / "basic" / "Image" / "aligned" / "train_00005_aligned.jpg").unlink()
    with pytest.raises(DataError, match=r"line 5: image missing: .*train_00005_aligned.jpg"):
        build_dataset("rafdb", rafdb_root, "train")


def test_corrupt_image_reported_by_path(rafdb_root):
    bad = rafdb_root / "basic" / "Image" / "aligned" / "train_00002_aligned.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    ds = build_dataset("rafdb", rafdb_root, "train")
    ds[0]  # a good one still loads
    with pytest.raises(DataError, match="corrupt.*train_00002_aligned.jpg"):
        ds[1]


def test_cli_prints_data_error_without_traceback(tmp_path, capsys, monkeypatch):
    root = write_rafdb(tmp_path / "r")
    _edit_line(root, 2, "train_00002.jpg 0")
    monkeypatch.chdir(tmp_path)
    from transfer_lib.bench import data as bench

    def run(args):  # any command that reads the data set
        build_dataset("rafdb", root, "train")

    monkeypatch.setattr(bench, "run", run)
    code = main(["bench", "data", "--data", str(root)])
    err = capsys.readouterr().err
    assert code != 0
    assert "line 2: unknown label '0'" in err and "Traceback" not in err


def test_cli_subprocess_exit_code(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "transfer_lib", "bench", "data", "--data",
                        str(tmp_path / "missing"), "--seconds", "0.1"],
                       capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: RAF-DB folder not found") and "Traceback" not in r.stderr


@pytest.mark.parametrize("votes,expected", [
    ([6, 2, 1, 0, 1, 0, 0, 0, 0, 0], 0),      # 1-vote emotions zeroed: 6 of 8 > half
    ([4, 4, 2, 0, 0, 0, 0, 0, 0, 0], None),   # tie, no majority
    ([5, 0, 0, 0, 0, 0, 0, 0, 5, 0], None),   # not over half
    ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], None),   # all single votes zeroed
    ([0, 0, 0, 0, 0, 0, 0, 0, 8, 2], None),   # winner 'unknown' dropped
    ([0, 0, 0, 0, 0, 0, 0, 2, 0, 8], None),   # winner 'NF' dropped
    ([0, 0, 0, 0, 0, 0, 0, 7, 1, 2], 7),      # contempt kept (8 classes)
    ([3, 0, 0, 0, 0, 0, 2, 0, 0, 0], 0),      # 3 > 2.5
    ([0, 0, 0, 0, 0, 3, 3, 0, 0, 0], None),
])
def test_ferplus_majority(votes, expected):
    assert majority_label(votes) == expected


def test_ferplus_loader(tmp_path):
    rows = [("Training", "fer0000000.png", [6, 2, 1, 0, 1, 0, 0, 0, 0, 0]),
            ("Training", "", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]),  # no image name: skipped
            ("Training", "fer0000002.png", [0, 0, 9, 0, 0, 0, 0, 0, 1, 0]),
            ("Training", "fer0000003.png", [0, 0, 0, 0, 0, 0, 0, 0, 8, 2]),  # unknown: dropped
            ("PublicTest", "fer0000004.png", [0, 8, 0, 0, 0, 0, 0, 0, 0, 0]),
            ("PrivateTest", "fer0000005.png", [0, 0, 0, 0, 0, 0, 0, 9, 0, 0]),
            ("PrivateTest", "fer0000006.png", [0, 0, 0, 0, 0, 0, 10, 0, 0, 0])]
    root = write_ferplus(tmp_path / "ferplus", rows)
    train = build_dataset("ferplus", root, "train")
    assert train.classes == FERPLUS_CLASSES and len(train.classes) == 8
    assert train.targets == [0, 2]
    assert train.left_out == {"no image name (dropped by FERPlus)": 1,
                              "no majority label (FERPlus's rule)": 1}  # counted, not silent
    assert "1 no majority label" in train.describe_left_out()
    img, _ = train[1]
    assert img.mode == "RGB" and img.size == (48, 48)
    a = np.asarray(img)
    assert (a[..., 0] == a[..., 1]).all()
    test = build_dataset("ferplus", root, "test")
    assert test.targets == [7, 6] and test.left_out == {} and test.describe_left_out() is None
    # pixels of row 3 (file line 4) are the third data row of fer2013.csv
    line = (root / "fer2013.csv").read_text().splitlines()[3]
    expected = np.array(line.split(",")[1].split(), dtype=np.uint8).reshape(48, 48)
    assert (a[..., 0] == expected).all()


def test_ferplus_bad_votes_and_missing_file(tmp_path):
    root = write_ferplus(tmp_path / "f", [("Training", "a.png", [1] * 10)])
    text = (root / "fer2013new.csv").read_text().replace("1,1,1,1", "1,x,1,1", 1)
    (root / "fer2013new.csv").write_text(text)
    with pytest.raises(DataError, match=r"fer2013new.csv, line 2: vote counts"):
        build_dataset("ferplus", root, "train")
    (root / "fer2013.csv").unlink()
    with pytest.raises(DataError, match="FERPlus file not found.*fer2013.csv"):
        build_dataset("ferplus", root, "train")


def test_affectnet_7_and_8(tmp_path):
    root = write_affectnet(tmp_path / "an", [0, 1, 7, 8, 9, 10, 6, 3], [7, 2, 10, 5])
    a8 = build_dataset("affectnet8", root, "train")
    a7 = build_dataset("affectnet7", root, "train")
    assert a8.targets == [0, 1, 7, 6, 3] and a8.classes == AFFECTNET_CLASSES
    assert a7.targets == [0, 1, 6, 3] and a7.classes == AFFECTNET_CLASSES[:7]
    assert a8.left_out == {"none (code 8)": 1, "uncertain (code 9)": 1, "non-face (code 10)": 1}
    assert a7.left_out["contempt (code 7; affectnet8 keeps it)"] == 1
    test = build_dataset("affectnet7", root, "test")  # validation.csv without a header
    assert test.targets == [2, 5]
    img, _ = test[0]
    assert img.size == (80, 60) and img.mode == "RGB"


def test_affectnet_unknown_code_and_missing_image(tmp_path):
    root = write_affectnet(tmp_path / "an", [0, 1], [1], header_in_val=True)
    f = root / "Manually_Annotated_file_lists" / "training.csv"
    f.write_text(f.read_text().replace(",1,0.1,-0.2", ",12,0.1,-0.2"))
    with pytest.raises(DataError, match=r"training.csv, line 3: unknown expression code 12"):
        build_dataset("affectnet8", root, "train")
    next((root / "Manually_Annotated_Images").rglob("val0000.jpg")).unlink()
    with pytest.raises(DataError, match=r"validation.csv, line 2: image missing"):
        build_dataset("affectnet8", root, "test")


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(ValueError, match="unknown data set"):
        build_dataset("imagenet", tmp_path, "train")


# ---------------------------------------------------------------------------------------------
# Files a careful user might really have (issue 12): encodings, odd labels, bombs, short files
# ---------------------------------------------------------------------------------------------
def bomb_jpeg(path, side: int = 30000):
    """A small JPEG whose header claims ``side`` x ``side`` pixels (PIL refuses it unopened)."""
    import io

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 90, 90)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    data[sof + 5:sof + 9] = side.to_bytes(2, "big") * 2
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_is_a_data_error(rafdb_root):
    image = rafdb_root / "basic" / "Image" / "aligned" / "train_00001_aligned.jpg"
    bomb_jpeg(image)
    ds = build_dataset("rafdb", rafdb_root, "train")
    with pytest.raises(DataError, match=r"refused image .*train_00001_aligned.jpg.*not a face"):
        ds[0]


def _label_file(root):
    return root / "basic" / "EmoLabel" / "list_patition_label.txt"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_rafdb_label_file_with_a_byte_order_mark_is_read(rafdb_root, encoding):
    f = _label_file(rafdb_root)
    f.write_bytes(f.read_text().encode(encoding))
    assert len(build_dataset("rafdb", rafdb_root, "train")) == 6


def test_rafdb_label_file_that_is_not_utf8(rafdb_root):
    f = _label_file(rafdb_root)
    lines = f.read_text().splitlines()
    lines[2] = "train_00003.jpg 4 \xe9t\xe9"  # latin-1 bytes on line 3
    f.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(DataError, match=r"list_patition_label.txt, line 3: not UTF-8 text.*UTF-8"):
        build_dataset("rafdb", rafdb_root, "train")


@pytest.mark.parametrize("label", ["\u00b2", "\u0663", "-1"])
def test_rafdb_label_that_only_looks_like_a_digit(rafdb_root, label):
    f = _label_file(rafdb_root)
    f.write_text(f.read_text().replace("train_00002.jpg 3", f"train_00002.jpg {label}"))
    with pytest.raises(DataError, match=r"line 2: unknown label .* \(RAF-DB labels are 1..7"):
        build_dataset("rafdb", rafdb_root, "train")


FER_ROWS = [("Training", f"fer{i:07d}.png", [0, 8, 0, 0, 0, 0, 0, 0, 0, 0]) for i in range(4)]


@pytest.mark.parametrize("short", ["fer2013.csv", "fer2013new.csv"])
def test_ferplus_files_of_different_lengths_are_refused(tmp_path, short):
    root = write_ferplus(tmp_path / "f", FER_ROWS)
    f = root / short
    f.write_text("\n".join(f.read_text().splitlines()[:-2]) + "\n")  # 2 data rows of 4
    counts = (2, 4) if short == "fer2013.csv" else (4, 2)
    with pytest.raises(DataError, match=rf"fer2013.csv has {counts[0]} rows but .*fer2013new.csv "
                                        rf"has {counts[1]}.*same order"):
        build_dataset("ferplus", root, "train")


def test_ferplus_trailing_blank_lines_are_not_rows(tmp_path):
    root = write_ferplus(tmp_path / "f", FER_ROWS)
    with (root / "fer2013.csv").open("a") as f:
        f.write("\n\n")
    assert len(build_dataset("ferplus", root, "train")) == 4


@pytest.mark.parametrize("bad_row, words", [
    ("0,12 x 4,Training", "expected 2304 whole numbers 0..255"),
    ("0", "expected 3 columns"),
])
def test_ferplus_malformed_pixel_rows(tmp_path, bad_row, words):
    root = write_ferplus(tmp_path / "f", FER_ROWS)
    lines = (root / "fer2013.csv").read_text().splitlines()
    lines[2] = bad_row
    (root / "fer2013.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"fer2013.csv, line 3: {words}"):
        build_dataset("ferplus", root, "train")


def test_ferplus_with_byte_order_marks_is_read(tmp_path):
    root = write_ferplus(tmp_path / "f", FER_ROWS)
    for name in ("fer2013.csv", "fer2013new.csv"):
        f = root / name
        f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes())
    assert len(build_dataset("ferplus", root, "train")) == 4


@pytest.mark.parametrize("path", ["../../secret.jpg", "/etc/passwd", "100/../../x.jpg",
                                  "C:\\images\\x.jpg"])
def test_affectnet_paths_outside_the_image_folder_are_refused(tmp_path, path):
    root = write_affectnet(tmp_path / "an", [0, 1], [1])
    f = root / "Manually_Annotated_file_lists" / "training.csv"
    lines = f.read_text().splitlines()
    lines[2] = path + lines[2][lines[2].index(","):]
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"training.csv, line 3: image path .* leaves the image "
                                        r"folder"):
        build_dataset("affectnet8", root, "train")


def test_affectnet_blank_lines_and_byte_order_mark(tmp_path):
    root = write_affectnet(tmp_path / "an", [0, 1, 2], [1])
    f = root / "Manually_Annotated_file_lists" / "training.csv"
    lines = f.read_text().splitlines()
    lines.insert(2, "      ")  # a line of spaces
    f.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
    assert build_dataset("affectnet8", root, "train").targets == [0, 1, 2]


# Subtly wrong FERPlus and AffectNet files: each was read without a word (a label from the wrong
# column, a NaN vote counted as Neutral, a face in no split), and is now refused naming the file,
# the line and what was expected.
def _edit_csv_line(path: Path, index: int, edit) -> None:
    lines = path.read_text().splitlines()
    lines[index] = edit(lines[index])
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("name, index, edit, words", [
    # a row with a 13th cell (an unquoted comma) shifted nothing it read, but may have
    ("fer2013new.csv", 2, lambda ln: ln + ",3", "line 3: expected 12 columns (Usage,Image name and "
                                                "10 vote counts), got 13"),
    ("fer2013.csv", 2, lambda ln: ln + ",x", "line 3: expected 3 columns"),
    # the first two columns' names were not looked at
    ("fer2013new.csv", 0, lambda ln: ln.replace("Usage,Image name", "Image name,Usage"),
     "line 1: expected the header 'Usage,Image name,neutral,"),
    ("fer2013.csv", 0, lambda ln: ln + ",extra", "line 1: expected the header 'emotion,pixels,"
                                                 "Usage', got 'emotion,pixels,Usage,extra'"),
    # a header-less file: its first row shown cut short, not 2,304 pixel values
    ("fer2013.csv", 0, lambda ln: "0," + " ".join(["7"] * 2304) + ",Training",
     "got '0,7 7 7"),
    # votes: all zero, a fraction, a negative count, NaN (was labelled Neutral), inf
    ("fer2013new.csv", 1, lambda ln: ln.rsplit(",", 10)[0] + ",0" * 10,
     "line 2: no votes for fer0000000.png"),
    ("fer2013new.csv", 1, lambda ln: ln.replace(",8,", ",7.5,", 1), "line 2: vote counts must be "
                                                                    "whole numbers, 0 or more"),
    ("fer2013new.csv", 1, lambda ln: ln.replace(",8,", ",-8,", 1), "line 2: vote counts must be"),
    ("fer2013new.csv", 1, lambda ln: ln.replace(",0,8,", ",nan,8,", 1), "line 2: vote counts must"),
    ("fer2013new.csv", 1, lambda ln: ln.replace(",8,", ",inf,", 1), "line 2: vote counts must be"),
    # a Usage that is none of the three: the face was in no split
    ("fer2013new.csv", 1, lambda ln: ln.replace("Training", "Train", 1),
     "line 2: Usage 'Train' is none of Training, PublicTest, PrivateTest"),
    ("fer2013.csv", 4, lambda ln: ln.replace("Training", "training"),
     "fer2013.csv, line 5: Usage 'training' is none of"),
])
def test_ferplus_subtly_wrong_files(tmp_path, name, index, edit, words):
    root = write_ferplus(tmp_path / "f", FER_ROWS)
    _edit_csv_line(root / name, index, edit)
    with pytest.raises(DataError) as err:
        build_dataset("ferplus", root, "train")
    assert str(root / name) in str(err.value) and words in str(err.value), str(err.value)


def test_ferplus_file_in_latin1_is_refused_naming_it(tmp_path):
    root = write_ferplus(tmp_path / "f", FER_ROWS)
    f = root / "fer2013new.csv"
    f.write_bytes(f.read_bytes().replace(b"fer0000002", "f\xe9r0000002".encode("latin-1")))
    with pytest.raises(DataError, match=r"fer2013new.csv.*not UTF-8 text"):
        build_dataset("ferplus", root, "train")


@pytest.mark.parametrize("edit, words", [
    # the columns are read by position: a header naming them in another order was skipped
    (lambda ln: ln.replace("facial_landmarks,expression", "expression,facial_landmarks"),
     "line 1: expected the header 'subDirectory_filePath,face_x,"),
    (lambda ln: ln.replace("face_x,face_y", "face_y,face_x"), "line 1: expected the header"),
    (lambda ln: ln.replace("subDirectory_filePath", "path"), "line 1: expected the header"),
    (lambda ln: ln + ",note", "line 1: expected the header"),
])
def test_affectnet_header_in_another_order_is_refused(tmp_path, edit, words):
    root = write_affectnet(tmp_path / "an", [0, 1, 2, 3], [1])
    f = root / "Manually_Annotated_file_lists" / "training.csv"
    _edit_csv_line(f, 0, edit)
    with pytest.raises(DataError) as err:
        build_dataset("affectnet8", root, "train")
    assert f"{f}, {words}" in str(err.value), str(err.value)


@pytest.mark.parametrize("edit, found", [
    (lambda ln: ln + ",x", 10),                   # an extra cell (an unquoted comma)
    (lambda ln: ln.rsplit(",", 1)[0], 8),         # arousal missing
    (lambda ln: ln.replace(",1.0;2.0;3.0;4.0", "", 1), 8),  # landmarks missing: shifted labels
])
def test_affectnet_row_with_a_missing_or_extra_column(tmp_path, edit, found):
    root = write_affectnet(tmp_path / "an", [0, 1, 2, 3], [1])
    f = root / "Manually_Annotated_file_lists" / "training.csv"
    _edit_csv_line(f, 2, edit)
    with pytest.raises(DataError, match=rf"training.csv, line 3: expected 9 columns .* got {found}"):
        build_dataset("affectnet8", root, "train")


# ---------------------------------------------------------------------------------------------
# The validation split: the data set's own list, or carved from train (stratified, seed 0)
# ---------------------------------------------------------------------------------------------
def test_every_data_set_has_a_val_split():
    from transfer_lib.data import DATASETS, SPLITS

    assert all(SPLITS[name] == ("train", "val", "test") for name in DATASETS)


def test_rafdb_val_is_carved_from_train_per_class(tmp_path):
    from transfer_lib.data.base import VAL_CARVED, carve_validation

    root = write_rafdb(tmp_path / "r", n_train=140, n_test=3)  # 20 of each class
    train = build_dataset("rafdb", root, "train")
    val = build_dataset("rafdb", root, "val")
    assert train.val_source == val.val_source == VAL_CARVED
    assert VAL_CARVED == "carved from train, 10 % per class, seed 0"
    assert np.bincount(val.targets, minlength=7).tolist() == [2] * 7  # 10 % of each class
    assert len(train) == 140 - 14
    names = {p.name for p, _ in train.samples} | {p.name for p, _ in val.samples}
    assert len(names) == 140 and not {p for p, _ in train.samples} & {p for p, _ in val.samples}
    # deterministic: the recorded seed's choice, in file order, the same on every call
    listed = [(i % 7) for i in range(1, 141)]
    chosen = np.flatnonzero(carve_validation(listed)) + 1
    assert [p.name for p, _ in val.samples] == [f"train_{i:05d}_aligned.jpg" for i in chosen]
    assert build_dataset("rafdb", root, "val").samples == val.samples
    assert len(build_dataset("rafdb", root, "test")) == 3  # test untouched


def test_carve_keeps_a_class_in_train_and_gives_val_one_from_two():
    from transfer_lib.data.base import carve_validation

    mask = carve_validation([0, 1, 1, 2, 2, 2] + [3] * 25)
    assert mask[0] == False  # noqa: E712 - one image: it stays in train
    assert mask[1:3].sum() == 1 and mask[3:6].sum() == 1 and mask[6:].sum() == 3  # 2.5 rounds up
    # a class's choice depends on that class alone
    alone = carve_validation([3] * 25)
    assert (mask[6:] == alone).all()


def test_rafdb_val_from_the_label_file_or_val_txt(rafdb_root):
    emo = rafdb_root / "basic" / "EmoLabel"
    aligned = rafdb_root / "basic" / "Image" / "aligned"
    for i in (1, 2):
        (aligned / f"val_{i:05d}_aligned.jpg").write_bytes(
            (aligned / "train_00001_aligned.jpg").read_bytes())
    with (emo / "list_patition_label.txt").open("a") as f:
        f.write("val_00001.jpg 3\nval_00002.jpg 7\n")
    val = build_dataset("rafdb", rafdb_root, "val")
    assert val.targets == [2, 6] and val.val_source == "file"
    assert len(build_dataset("rafdb", rafdb_root, "train")) == 6  # nothing carved
    # the same with one file per split
    lines = (emo / "list_patition_label.txt").read_text().splitlines()
    (emo / "list_patition_label.txt").unlink()
    for split in ("train", "val", "test"):
        (emo / f"{split}.txt").write_text(
            "\n".join(x for x in lines if x.startswith(split)) + "\n")
    assert build_dataset("rafdb", rafdb_root, "val").targets == [2, 6]
    (emo / "val.txt").unlink()  # no val list: carved from train.txt (one image a class: none)
    with pytest.raises(DataError, match=r"train.txt: no val images: val is carved"):
        build_dataset("rafdb", rafdb_root, "val")


def test_ferplus_val_is_public_test(tmp_path):
    rows = [("Training", f"a{i}.png", [0, 8, 0, 0, 0, 0, 0, 0, 0, 0]) for i in range(3)]
    rows += [("PublicTest", "p.png", [0, 0, 9, 0, 0, 0, 0, 0, 0, 0]),
             ("PrivateTest", "q.png", [0, 0, 0, 9, 0, 0, 0, 0, 0, 0])]
    root = write_ferplus(tmp_path / "f", rows)
    val = build_dataset("ferplus", root, "val")
    assert val.targets == [2] and val.val_source == "file"
    assert len(build_dataset("ferplus", root, "train")) == 3  # nothing carved


def test_affectnet_val_is_carved_from_training_and_test_is_validation_csv(tmp_path):
    from transfer_lib.data.base import VAL_CARVED

    root = write_affectnet(tmp_path / "an", [0] * 10 + [1] * 10 + [7] * 4, [2, 5])
    train8 = build_dataset("affectnet8", root, "train")
    val8 = build_dataset("affectnet8", root, "val")
    assert val8.val_source == VAL_CARVED and val8.targets == [0, 1, 7]
    assert len(train8) == 24 - 3 and len(train8.boxes) == len(train8)
    assert not {p for p, _ in train8.samples} & {p for p, _ in val8.samples}
    val7 = build_dataset("affectnet7", root, "val")  # the same images of the shared classes
    assert val7.samples == val8.samples[:2]
    assert build_dataset("affectnet8", root, "test").targets == [2, 5]
