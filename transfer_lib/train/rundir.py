"""A run directory's lock: one training process at a time per ``--out``.

Two ``train`` runs (or two ``--resume``) on one folder would interleave ``metrics.jsonl`` and
leave ``config.json`` from one and ``last.pt`` from the other. :class:`RunLock` holds an
OS-level lock (``fcntl.flock``) on ``RUN_DIR/.lock`` for the run's life. The kernel releases
it when the process ends in any way, SIGKILL included, so a killed run never blocks its own
``--resume``. Where ``fcntl`` is missing (Windows) runs are not locked.

A killed run may also leave the temporary of an atomic write behind (``.last.pt.PID.XXXXXXXX.tmp``,
:func:`transfer_lib.weights.checkpoint.save_atomic`, :mod:`transfer_lib.utils.atomic`): at the start of a run
:func:`remove_stale_temporaries` removes those whose process is gone.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from transfer_lib.utils import atomic
from transfer_lib.utils.errors import TransferError

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

LOCK_NAME = ".lock"
#: The files a run writes atomically, whose temporaries :func:`remove_stale_temporaries` removes.
RUN_FILES: tuple[str, ...] = ("last.pt", "best.pt", "config.json", "summary.json",
                              "metrics.jsonl")
#: This program's temporaries: ``.NAME.PID.XXXXXXXX.tmp`` (save_atomic, transfer_lib.utils.atomic).
TEMP_NAME = atomic.TEMP_NAME
#: Temporaries of earlier versions of save_atomic (``tempfile.mkstemp``: ``.last.pt.XXXXXXXX.tmp``,
#: no pid), removed once they are this many seconds old: no checkpoint takes that long to write.
LEGACY_TEMP = re.compile(r"^\.(?P<target>last\.pt|best\.pt)\.[a-z0-9_]{8}\.tmp$")
LEGACY_TEMP_AGE = atomic.LEGACY_TEMP_AGE


def remove_stale_temporaries(run_dir: str | os.PathLike, quiet: bool = False) -> list[Path]:
    """Remove the temporaries a killed run left in ``run_dir`` (and nowhere else): this
    program's ``.NAME.PID.XXXXXXXX.tmp`` of a run file (:data:`RUN_FILES`) whose process is no
    longer running, and an earlier version's ``.last.pt.XXXXXXXX.tmp`` / ``.best.pt.XXXXXXXX.tmp``
    older than :data:`LEGACY_TEMP_AGE` seconds (the rule of
    :func:`transfer_lib.utils.atomic.remove_stale_temporaries`). Each removal is printed on stderr
    unless ``quiet``. Returns the removed paths. Call it holding the run's :class:`RunLock`."""
    return atomic.remove_stale_temporaries(run_dir, RUN_FILES, quiet=quiet, legacy=[LEGACY_TEMP],
                                           max_age=LEGACY_TEMP_AGE)


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir/.lock`` exclusively, or raises TransferError
    naming the process that holds it. The folder (and its missing parents) is created if
    needed. On exit the lock file is removed when this lock created it and the run failed or was
    refused (an exception), or wrote nothing in a folder this lock created; then the folders this
    lock created are removed again where they are empty: a refused run leaves ``--out`` as it
    found it."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._file = None
        self._created = False
        self._made: list[Path] = []  # the folders __enter__ created, deepest first
        self._lock_new = False  # whether __enter__ created the lock file

    def __enter__(self) -> RunLock:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise TransferError(f"--out {self.run_dir} is a file, not a folder: choose a run "
                                f"directory (a new folder, or one of an earlier run to --resume)")
        self._made = [d for d in (self.run_dir, *self.run_dir.parents) if not d.exists()]
        self._created = bool(self._made)
        self._lock_new = not os.path.lexists(self.path)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            f = open(self.path, "a+")  # noqa: SIM115 - held open for the run's life
        except OSError as err:
            self._remove_made()
            held = ("; to go on with the run it holds, make it writable or copy it to a folder "
                    "that is and --resume there" if (self.run_dir / "last.pt").is_file() else "")
            raise TransferError(f"cannot write the run directory {self.run_dir} "
                                f"({err.strerror}): choose a folder you can write to with "
                                f"--out{held}") from None
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                f.close()
                raise TransferError(
                    f"{self.run_dir} is in use: {holder} is training there now (it holds "
                    f"{self.path}). Wait for it to finish, or choose another --out; two runs in "
                    f"one folder would mix their files.") from None
            f.seek(0)
            f.truncate()
            f.write(f"process {os.getpid()}\n")
            f.flush()
        self._file = f
        return self

    def _remove_made(self) -> None:
        """Remove the folders this lock created, deepest first, while they are empty."""
        for folder in self._made:
            try:
                folder.rmdir()
            except OSError:
                break

    def __exit__(self, exc_type, *exc) -> None:
        if self._file is None:
            return
        try:
            nothing_written = {p.name for p in self.run_dir.iterdir()} == {LOCK_NAME}
        except OSError:
            nothing_written = False
        if self._lock_new and (exc_type is not None or (self._created and nothing_written)):
            self.path.unlink(missing_ok=True)  # a refused or failed run: the lock was ours
        self._remove_made()
        self._file.close()  # releases the lock
        self._file = None
