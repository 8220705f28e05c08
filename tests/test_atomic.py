"""transfer_lib.utils.atomic: whole-file writes (atomic_path, atomic_write_bytes) and the one remover of
the temporaries that killed writes leave (remove_stale_temporaries)."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import time

import pytest

from transfer_lib.utils.atomic import (
    TEMP_NAME,
    atomic_path,
    atomic_write_bytes,
    process_alive,
    remove_stale_temporaries,
    temporary_name,
)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_dead_processes_temporary_goes_a_live_ones_stays(tmp_path, capsys):
    dead = _dead_pid()
    gone = tmp_path / f".last.pt.{dead}.0123abcd.tmp"
    mine = temporary_name(tmp_path / "last.pt")  # this process's
    parent = tmp_path / f".last.pt.{os.getppid()}.0123abcd.tmp"  # another running process's
    for p in (gone, mine, parent):
        p.write_bytes(b"half")
    assert TEMP_NAME.match(mine.name)
    assert remove_stale_temporaries(tmp_path, quiet=False) == [gone]
    assert not gone.exists() and mine.exists() and parent.exists()
    assert capsys.readouterr().err == (f"removed {gone}: the temporary of an interrupted write "
                                       f"(process {dead} is gone)\n")
    assert remove_stale_temporaries(tmp_path) == []  # quiet by default, nothing left to do


def test_links_folders_and_foreign_files_are_never_removed(tmp_path):
    dead = _dead_pid()
    real = tmp_path / "real.pt"
    real.write_bytes(b"weights")
    link = tmp_path / f".last.pt.{dead}.0123abcd.tmp"
    link.symlink_to(real)  # a link named like a temporary: neither it nor its file goes
    dangling = tmp_path / f".best.pt.{dead}.0123abcd.tmp"
    dangling.symlink_to(tmp_path / "nowhere")
    folder = tmp_path / f".config.json.{dead}.89abcdef.tmp"
    (folder / "inside").mkdir(parents=True)
    foreign = [tmp_path / n for n in ("notes.txt", f"last.pt.{dead}.0123abcd.tmp",
                                      f".last.pt.{dead}.0123abcd.tmp.bak",
                                      f".last.pt.{dead}.0123ABCD.tmp", f".last.pt.{dead}.tmp",
                                      ".last.pt.x_7kq2ab.tmp")]
    for p in foreign:
        p.write_bytes(b"mine")
    old = time.time() - 7200
    os.utime(foreign[-1], (old, old))  # old, but no legacy pattern was asked for
    assert remove_stale_temporaries(tmp_path) == []
    assert link.is_symlink() and dangling.is_symlink() and real.read_bytes() == b"weights"
    assert (folder / "inside").is_dir() and all(p.read_bytes() == b"mine" for p in foreign)
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_names_and_legacy_patterns(tmp_path, capsys):
    dead = _dead_pid()
    run_file = tmp_path / f".last.pt.{dead}.0123abcd.tmp"
    other = tmp_path / f".notes.txt.{dead}.0123abcd.tmp"  # not among the names asked for
    by_pid = tmp_path / f".occlusion.{dead}.json"
    by_pid_alive = tmp_path / f".occlusion.{os.getpid()}.json"
    old, new = tmp_path / ".best.pt.x_7kq2ab.tmp", tmp_path / ".best.pt.y_8kq2ab.tmp"
    for p in (run_file, other, by_pid, by_pid_alive, old, new):
        p.write_bytes(b"half")
    hours_ago = time.time() - 7200
    os.utime(old, (hours_ago, hours_ago))
    legacy = [r"^\.occlusion\.(?P<pid>[1-9][0-9]*)\.json$", r"^\.best\.pt\.[a-z0-9_]{8}\.tmp$"]
    removed = remove_stale_temporaries(tmp_path, ["last.pt", "best.pt"], quiet=False,
                                       legacy=legacy)
    assert removed == sorted([run_file, by_pid, old])
    assert other.exists() and by_pid_alive.exists() and new.exists()
    assert "(2.0 hours old)" in capsys.readouterr().err


def test_a_process_id_above_any_is_gone():
    assert process_alive(os.getpid()) and not process_alive(2**70)


def test_atomic_path_replaces_the_file_whole(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    old = os.umask(0o027)
    try:
        with atomic_path(target) as tmp:
            assert TEMP_NAME.match(tmp.name) and tmp.parent == tmp_path
            assert stat.S_IMODE(tmp.stat().st_mode) == 0o640  # 0666 less the umask
            tmp.write_bytes(b"new")
            assert target.read_bytes() == b"old"  # nothing seen before the rename
    finally:
        os.umask(old)
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]


@pytest.mark.parametrize("error", [ValueError("a bad row"),
                                   OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                                   KeyboardInterrupt()])
def test_a_writer_that_raises_leaves_the_target_and_no_temporary(tmp_path, error):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(type(error)) as info:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half of the ne")
            raise error
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    if isinstance(error, OSError):  # a full disk names the file asked for, not the temporary
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)


def test_a_full_disk_at_fsync_leaves_the_target_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"new")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    with pytest.raises(OSError) as info:
        atomic_write_bytes(target, b"new")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_a_writer_may_decide_to_keep_the_old_file(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"failed its check")
        tmp.unlink()
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_a_folder_one_cannot_write_to_is_named(tmp_path):
    with pytest.raises(OSError) as info:
        with atomic_path(tmp_path / "missing" / "a.bin"):
            pass
    assert info.value.filename == str(tmp_path / "missing" / "a.bin")


def test_link_or_copy_links_and_copies_where_links_fail(tmp_path, monkeypatch):
    from transfer_lib.utils.atomic import link_or_copy

    src = tmp_path / "a.jpg"
    src.write_bytes(b"face")
    link_or_copy(src, tmp_path / "linked.jpg")
    assert (tmp_path / "linked.jpg").stat().st_ino == src.stat().st_ino

    def no_links(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr("os.link", no_links)
    link_or_copy(src, tmp_path / "copied.jpg")
    copied = tmp_path / "copied.jpg"
    assert copied.read_bytes() == b"face" and copied.stat().st_ino != src.stat().st_ino
