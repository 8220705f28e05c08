"""``weights fetch``: a download is checked against its sha256 before it appears under its name,
and nothing half-written or unchecked is left behind. Served from local ``file://`` URLs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from transfer_lib.cli import main
from transfer_lib.utils.errors import TransferError
from transfer_lib.weights import fetch as weights


@pytest.fixture
def served(tmp_path):
    """A file to download: (file:// URL, its bytes, their sha256)."""
    data = bytes(range(256)) * 5000  # 1.28 MB: several chunks
    src = tmp_path / "server" / "remote.pth"
    src.parent.mkdir()
    src.write_bytes(data)
    return src.as_uri(), data, hashlib.sha256(data).hexdigest()


def test_fetch_vit_checks_the_full_sha256(served, tmp_path, capsys):
    url, data, digest = served
    out = tmp_path / "weights"
    assert main(["weights", "fetch", "vit", "--url", url, "--sha256", digest, "--dir", str(out),
                 "--no-progress"]) == 0
    assert (out / weights.VIT_FILE).read_bytes() == data
    assert [p.name for p in out.iterdir()] == [weights.VIT_FILE]  # no temporary file left
    assert digest in capsys.readouterr().out
    # run again: the file is checked and kept, not downloaded again
    assert main(["weights", "fetch", "vit", "--url", "file:///nonexistent", "--sha256", digest,
                 "--dir", str(out)]) == 0
    assert "already there" in capsys.readouterr().out


def test_fetch_vit_bad_hash_leaves_nothing(served, tmp_path, capsys):
    url, _, digest = served
    out = tmp_path / "weights"
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    assert main(["weights", "fetch", "vit", "--url", url, "--sha256", wrong, "--dir", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"has sha256 {digest}, expected one starting with {wrong}" in err
    assert "deleted" in err
    assert list(out.iterdir()) == []  # neither the file nor a partial download


def test_fetch_vit_default_hash_is_the_prefix_in_the_name(served, tmp_path):
    """Without --sha256 (and with no full hash recorded) the 8 digits in the name are checked:
    the test's bytes are not timm's file, so the download is refused and removed."""
    url, _, _ = served
    assert weights.VIT_SHA256 is None or len(weights.VIT_SHA256) == 64
    assert weights.expected_hash(weights.VIT_FILE) == "15ec54c9"
    with pytest.raises(TransferError, match="expected one starting with 15ec54c9"):
        weights.fetch_vit(tmp_path / "w", url=url, progress=False)
    assert list((tmp_path / "w").iterdir()) == []


def test_download_uses_the_name_prefix_and_refuses_unchecked(served, tmp_path):
    url, data, digest = served
    good = weights.download(url, tmp_path / f"toy-{digest[:8]}.pth", progress=False)
    assert good.read_bytes() == data
    with pytest.raises(TransferError, match="no sha256 to check"):
        weights.download(url, tmp_path / "toy.pth", progress=False)
    assert not (tmp_path / "toy.pth").exists()


def test_existing_file_with_another_hash_is_not_overwritten(served, tmp_path, capsys):
    url, data, digest = served
    out = tmp_path / "weights"
    out.mkdir()
    (out / weights.VIT_FILE).write_bytes(b"something else")
    assert main(["weights", "fetch", "vit", "--url", url, "--sha256", digest, "--dir",
                 str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / weights.VIT_FILE).read_bytes() == b"something else"
    assert main(["weights", "fetch", "vit", "--url", url, "--sha256", digest, "--dir", str(out),
                 "--force", "--no-progress"]) == 0
    assert (out / weights.VIT_FILE).read_bytes() == data


def test_fetch_errors_are_clear(tmp_path, capsys):
    assert main(["weights", "fetch", "vit", "--url", (tmp_path / "absent.pth").as_uri(),
                 "--sha256", "ab" * 32, "--dir", str(tmp_path / "w")]) == 2
    assert "cannot download" in capsys.readouterr().err
    assert list((tmp_path / "w").iterdir()) == []
    assert main(["weights", "fetch", "vit", "--sha256", "xyz", "--dir", str(tmp_path)]) == 2
    assert "hex digits" in capsys.readouterr().err


def test_fetch_ir50_explains_where(tmp_path, capsys):
    assert main(["weights", "fetch", "ir50", "--dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert weights.IR50_FILE in out and "github.com/ZhaoJ9014/face.evoLVe" in out
    assert "MyDrive/weights" in out and "not found" in out
    (tmp_path / weights.IR50_FILE).write_bytes(b"x")
    assert main(["weights", "fetch", "ir50", "--dir", str(tmp_path)]) == 0
    assert f"found: {tmp_path / weights.IR50_FILE}" in capsys.readouterr().out


def test_a_killed_fetch_leaves_a_temporary_the_next_one_removes(served, tmp_path, monkeypatch,
                                                                capsys):
    # mkstemp's .NAME.XXXXXXXX.part stayed after a kill, and nothing ever removed it
    import os
    import subprocess
    import sys
    import time

    from transfer_lib.utils.atomic import TEMP_NAME

    url, data, digest = served
    out = tmp_path / "weights"
    out.mkdir()
    seen = []

    def killed(*args, **kwargs):  # the temporary exists while the download runs
        seen.extend(p.name for p in out.iterdir())
        raise KeyboardInterrupt

    monkeypatch.setattr(weights.urllib.request, "urlopen", killed)
    with pytest.raises(KeyboardInterrupt):
        weights.download(url, out / weights.VIT_FILE, digest, progress=False)
    (name,) = seen
    match = TEMP_NAME.match(name)
    assert match and match["target"] == weights.VIT_FILE and match["pid"] == str(os.getpid())
    monkeypatch.undo()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    stale = [out / f".{weights.VIT_FILE}.{proc.pid}.0123abcd.tmp",
             out / f".{weights.VIT_FILE}.x_7kq2ab.part"]  # an earlier version's, 2 hours old
    for p in stale:
        p.write_bytes(b"half a download")
    os.utime(stale[1], (time.time() - 7200,) * 2)
    assert main(["weights", "fetch", "vit", "--url", url, "--sha256", digest, "--dir", str(out),
                 "--no-progress"]) == 0
    assert [p.name for p in out.iterdir()] == [weights.VIT_FILE]
    err = capsys.readouterr().err
    assert all(f"removed {p}: the temporary of an interrupted write" in err for p in stale)


@pytest.mark.parametrize("kind, words", [
    ("empty", "is an empty file (0 bytes)"),  # was "found: ..." and exit 0
    ("folder", "is a folder, not a file"),
])
def test_fetch_ir50_dir_holding_no_weights_is_refused(kind, words, tmp_path, capsys):
    target = tmp_path / weights.IR50_FILE
    if kind == "empty":
        target.write_bytes(b"")
    else:
        target.mkdir()
    assert main(["weights", "fetch", "ir50", "--dir", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"error: {target} {words}: expected face.evoLVe's IR-50 weights")
    assert "found:" not in out and "Traceback" not in err


def test_an_empty_file_in_weights_is_passed_over_with_a_warning(tmp_path, monkeypatch, capsys):
    """A failed download leaves a 0-byte file in weights/: the chapters must not load it."""
    from transfer_lib.weights.fetch import find_weights

    monkeypatch.delenv("X_WEIGHTS", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "w-empty.pth").write_bytes(b"")
    assert find_weights("w-empty.pth", "X_WEIGHTS") is None
    assert "w-empty.pth is an empty file (0 bytes), passed over" in capsys.readouterr().err
    (tmp_path / "weights" / "w-empty.pth").write_bytes(b"x")
    assert find_weights("w-empty.pth", "X_WEIGHTS") == Path("weights") / "w-empty.pth"
