"""Whole-file writes that a crash cannot cut in half: :func:`atomic_write_bytes` and
:func:`atomic_write_text`.

The data goes to a temporary beside the target, named ``.NAME.PID.XXXXXXXX.tmp`` as
:func:`transfer_lib.checkpoint.save_atomic` names its own (so one rule finds the temporaries of a
killed process: :func:`transfer_lib.rundir.remove_stale_temporaries`), is flushed and fsynced,
then renamed over the target with ``os.replace``. A reader sees the old file or the new one,
never a part. The temporary is created with mode 0666 less the umask, like any new file
(``tempfile.mkstemp``'s would be 0600), and is removed when the write fails (a full disk).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (this one counts): a temporary file named after a process
    that is gone was left by a run that was killed."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by another user
        return True
    return True


def temporary_name(path: Path) -> Path:
    """A fresh ``.NAME.PID.XXXXXXXX.tmp`` path beside ``path``."""
    return path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


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
    while True:
        tmp = temporary_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # another 32 random bits: try again
            continue
        except OSError as err:  # a folder one may not write to: say so of the file asked for
            raise OSError(err.errno, err.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:
            err.filename = str(path)  # a full disk shows at flush, where Python names no file
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding))


__all__ = ["atomic_write_bytes", "atomic_write_text", "temporary_name"]
