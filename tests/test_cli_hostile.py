"""A second hostile trial of the command line: an output path that is one of the command's own
inputs, outputs that would replace one another, files that are not what an option expects. Each
case ends in one ``error:`` line and exit 1 or 2, never a traceback, and nothing of the user's is
replaced or lost. Checkpoints are untrained tiny models (``tests.test_cli_errors``)."""

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.test_cli_errors import fake_checkpoint
from transfer_lib.cli import main


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return fake_checkpoint(tmp_path_factory.mktemp("ck") / "best.pt")


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert "error: " in err and "Traceback" not in err, err
    return err


def _face(path: Path, shade: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (100, 100), (shade, shade // 2, 90)).save(path)
    return path


@pytest.mark.parametrize("command", ["eval", "export"])
def test_output_over_the_checkpoint_read_is_refused(command, tmp_path, ckpt, capsys):
    # `eval --json best.pt` put the metrics over the weights; `export --onnx best.pt` the graph
    mine = tmp_path / "best.pt"
    mine.write_bytes(ckpt.read_bytes())
    before = mine.read_bytes()
    option = "--json" if command == "eval" else "--onnx"
    argv = [command, "--checkpoint", str(mine), option, str(tmp_path / "." / "best.pt")]
    assert main(argv + (["--data", str(tmp_path)] if command == "eval" else [])) == 2
    assert "is also the --checkpoint file this command reads" in _error(capsys)
    assert mine.read_bytes() == before


def test_predict_json_over_an_input_image_is_refused(tmp_path, ckpt, capsys):
    photo = _face(tmp_path / "photos" / "me.png")
    before = photo.read_bytes()
    argv = ["predict", str(tmp_path / "photos"), "--checkpoint", str(ckpt), "--no-detect",
            "--json", str(photo)]
    assert main(argv) == 2
    assert "is also the IMAGE file this command reads" in _error(capsys)
    assert photo.read_bytes() == before


def test_predict_crops_of_images_sharing_a_stem_do_not_replace_one_another(tmp_path, ckpt):
    # a/face.jpg, b/face.jpg and a/face.png all made crops/face_face1.png, the last one winning
    images = [_face(tmp_path / "a" / "face.jpg", 40), _face(tmp_path / "b" / "face.jpg", 140),
              _face(tmp_path / "a" / "face.png", 240)]
    crops, out = tmp_path / "crops", tmp_path / "out.json"
    assert main(["predict", *map(str, images), "--checkpoint", str(ckpt), "--no-detect",
                 "--save-crops", str(crops), "--json", str(out)]) == 0
    written = [e["faces"][0]["crop"] for e in json.loads(out.read_text())]
    assert [Path(p).name for p in written] == ["face_face1.png", "face-2_face1.png",
                                               "face-3_face1.png"]
    assert sorted(p.name for p in crops.iterdir()) == sorted(Path(p).name for p in written)


@pytest.mark.parametrize("content", ["my notes, not JSON\n", "[1, 2]\n"])
def test_bench_train_append_to_a_file_it_did_not_write(content, tmp_path, capsys):
    notes = tmp_path / "notes.json"
    notes.write_text(content)
    argv = ["bench", "train", "--device", "cpu", "--append", "--out", str(notes), "--steps", "1",
            "--warmup", "0", "--batch-sizes", "2", "--configs", "baseline"]
    assert main(argv) == 2
    assert f"--append: {notes} is " in _error(capsys)
    assert notes.read_text() == content


def test_bench_train_profile_of_a_configuration_not_run(tmp_path, capsys):
    # it printed "wrote prof.txt" and wrote nothing
    prof = tmp_path / "prof.txt"
    argv = ["bench", "train", "--device", "cpu", "--steps", "1", "--warmup", "0", "--batch-sizes",
            "2", "--configs", "baseline", "--profile-out", str(prof), "--profile-config", "amp"]
    assert main(argv) == 2
    assert "--profile-config amp is not among --configs baseline" in _error(capsys)
    assert not prof.exists()


def test_eval_beside_a_summary_json_not_of_its_run(tmp_path, capsys):
    # a summary.json saying "complete" without the run's figures made describe_checkpoint raise
    # TypeError (100 * None); and a best.pt edited to hold no val_accuracy, KeyError
    from tests.data.conftest import write_rafdb

    run = tmp_path / "copied"
    ck = fake_checkpoint(run / "best.pt", edit=lambda c: c.update(selected_on="validation"))
    (run / "summary.json").write_text('{"complete": true, "best_selected_on": "validation"}')
    data = write_rafdb(tmp_path / "RAF-DB", n_train=2, n_test=3)
    assert main(["eval", "--data", str(data), "--checkpoint", str(ck), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "validation accuracy (not recorded;" in out and "The run:" not in out


def test_checkpoint_that_is_a_folder(tmp_path, capsys):
    # a run directory, or a folder named like a checkpoint, was reported "not found"
    (tmp_path / "best.pt").mkdir()
    assert main(["eval", "--data", str(tmp_path), "--checkpoint", str(tmp_path / "best.pt")]) == 2
    assert f"checkpoint {tmp_path / 'best.pt'} is a folder, not a checkpoint file" in _error(capsys)


def test_ctrl_c_during_synth_leaves_nothing_and_prints_no_traceback(tmp_path):
    """Ctrl-C reaches the whole process group (the parent and its drawing workers): the command
    says "interrupted" once and exits 130, no worker prints a traceback, and neither the set nor
    its temporary folder is left behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "transfer_lib", "synth", "--out", "out",
                             "--train", "3000", "--test", "10", "--workers", "2"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            # a shell that runs jobs in the background (make, CI) starts them
                            # with Ctrl-C ignored, and Python then never raises
                            # KeyboardInterrupt: give the command a terminal's default
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.name.startswith(".out") for p in
                                             tmp_path.iterdir()):
        time.sleep(0.1)  # until the temporary folder exists: drawing has begun
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted", err
    assert list(tmp_path.iterdir()) == []


def test_a_label_file_that_is_a_folder_is_said_to_be_one(tmp_path):
    from transfer_lib.data import build_dataset
    from transfer_lib.utils.errors import DataError

    basic = tmp_path / "basic"
    (basic / "EmoLabel" / "list_patition_label.txt").mkdir(parents=True)
    (basic / "Image" / "aligned").mkdir(parents=True)
    with pytest.raises(DataError, match="is a folder, not a file"):
        build_dataset("rafdb", tmp_path, "train")
