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


# The command with a Ctrl-C sent from inside its first fork (the moment a pool or a DataLoader
# forks its workers), as a terminal's Ctrl-C that lands there: Python ran the KeyboardInterrupt
# inside the fork's own handlers (logging's), printed "Exception ignored ... KeyboardInterrupt",
# and the command went on to the end (or hung on the lock logging's handler never released).
_CTRL_C_IN_FORK = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's, not a background job's
sent = []
def before_fork():
    if not sent:
        sent.append(1)
        os.kill(os.getpid(), signal.SIGINT)
os.register_at_fork(before=before_fork)
from transfer_lib.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", [
    ["synth", "--out", "out", "--train", "40", "--test", "4", "--workers", "2"],
    ["train", "--profile", "smoke", "--epochs", "1", "--max-steps", "1", "--no-progress",
     "--no-fast", "--workers", "2", "--out", "out"],
])
def test_ctrl_c_while_workers_are_forked(command, tmp_path, monkeypatch):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _CTRL_C_IN_FORK, *command], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip() == "interrupted", r.stderr
    if command[0] == "synth":
        assert list(tmp_path.iterdir()) == []
        return
    # the run stopped in its first epoch: no checkpoint, and --resume starts it over
    assert not (tmp_path / "out" / "last.pt").exists()
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--resume"]) == 0
    assert (tmp_path / "out" / "summary.json").is_file()


def test_ctrl_c_while_the_command_loads(monkeypatch, capsys):
    # importing the command's module (torch: seconds) was outside main's try: a traceback
    import importlib

    def interrupted(name, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib, "import_module", interrupted)
    try:
        code = main(["summary"])
    except KeyboardInterrupt:  # not pytest's own Ctrl-C: that would end the session
        pytest.fail("a Ctrl-C while the command's module loaded escaped main with a traceback")
    assert code == 130
    assert capsys.readouterr().err == "interrupted\n"


# ---------------------------------------------------------------------------------------------
# folders the user may not write to: said before the work, naming the option and the folder
# ---------------------------------------------------------------------------------------------
def _read_only_runner():
    """How to run a command that a read-only folder stops: as root (who writes anywhere) without
    the capabilities that override file permissions; as another user, as it is. None: no way."""
    import os
    import shutil
    import subprocess

    if os.geteuid() != 0:
        return []
    drop = "-dac_override,-dac_read_search"
    prefix = [shutil.which("setpriv") or "setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"]
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True).returncode == 0
    except OSError:
        ok = False
    return prefix if ok else None


def _run_in_read_only(tmp_path, argv):
    import subprocess
    import sys

    prefix = _read_only_runner()
    if prefix is None:
        pytest.skip("root cannot drop its capabilities here (setpriv)")
    return subprocess.run([*prefix, sys.executable, "-m", "transfer_lib", *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_read_only_folder_is_refused_before_the_work(tmp_path, ckpt):
    # eval evaluated the whole data set (bench measured, synth drew) and only then failed
    from tests.data.conftest import write_rafdb

    data = write_rafdb(tmp_path / "RAF-DB", n_train=8, n_test=3)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        for argv, option in (
                (["eval", "--data", str(data), "--checkpoint", str(ckpt), "--device", "cpu",
                  "--json", str(ro / "m.json")], "--json"),
                (["synth", "--out", str(ro / "set"), "--train", "20", "--test", "2"], "--out"),
                (["predict", str(tmp_path), "--checkpoint", str(ckpt), "--no-detect",
                  "--save-crops", str(ro / "crops" / "a")], "--save-crops")):
            r = _run_in_read_only(tmp_path, argv)
            assert r.returncode == 2, r.stderr
            assert r.stderr.startswith(f"error: {option} {argv[argv.index(option) + 1]}: cannot "
                                       f"write in {ro} (Permission denied"), r.stderr
            assert "Traceback" not in r.stderr and r.stdout == "", (r.stdout, r.stderr)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_resume_in_a_read_only_run_folder_says_how_to_go_on(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"weights")
    run.chmod(0o555)
    try:
        r = _run_in_read_only(tmp_path, ["train", "--profile", "smoke", "--out", str(run),
                                         "--resume"])
    finally:
        run.chmod(0o755)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"cannot write the run directory {run} (Permission denied)" in r.stderr
    assert "make it writable or copy it to a folder that is and --resume there" in r.stderr


def test_eval_json_in_a_folder_nobody_can_write_is_refused_first(tmp_path, ckpt, capsys):
    # /sys takes no new file, root or not: the in-process twin of the test above
    import os
    import sys

    if sys.platform != "linux" or not os.path.isdir("/sys"):
        pytest.skip("needs Linux's /sys")
    from tests.data.conftest import write_rafdb

    data = write_rafdb(tmp_path / "RAF-DB", n_train=8, n_test=3)
    argv = ["eval", "--data", str(data), "--checkpoint", str(ckpt), "--json", "/sys/m.json"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: --json /sys/m.json: cannot write in /sys") and out == "", err


@pytest.mark.parametrize("value", ["maybe", "2", "ja"])
def test_transfer_native_of_an_unknown_value_is_refused(value, monkeypatch, capsys):
    # it was taken as "off" without a word: pinned kernels for someone who asked for something
    from transfer_lib.utils.kernels import kernel_state

    monkeypatch.setenv("TRANSFER_NATIVE", value)
    assert main(["summary", "--help"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: TRANSFER_NATIVE={value!r}: expected 1 (or true, yes, on) for "
                   f"PyTorch's own CPU kernels, or 0 (or false, no, off, empty) for the pinned "
                   f"ones; unset it or give one of these\n")
    with pytest.raises(ValueError, match="TRANSFER_NATIVE"):  # a run's provenance, in Python
        kernel_state()


@pytest.mark.parametrize("value", ["", "0", "off", "No", "1", "TRUE", " yes "])
def test_transfer_native_documented_values_are_taken(value, monkeypatch):
    from transfer_lib.utils.kernels import native_env_problem, native_requested

    monkeypatch.setenv("TRANSFER_NATIVE", value)
    assert native_env_problem() is None
    assert native_requested() == (value.strip().lower() in ("1", "true", "yes"))


# ---------------------------------------------------------------------------------------------
# a third round: downloads, environment variables, outputs among a command's inputs
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def bad_server():
    """A server on 127.0.0.1 whose /stall sends 10 of 1000 promised bytes and then nothing, and
    whose /short sends 10 and closes the connection."""
    import http.server
    import threading

    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            if self.path == "/stall":
                release.wait(30)
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    release.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path, words", [
    ("/stall", "(stopped after 10 bytes): timed out"),  # was a TimeoutError traceback
    ("/short", "ended after 10 of its 1000 bytes (the connection was closed)"),  # "sha256 ..."
])
def test_weights_fetch_from_a_server_that_stalls_or_hangs_up(path, words, bad_server, tmp_path,
                                                             monkeypatch, capsys):
    from transfer_lib.weights import fetch

    monkeypatch.setattr(fetch, "TIMEOUT", 1)
    argv = ["weights", "fetch", "vit", "--url", bad_server + path, "--dir", str(tmp_path),
            "--no-progress"]
    assert main(argv) == 2
    assert words in _error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_weights_fetch_writes_a_file_others_may_read(tmp_path, capsys):
    # the download kept mkstemp's mode 0600: a shared weights/ folder others could not read
    import hashlib
    import os

    source = tmp_path / "source.pth"
    source.write_bytes(b"weights")
    old = os.umask(0o022)
    try:
        assert main(["weights", "fetch", "vit", "--url", source.as_uri(), "--dir",
                     str(tmp_path / "w"), "--sha256", hashlib.sha256(b"weights").hexdigest(),
                     "--no-progress"]) == 0
    finally:
        os.umask(old)
    (written,) = (tmp_path / "w").iterdir()
    assert written.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("kind, words", [
    ("folder", "is a folder, not a file"),  # was passed over: "not found in any of those places"
    ("missing", "names nothing (no such file)"),  # the same
    ("empty", "is an empty file (0 bytes)"),  # was "found: ..." and exit 0
])
def test_transfer_ir50_that_names_no_weights_file(kind, words, tmp_path, monkeypatch, capsys):
    target = tmp_path / "ir50.pth"
    if kind == "folder":
        target.mkdir()
    elif kind == "empty":
        target.write_bytes(b"")
    monkeypatch.setenv("TRANSFER_IR50", str(target))
    assert main(["weights", "fetch", "ir50"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"error: TRANSFER_IR50={target} {words}: expected the file ")
    assert "unset TRANSFER_IR50" in err and out == "" and "Traceback" not in err


def test_bench_data_on_a_set_smaller_than_a_batch(tmp_path, capsys):
    # StopIteration with a traceback: no whole batch of 64 among 8 images
    from tests.data.conftest import write_rafdb

    data = write_rafdb(tmp_path / "RAF-DB", n_train=8, n_test=3)
    argv = ["bench", "data", "--data", str(data), "--seconds", "1", "--workers", "0",
            "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 2
    assert "--batch-size 64 is more than the 7 training images of " in _error(capsys)


def test_bench_data_dataset_without_data(capsys):
    # it measured the synthetic set and called it ferplus
    assert main(["bench", "data", "--dataset", "ferplus"]) == 2
    assert "--dataset ferplus needs --data DIR" in _error(capsys)


@pytest.mark.parametrize("argv, words", [
    # BatchNorm's ValueError with a traceback, after the rendering
    (["--identities", "2", "--images", "1", "--batch-size", "1"],
     "batch_size=1: the network's BatchNorm needs at least 2 images a batch"),
    # rendered 100 million images for hours, in memory, before running out of it
    (["--identities", "100000", "--images", "10000"],
     "pretraining on 100000 identities x 10002 images (1,000,200,000 images of "),
])
def test_pretrain_sizes_it_cannot_train(argv, words, tmp_path, capsys):
    assert main(["pretrain", *argv, "--epochs", "1", "--out", str(tmp_path / "p"),
                 "--no-progress"]) == 2
    assert words in _error(capsys)
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("resume", [False, True])
def test_train_out_a_folder_holding_files_of_a_runs_names(resume, tmp_path, capsys):
    # a project folder's own config.json and metrics.jsonl were replaced by the run's
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "config.json").write_text('{"my": "settings"}\n')
    (folder / "metrics.jsonl").write_text("my notes\n")
    argv = [*("train", "--profile", "smoke", "--epochs", "1", "--max-steps", "1"),
            "--no-progress", "--out", str(folder)]
    assert main(argv + (["--resume"] if resume else [])) == 2
    assert (f"--out {folder} holds config.json, metrics.jsonl, which no run of this command "
            f"wrote") in _error(capsys)
    assert (folder / "config.json").read_text() == '{"my": "settings"}\n'
    assert (folder / "metrics.jsonl").read_text() == "my notes\n"


def test_eval_json_over_a_file_of_the_data_set(tmp_path, ckpt, capsys):
    # the metrics replaced RAF-DB's label file; an earlier --json in the folder is replaced
    from tests.data.conftest import write_rafdb

    data = write_rafdb(tmp_path / "RAF-DB", n_train=8, n_test=3)
    labels = data / "basic" / "EmoLabel" / "list_patition_label.txt"
    before = labels.read_bytes()
    argv = ["eval", "--data", str(data), "--checkpoint", str(ckpt), "--device", "cpu", "--json"]
    assert main([*argv, str(labels)]) == 2
    assert f"--json {labels} is a file of the --data folder {data} this command reads" in \
        _error(capsys)
    assert labels.read_bytes() == before
    (data / "metrics.json").write_text('{"accuracy": 0.5}\n')
    assert main([*argv, str(data / "metrics.json")]) == 0
    assert json.loads((data / "metrics.json").read_text())["accuracy"] == 0.0


def test_export_onnx_to_a_path_ending_in_a_slash(tmp_path, ckpt, capsys):
    # `--onnx out/sub/` wrote a file named sub
    target = f"{tmp_path / 'out' / 'sub'}/"
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", target]) == 2
    assert f"--onnx {target} ends in '/', as a folder's name: give a file name, e.g. " \
           f"{target}model.onnx" in _error(capsys)
    assert not (tmp_path / "out").exists()


def test_predict_crops_beside_the_images_never_replace_one(tmp_path, ckpt, capsys):
    # photos/a.png's crop went over photos/a_face1.png, an image it was reading
    a, crop_named = _face(tmp_path / "photos" / "a.png", 40), _face(tmp_path / "photos" /
                                                                   "a_face1.png", 200)
    before = crop_named.read_bytes()
    assert main(["predict", str(tmp_path / "photos"), "--checkpoint", str(ckpt), "--no-detect",
                 "--save-crops", str(tmp_path / "photos")]) == 2
    assert f"a crop of {a} saved there would replace {crop_named}" in _error(capsys)
    assert crop_named.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["a.png", "a_face1.png"]


@pytest.mark.parametrize("argv, option", [
    (["eval", "--data", "."], "--official"),
    (["export", "--onnx", "x.onnx"], "--official"),
    (["train", "--profile", "smoke", "--out", "run"], "--ir50"),
])
def test_weights_option_given_a_folder_says_so(argv, option, tmp_path, monkeypatch, capsys):
    # a folder was said to be "file not found"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    assert main([*argv, option, "weights"]) == 2
    assert _error(capsys).startswith(f"error: {option} weights is a folder, not a file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]


def test_predict_a_large_photo_prints_no_python_warning(tmp_path, ckpt, monkeypatch, capsys):
    # a photo of 90 to 179 megapixels printed PIL's DecompressionBombWarning and its source
    # line; here the limit is lowered so that a 100 x 100 image stands for one
    import warnings

    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 6000)
    photo = _face(tmp_path / "big.png")
    with warnings.catch_warnings(record=True) as caught:  # what python would have printed
        warnings.simplefilter("always")
        assert main(["predict", str(photo), "--checkpoint", str(ckpt), "--no-detect"]) == 0
    assert not [w for w in caught if issubclass(w.category, PILImage.DecompressionBombWarning)]
    out, err = capsys.readouterr()
    assert err == "" and out.startswith(f"{photo}  face 1/1"), err
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 4000)  # twice over: refused, and said
    assert main(["predict", str(photo), "--checkpoint", str(ckpt), "--no-detect"]) == 1
    assert "Scale it down (a face needs a few hundred pixels)" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# a fourth round: what a refused command leaves, environment variables, stdin
# ---------------------------------------------------------------------------------------------
def test_a_refused_train_leaves_its_out_folder_as_it_found_it(tmp_path, capsys):
    # a .lock stayed in the folder found, and the parents of a nested --out stayed behind
    found = tmp_path / "found"
    found.mkdir()
    (found / "metrics.jsonl").write_text("my notes\n")
    base = ["train", "--profile", "smoke", "--epochs", "1", "--no-progress", "--out"]
    assert main([*base, str(found)]) == 2
    _error(capsys)
    assert sorted(p.name for p in found.iterdir()) == ["metrics.jsonl"]
    assert main([*base, str(tmp_path / "new" / "deep"), "--data", str(tmp_path / "none")]) == 2
    _error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["found"]


@pytest.mark.parametrize("sub", ["", "sub"])
def test_transfer_cache_that_is_a_file_is_named(sub, tmp_path, monkeypatch, capsys):
    # "error: FILE/synthetic-48-21-XXXX: Not a directory", naming no variable
    a_file = tmp_path / "cache"
    a_file.write_text("not a folder\n")
    monkeypatch.setenv("TRANSFER_CACHE", str(a_file / sub) if sub else str(a_file))
    argv = ["train", "--profile", "smoke", "--fast", "--epochs", "1", "--max-steps", "1",
            "--no-progress", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = _error(capsys)
    assert err.startswith(f"error: TRANSFER_CACHE={a_file / sub if sub else a_file} ")
    assert "not a folder" in err and "set it to a folder" in err and "or unset it" in err
    assert not (tmp_path / "run").exists()
