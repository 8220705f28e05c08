"""The one process pool of the library: drawing images in worker processes.

Three commands draw many images from seeds (``synth``, the occlusion test sets, ``pretrain``'s
identities); each cuts its work into chunks and hands them to :func:`map_chunks`, which keeps
the results in the order of the chunks, so that the same arguments give the same bytes whatever
the number of workers.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable
from typing import TypeVar

J = TypeVar("J")
R = TypeVar("R")


def ignore_interrupts() -> None:
    """The pool's initializer: its workers ignore Ctrl-C (SIGINT), which the terminal sends to the
    whole process group, so that only the parent reacts (``cli.main`` says "interrupted" and
    exits 130, the pool's ``with`` block terminates the workers) and no worker prints a
    traceback."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def chunk_size(n: int, workers: int, at_most: int) -> int:
    """How many items a job holds: about four jobs a worker (so that a slow chunk does not keep
    the others waiting), at least 1 and at most ``at_most``."""
    return max(1, min(at_most, math.ceil(n / (4 * workers))))


def map_chunks(fn: Callable[[J], R], jobs: Iterable[J], workers: int,
               on_result: Callable[[R], None] | None = None) -> list[R]:
    """``[fn(job) for job in jobs]``, computed by ``workers`` processes (forked where the system
    can, else spawned: ``fn`` must then be importable, a module-level function) when there are
    several workers and several jobs, else in this process. ``on_result`` sees each result as
    it arrives, in order (a progress bar's update)."""
    jobs = list(jobs)
    results: list[R] = []
    if workers > 1 and len(jobs) > 1:
        context = mp.get_context("spawn" if os.name == "nt" else "fork")
        with context.Pool(min(workers, len(jobs)), initializer=ignore_interrupts) as pool:
            for result in pool.imap(fn, jobs):
                results.append(result)
                if on_result is not None:
                    on_result(result)
    else:
        for job in jobs:
            results.append(fn(job))
            if on_result is not None:
                on_result(results[-1])
    return results
