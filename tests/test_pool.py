"""transfer_lib.utils.pool: the one process pool (synth, occlusion sets, pretrain identities)."""

import os
import signal

from transfer_lib.utils.pool import chunk_size, map_chunks


def _square_with_pid(x):
    return x * x, os.getpid(), signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_results_come_in_job_order_from_worker_processes_that_ignore_ctrl_c():
    seen = []
    out = map_chunks(_square_with_pid, range(20), workers=2, on_result=seen.append)
    assert [r[0] for r in out] == [x * x for x in range(20)]
    assert seen == out  # the callback saw every result, in order
    assert all(pid != os.getpid() for _, pid, _ in out)
    assert all(ignored for _, _, ignored in out)


def test_one_worker_or_one_job_runs_here():
    assert {pid for _, pid, _ in map_chunks(_square_with_pid, range(3), workers=1)} == {os.getpid()}
    assert map_chunks(_square_with_pid, [4], workers=2)[0][:2] == (16, os.getpid())


def test_chunk_size_about_four_jobs_a_worker_within_bounds():
    assert chunk_size(800, 2, 200) == 100
    assert chunk_size(10_000, 2, 200) == 200
    assert chunk_size(3, 2, 200) == 1
    assert chunk_size(0, 2, 200) == 1
