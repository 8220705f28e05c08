"""The one process pool of the library: drawing images in worker processes.

Three commands draw many images from seeds (``synth``, the occlusion test sets, ``pretrain``'s
identities); each cuts its work into chunks and hands them to :func:`map_chunks`, which keeps
the results in the order of the chunks, so that the same arguments give the same bytes whatever
the number of workers.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

J = TypeVar("J")
R = TypeVar("R")


def ignore_interrupts() -> None:
    """The pool's initializer: its workers ignore Ctrl-C (SIGINT), which the terminal sends to the
    whole process group, so that only the parent reacts (``cli.main`` says "interrupted" and
    exits 130, the pool's ``with`` block terminates the workers) and no worker prints a
    traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """``with interrupts_deferred():`` a Ctrl-C (SIGINT) that comes while the body runs is held
    until the body ends, then raised there (a KeyboardInterrupt, or whatever SIGINT does in this
    process). For starting worker processes: a fork runs Python code in the parent (logging's
    at-fork handlers), and a KeyboardInterrupt raised inside it is printed as "Exception
    ignored ... KeyboardInterrupt" and lost, so the command went on as if no Ctrl-C had come,
    or hung on the lock the handler never released. Only the main thread handles signals: in
    another, or where SIGINT's handler was not set from Python, the body runs as it is."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)  # handled now as it would have been then


def start_pool(context, processes: int, **kwargs):
    """``context.Pool(processes, **kwargs)`` with Ctrl-C held back while its workers start
    (:func:`interrupts_deferred`); one that came meanwhile terminates them and is raised."""
    pool = None
    try:
        with interrupts_deferred():
            pool = context.Pool(processes, **kwargs)
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    return pool


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
        with start_pool(context, min(workers, len(jobs)), initializer=ignore_interrupts) as pool:
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
