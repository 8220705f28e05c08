"""Whole-file writes that a crash cannot cut in half, and the removal of what a killed one left.

:func:`atomic_write_bytes` and :func:`atomic_write_text` write bytes or text; :func:`atomic_path`
lends a writer that needs a file name (``torch.save``, a numpy memmap, the ONNX exporter) the
temporary to write. The data goes to a temporary beside the target, named
``.NAME.PID.XXXXXXXX.tmp`` (:func:`temporary_name`, :data:`TEMP_NAME`), is fsynced, then renamed
over the target with ``os.replace``. A reader sees the old file or the new one, never a part. The
temporary is created with mode 0666 less the umask, like any new file (``tempfile.mkstemp``'s
would be 0600), and is removed when the write fails (a full disk).

A process killed mid-write leaves its temporary behind: :func:`remove_stale_temporaries` removes,
at the next start, those whose process is gone (:mod:`transfer_lib.train.rundir` for a run's files,
:mod:`transfer_lib.export`, :mod:`transfer_lib.data.fast`'s cache, the occlusion test's cache).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

#: This program's temporaries, as :func:`temporary_name` names them: ``.NAME.PID.XXXXXXXX.tmp``.
TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>[1-9][0-9]*)\.[0-9a-f]{8}\.tmp$")
#: A temporary of an earlier naming that records no process is removed once it is this many
#: seconds old: no write of this program takes that long.
LEGACY_TEMP_AGE = 3600


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (this one counts): a temporary file named after a process
    that is gone was left by a run that was killed."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OverflowError:  # above any process id there can be
        return False
    except OSError:  # it exists, owned by another user
        return True
    return True


def temporary_name(path: Path) -> Path:
    """A fresh ``.NAME.PID.XXXXXXXX.tmp`` path beside ``path``."""
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(path) as tmp:`` the body writes the whole new file at ``tmp``, a new
    empty file beside ``path`` (:func:`temporary_name`, mode 0666 less the umask). When the body
    ends normally the temporary is fsynced and renamed over ``path``; when it raises (or the
    fsync or the rename does: a full disk), the temporary is removed, ``path`` is left as it
    was, and the error goes on, an OSError naming ``path`` where it named no file. A body that
    decides to keep ``path`` as it is removes ``tmp`` itself. The folder must exist; ``path``
    itself is replaced, a link included (:func:`atomic_write_bytes` writes through a link)."""
    path = Path(path)
    while True:
        tmp = temporary_name(path)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:  # another 32 random bits: try again
            continue
        except OSError as err:  # a folder one may not write to: say so of the file asked for
            raise OSError(err.errno, err.strerror, str(path)) from None
    try:
        yield tmp
        if not os.path.lexists(tmp):  # the body chose to write nothing
            return
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:
            err.filename = str(path)  # a full disk shows at flush, where Python names no file
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``. The folder must exist.

    Only a regular file (or a new one) is replaced: a link is followed to the file it names, and
    an existing device or pipe (``/dev/stdout``, ``/dev/full``) is written in place, never
    replaced by a file. Errors name ``path``, not the temporary."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.exists() and not path.is_file() and not path.is_dir():
        with open(path, "wb") as f:  # a device or a pipe: nothing to replace atomically
            f.write(data)
            f.flush()
        return path
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding))


def _stale(entry: Path, names: frozenset[str] | None, legacy: list[re.Pattern],
           max_age: float) -> str | None:
    """Why ``entry`` is a temporary left by an interrupted write, or None when it is not one."""
    match = TEMP_NAME.match(entry.name)
    if not match or (names is not None and match["target"] not in names):
        match = next((m for m in (p.match(entry.name) for p in legacy) if m), None)
        if match is None:
            return None
    if "pid" in match.re.groupindex:
        pid = int(match["pid"])
        return None if process_alive(pid) else f"process {pid} is gone"
    age = time.time() - entry.lstat().st_mtime
    return f"{age / 3600:.1f} hours old" if age > max_age else None


def remove_stale_temporaries(folder: str | os.PathLike, names: Iterable[str] | None = None,
                             quiet: bool = True, legacy: Iterable[str | re.Pattern] = (),
                             max_age: float = LEGACY_TEMP_AGE) -> list[Path]:
    """Remove the temporaries that interrupted writes left in ``folder`` (not below it); returns
    the removed paths, in name order.

    A temporary is a file named ``.NAME.PID.XXXXXXXX.tmp`` (:data:`TEMP_NAME`), with NAME among
    ``names`` when they are given, or a file matching one of the ``legacy`` patterns (earlier
    namings). It is removed when its process is gone (a pattern's ``pid`` group; the whole
    name's for the first) or, for a legacy pattern without a ``pid`` group, when it is more than
    ``max_age`` seconds old. Never removed: a temporary of a running process, a link (nor what
    it names), a folder or anything else that is not a regular file, a name that matches no
    pattern. Each removal is printed on stderr unless ``quiet``:
    ``removed PATH: the temporary of an interrupted write (process PID is gone)``."""
    folder = Path(folder)
    names = None if names is None else frozenset(names)
    legacy = [re.compile(p) for p in legacy]
    removed: list[Path] = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        try:
            why = _stale(entry, names, legacy, max_age)
            if why is None or not stat.S_ISREG(entry.lstat().st_mode):
                continue
            entry.unlink()
        except OSError:
            continue
        removed.append(entry)
        if not quiet:
            print(f"removed {entry}: the temporary of an interrupted write ({why})",
                  file=sys.stderr)
    return removed


def link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Put the file ``src`` at ``dst`` as a hard link (no bytes written), or as a copy where a
    link cannot be made (another file system, a file system without links)."""
    import shutil

    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


__all__ = ["LEGACY_TEMP_AGE", "TEMP_NAME", "atomic_path", "atomic_write_bytes",
           "atomic_write_text", "link_or_copy", "process_alive", "remove_stale_temporaries", "temporary_name"]
