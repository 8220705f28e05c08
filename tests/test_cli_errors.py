"""Bad input on the command line ends in ``error: ...`` and exit 2, never a traceback (issue 12).

Each case is a probe a careful user ran; the files are tiny and made up here, checkpoints are
written untrained (a model's weights at initialisation), so the whole module takes seconds.
"""

import json
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch

from tests.data.conftest import write_ferplus, write_rafdb
from tests.data.test_loaders import bomb_jpeg
from transfer_lib.cli import main
from transfer_lib.data.affectnet import AFFECTNET_CLASSES
from transfer_lib.data.ferplus import FERPLUS_CLASSES
from transfer_lib.models import make_config, model_from_config
from transfer_lib.weights.checkpoint import save_atomic

SMOKE = ["train", "--profile", "smoke", "--epochs", "1", "--max-steps", "1", "--no-progress"]


def fake_checkpoint(path: Path, class_names=None, edit=None) -> Path:
    """An untrained tiny TransFER saved as `train` saves best.pt; ``edit(ckpt)`` spoils it."""
    names = tuple(class_names) if class_names else None
    mc = make_config("transfer", "tiny", num_classes=len(names or range(7)),
                     **({"class_names": names} if names else {}))
    ckpt = {"model": model_from_config(mc).state_dict(), "config": mc.to_dict(), "epoch": 1,
            "accuracy": 0.0}
    if edit is not None:
        edit(ckpt)
    save_atomic(ckpt, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return fake_checkpoint(tmp_path_factory.mktemp("ck") / "best.pt")


@pytest.fixture
def rafdb(tmp_path):
    # 8 training images: class 2 has two, so that a val split can be carved from train
    return write_rafdb(tmp_path / "RAF-DB", n_train=8, n_test=3)


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") or "\nerror: " in err, err
    assert "Traceback" not in err, err
    return err


def _image(root: Path, split: str = "test", i: int = 1) -> Path:
    return root / "basic" / "Image" / "aligned" / f"{split}_{i:05d}_aligned.jpg"


# ---------------------------------------------------------------------------------------------
# images and label files
# ---------------------------------------------------------------------------------------------
def test_decompression_bomb_in_train(rafdb, tmp_path, capsys):
    bomb_jpeg(_image(rafdb, "train", 2))
    assert main([*SMOKE, "--data", str(rafdb), "--out", str(tmp_path / "r")]) == 2
    assert "refused image" in _error(capsys)


def test_decompression_bomb_in_eval(rafdb, ckpt, capsys):
    bomb_jpeg(_image(rafdb))
    assert main(["eval", "--data", str(rafdb), "--checkpoint", str(ckpt)]) == 2
    assert "refused image" in _error(capsys)


def test_decompression_bomb_in_predict(tmp_path, ckpt, capsys):
    bomb = bomb_jpeg(tmp_path / "huge.jpg")
    assert main(["predict", str(bomb), "--checkpoint", str(ckpt), "--no-detect"]) == 1
    err = capsys.readouterr().err
    assert f"cannot read {bomb}" in err and "Traceback" not in err


def test_corrupt_image_with_worker_processes_prints_the_message_only(rafdb, ckpt, capsys):
    _image(rafdb, "test", 2).write_bytes(b"not a jpeg at all")
    assert main(["eval", "--data", str(rafdb), "--checkpoint", str(ckpt), "--workers", "2"]) == 2
    err = _error(capsys)
    assert "corrupt or unreadable image" in err and "test_00002_aligned.jpg" in err
    assert "Original Traceback" not in err and "DataLoader worker" not in err
    assert len(err.splitlines()) == 1


def test_corrupt_image_in_training_workers(rafdb, tmp_path, capsys):
    _image(rafdb, "train", 3).write_bytes(b"\xff\xd8 broken")
    assert main([*SMOKE, "--data", str(rafdb), "--workers", "2", "--out", str(tmp_path / "r")]) == 2
    err = _error(capsys)
    assert "corrupt or unreadable image" in err and "Original Traceback" not in err


def _labels(root: Path) -> Path:
    return root / "basic" / "EmoLabel" / "list_patition_label.txt"


def test_label_file_in_utf16_is_read(rafdb, ckpt, capsys):
    _labels(rafdb).write_bytes(_labels(rafdb).read_text().encode("utf-16"))
    assert main(["eval", "--data", str(rafdb), "--checkpoint", str(ckpt)]) == 0


def test_label_file_that_is_not_utf8(rafdb, ckpt, capsys):
    _labels(rafdb).write_bytes(_labels(rafdb).read_bytes() + "test_00009.jpg 1 \xe9\n".encode("cp1252"))
    assert main(["eval", "--data", str(rafdb), "--checkpoint", str(ckpt)]) == 2
    assert "not UTF-8 text" in _error(capsys)


def test_label_superscript_two(rafdb, ckpt, capsys):
    text = _labels(rafdb).read_text().replace("test_00001.jpg 2", "test_00001.jpg \u00b2")
    _labels(rafdb).write_text(text)
    assert main(["eval", "--data", str(rafdb), "--checkpoint", str(ckpt)]) == 2
    assert "unknown label '\u00b2'" in _error(capsys)


@pytest.mark.parametrize("bad_row", ["0,1 2 x,PrivateTest", "0"])
def test_ferplus_malformed_rows(tmp_path, bad_row, capsys):
    rows = [("PrivateTest", f"fer{i:07d}.png", [0, 8, 0, 0, 0, 0, 0, 0, 0, 0]) for i in range(3)]
    root = write_ferplus(tmp_path / "fer", rows)
    lines = (root / "fer2013.csv").read_text().splitlines()
    lines[2] = bad_row
    (root / "fer2013.csv").write_text("\n".join(lines) + "\n")
    ck = fake_checkpoint(tmp_path / "f.pt", FERPLUS_CLASSES)
    assert main(["eval", "--dataset", "ferplus", "--data", str(root), "--checkpoint", str(ck)]) == 2
    assert "fer2013.csv, line 3" in _error(capsys)


def test_eval_says_how_many_faces_the_protocol_left_out(tmp_path, capsys):
    rows = [("PrivateTest", f"fer{i:07d}.png", [0, 8, 0, 0, 0, 0, 0, 0, 0, 0]) for i in range(3)]
    rows.append(("PrivateTest", "fer0000009.png", [0, 0, 0, 0, 0, 0, 0, 0, 8, 2]))  # unknown
    root = write_ferplus(tmp_path / "fer", rows)
    ck = fake_checkpoint(tmp_path / "f.pt", FERPLUS_CLASSES)
    assert main(["eval", "--dataset", "ferplus", "--data", str(root), "--checkpoint", str(ck)]) == 0
    assert "left out by the data set's protocol: 1 no majority label" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def _unknown_field(ck):
    ck["config"]["attention_kind"] = "linear"  # a field of a future version


def _eight_classes(ck):
    ck["config"]["num_classes"] = 8
    ck["config"]["class_names"] = list(FERPLUS_CLASSES)


def _other_width(ck):
    ck["config"]["embed_dim"] = 128


def _config_not_a_dict(ck):
    ck["config"] = [1, 2]


@pytest.mark.parametrize("edit, words", [
    (_unknown_field, ["cannot build", "attention_kind", "another version"]),
    (_eight_classes, ["do not fit", "size mismatch", "head.weight"]),
    (_other_width, ["do not fit", "size mismatch"]),
    (_config_not_a_dict, ["cannot build", "not a dict"]),
])
def test_checkpoint_whose_config_does_not_match(tmp_path, rafdb, edit, words, capsys):
    ck = fake_checkpoint(tmp_path / "x.pt", edit=edit)
    assert main(["eval", "--data", str(rafdb), "--checkpoint", str(ck)]) == 2
    err = _error(capsys)
    assert all(w in err for w in words), err


def test_affectnet7_checkpoint_on_rafdb_is_refused_by_class_names(tmp_path, rafdb, capsys):
    ck = fake_checkpoint(tmp_path / "an7.pt", AFFECTNET_CLASSES[:7])
    assert main(["eval", "--data", str(rafdb), "--checkpoint", str(ck)]) == 2
    err = _error(capsys)
    assert "other classes" in err and "Happy" in err and "Happiness" in err


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo payload ran",))


def test_refused_files_never_advise_weights_only_false(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        torch.save({"model": _Payload(), "config": {}}, f, pickle_module=pickle)
    assert main(["eval", "--checkpoint", str(evil), "--data", str(tmp_path)]) == 2
    err = _error(capsys)
    assert "refused by safe (weights-only) loading" in err and "posix.system" in err
    assert main([*SMOKE, "--ir50", str(evil), "--out", str(tmp_path / "r")]) == 2
    err += _error(capsys)
    for advice in ("weights_only=False", "weights_only` set to `False", "will likely succeed",
                   "can still be loaded"):
        assert advice not in err


def test_own_checkpoint_given_as_ir50(tmp_path, ckpt, capsys):
    assert main([*SMOKE, "--ir50", str(ckpt), "--out", str(tmp_path / "r")]) == 2
    err = _error(capsys)
    assert "is a transfer_lib checkpoint" in err and "--resume" in err and "eval --checkpoint" in err


# ---------------------------------------------------------------------------------------------
# output paths
# ---------------------------------------------------------------------------------------------
def test_eval_json_at_a_folder_or_under_a_file(tmp_path, rafdb, ckpt, capsys):
    assert main(["eval", "--data", str(rafdb), "--checkpoint", str(ckpt), "--json", str(tmp_path)]) == 2
    assert "is a folder" in _error(capsys)
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert main(["eval", "--data", str(rafdb), "--checkpoint", str(ckpt),
                 "--json", str(f / "m.json")]) == 2
    assert "is a file, not a folder" in _error(capsys)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk(rafdb, ckpt, capsys):
    assert main(["eval", "--data", str(rafdb), "--checkpoint", str(ckpt), "--json", "/dev/full"]) == 2
    assert "No space left on device" in _error(capsys)
    import stat

    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # written to, never replaced by a file


@pytest.mark.skipif(sys.platform != "linux" or os.access("/sys", os.W_OK) and os.geteuid() != 0,
                    reason="needs a folder this user cannot write to")
def test_read_only_folders(rafdb, ckpt, capsys):
    assert main([*SMOKE, "--out", "/sys/transfer-run"]) == 2
    assert "/sys/transfer-run" in _error(capsys)
    assert main(["eval", "--data", str(rafdb), "--checkpoint", str(ckpt),
                 "--json", "/sys/transfer-metrics.json"]) == 2
    assert "/sys/transfer-metrics.json" in _error(capsys)


def test_predict_json_and_crops_paths(tmp_path, ckpt, capsys):
    img = _image(write_rafdb(tmp_path / "r", n_train=1, n_test=1))
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert main(["predict", str(img), "--checkpoint", str(ckpt), "--json", str(tmp_path)]) == 2
    assert "is a folder" in _error(capsys)
    assert main(["predict", str(img), "--checkpoint", str(ckpt), "--no-detect",
                 "--save-crops", str(f)]) == 2
    assert "is a file, not a folder" in _error(capsys)


def test_predict_a_folder_reads_its_images(tmp_path, ckpt, capsys):
    root = write_rafdb(tmp_path / "r", n_train=2, n_test=1)
    folder = root / "basic" / "Image" / "aligned"
    out = tmp_path / "p.json"
    assert main(["predict", str(folder), "--checkpoint", str(ckpt), "--no-detect",
                 "--json", str(out)]) == 0
    assert [Path(r["image"]).name for r in json.loads(out.read_text())] == [
        "test_00001_aligned.jpg", "train_00001_aligned.jpg", "train_00002_aligned.jpg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(empty), "--checkpoint", str(ckpt)]) == 2
    assert "folder without images" in _error(capsys)


def test_predict_dash_says_standard_input_is_not_read(tmp_path, ckpt, monkeypatch, capsys):
    # "cannot read -: No such file or directory", exit 1
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "-", "--checkpoint", str(ckpt), "--no-detect"]) == 2
    err = _error(capsys)
    assert "reading a photo from standard input is not supported" in err
    assert "give an image file or a folder of images" in err


# ---------------------------------------------------------------------------------------------
# numbers and names
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, words", [
    (["--workers", "-1"], "--workers -1: expected an integer, 0 or more and at most 1024"),
    (["--batch-size", "0"], "--batch-size 0: expected an integer, 1 or more and at most 65536"),
    (["--batch-size", "10**9"], "--batch-size '10**9': expected an integer, 1 or more"),
    (["--batch-size", "1000000000"], "--batch-size 1000000000: expected an integer"),
    (["--lr", "inf"], "--lr inf: expected a finite number in (0, 10]"),
    (["--lr", "-1"], "--lr -1: expected a finite number in (0, 10]"),
    (["--weight-decay", "nan"], "--weight-decay nan: expected a finite number in [0, 10]"),
    (["--seed", "-1"], "--seed -1: expected an integer, 0 or more and at most 4294967295"),
    (["--seed", "2**70"], "--seed '2**70': expected an integer, 0 or more"),
    (["--seed", str(2**70)], f"--seed {2**70}: expected an integer, 0 or more"),
    (["--label-smoothing", "2"], "--label-smoothing 2: expected a finite number in [0, 1]"),
    (["--milestones", "30,15"], "--milestones 30,15: expected comma-separated integers in "
                                "increasing order"),
    (["--regularise-from-epoch", "-1"], "--regularise-from-epoch -1: expected an integer, 0 or "
                                        "more and at most 10000"),
    (["--regularise-from-epoch", "nan"], "--regularise-from-epoch nan: expected an integer"),
    (["--regularise-from-epoch", "1.5"], "--regularise-from-epoch 1.5: expected an integer"),
    (["--regularise-from-epoch", str(10**30)], f"--regularise-from-epoch {10**30}: expected"),
])
def test_train_bad_numbers_are_refused_while_parsing(tmp_path, argv, words, capsys):
    assert main([*SMOKE, *argv, "--out", str(tmp_path / "r")]) == 2
    err = _error(capsys)
    assert err == f"error: {words}" or err.startswith(f"error: {words}"), err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, note", [
    (["--regularise-from-epoch", "0"], None),
    (["--regularise-from-epoch", "1"], None),  # the smoke profile's last epoch (0-based)
    (["--regularise-from-epoch", "2"], "2 is not below the run's 2 epochs"),
    (["--regularise-from-epoch", "10000"], "10000 is not below the run's 2 epochs"),
    (["--regularise-from-epoch", "3", "--epochs", "5"], None),
    (["--regularise-from-epoch", "5", "--epochs", "5"], "5 is not below the run's 5 epochs"),
    ([], None),
])
def test_regularise_from_epoch_beyond_the_run_never_drops(argv, note, capsys):
    """At or beyond the run's epochs is allowed (the regularisers never drop: a control), and
    one note on stderr says so; below it, nothing is said."""
    from transfer_lib.cli import build_parser
    from transfer_lib.cli.train import config_from_args, never_drops_note

    args = build_parser().parse_args(["train", "--profile", "smoke", *argv])
    config = config_from_args(args)
    config.validate()
    line = never_drops_note(args, config)
    err = capsys.readouterr().err
    if note is None:
        assert line is None and err == ""
    else:
        assert note in line and "never drop" in line and err == line + "\n"


def test_train_bad_device(tmp_path, capsys):
    assert main([*SMOKE, "--device", "foo", "--out", str(tmp_path / "r")]) == 2
    assert "--device 'foo' is not a device" in _error(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, words", [
    (["bench", "data", "--seconds", "-1"], "--seconds -1: expected a finite number in (0, 86400]"),
    (["bench", "train", "--steps", "-1"], "--steps -1: expected an integer, 1 or more"),
    (["bench", "train", "--batch-sizes", "16,8"], "--batch-sizes 16,8: expected comma-separated"),
    (["pretrain", "--workers", "-1"], "--workers -1: expected an integer, 1 or more"),
    (["eval", "--checkpoint", "x.pt", "--occlusion", "--render-workers", "-1"],
     "--render-workers -1: expected an integer, 1 or more"),
    (["eval", "--checkpoint", "x.pt", "--workers", "-1"],
     "--workers -1: expected an integer, 0 or more and at most 1024"),
    (["eval", "--checkpoint", "x.pt", "--batch-size", "0"],
     "--batch-size 0: expected an integer, 1 or more and at most 65536"),
    (["ablate", "--seeds", str(10**12)], f"--seeds {10**12}: expected N, or NAME=N items"),
    (["attention", "--runs", "x", "--top", "0"], "--top 0: expected a finite number in (0, 1)"),
    (["export", "--checkpoint", "x.pt", "--onnx", "x.onnx", "--atol", "nan"],
     "--atol nan: expected a finite number, above 0"),
    (["summary", "--batch-size", "100000"], "--batch-size 100000: expected an integer, 1 or more "
                                            "and at most 256"),
])
def test_other_bad_numbers_are_refused_while_parsing(argv, words, capsys):
    assert main(argv) == 2
    err = _error(capsys)
    assert err.startswith(f"error: {words}") and len(err.splitlines()) == 1, err


def test_bench_data_takes_the_data_sets_names(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "data", "--dataset", "foo"])
    assert e.value.code == 2
    assert "argument --dataset: invalid choice: 'foo'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["--device", "foo"], "--device 'foo' is not a device"),
    (["--split", "dev"], "--split dev: rafdb has the splits train, val, test"),
])
def test_eval_bad_values(rafdb, ckpt, argv, words, capsys):
    assert main(["eval", "--data", str(rafdb), "--checkpoint", str(ckpt), *argv]) == 2
    assert words in _error(capsys)


def test_eval_occlusion_takes_no_value(rafdb, ckpt, capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--data", str(rafdb), "--checkpoint", str(ckpt), "--occlusion", "2"])
    assert e.value.code == 2
    assert "unrecognized arguments: 2" in capsys.readouterr().err


def test_predict_bad_device(tmp_path, ckpt, capsys):
    img = _image(write_rafdb(tmp_path / "r", n_train=1, n_test=1))
    assert main(["predict", str(img), "--checkpoint", str(ckpt), "--device", "foo"]) == 2
    assert "--device 'foo' is not a device" in _error(capsys)
