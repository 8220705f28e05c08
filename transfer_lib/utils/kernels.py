"""Which CPU kernels a run uses, and the provenance every run and results file records.

The same seed gives other numbers on other CPUs: PyTorch picks its vector kernels (ATen's
``AVX2`` / ``AVX512`` paths, oneDNN's ISA) by the CPU it finds, and the order of a parallel sum
depends on the intra-op thread count. So by default this package **pins** them, on x86 CPUs
with AVX2: ``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2`` and
:data:`PINNED_THREADS` intra-op threads. Pinned, a run reproduces bit for bit on any x86 CPU
with AVX2 (an AVX-512 machine reproduced an AVX2-only one's training exactly, and 2 threads on
one core give the weights of 2 threads on two; ``tests/test_kernels.py``). The price is speed
on CPUs with wider vectors (about 20 % on a training step of an AVX-512 EPYC).

Both variables are read by PyTorch when it loads, so :func:`pin` must run before ``torch`` is
imported: ``import transfer_lib`` does it (this module imports no torch), as does the command
line; a chapter's first cell imports ``transfer_lib`` before torch.

Opting out: ``TRANSFER_NATIVE=1`` in the environment (the book: ``make run NATIVE=1``), or
``--native`` on the command line, keeps PyTorch's own choice of kernels and threads: faster,
and another draw of the same recipe. ARM CPUs (Apple Silicon, Graviton) cannot be pinned to
x86 kernels and are always another draw. :func:`provenance` records which case a run was.
``TRANSFER_NATIVE`` takes 1, true, yes, on (native) or 0, false, no, off, empty (pinned); any
other value is refused (the command line: one ``error:`` line, exit 2) rather than taken as off.
"""

from __future__ import annotations

import os
import platform
import sys

#: The environment that pins the kernels (both read once, when torch loads).
PINNED_ENV: dict[str, str] = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
#: Intra-op threads of a pinned run: the committed runs' count (the 2-core machines made them).
PINNED_THREADS = 2
#: ``1``: native kernels and threads (set by ``--native``; the book reads it too).
NATIVE_ENV = "TRANSFER_NATIVE"
#: What this module did, for :func:`kernel_state` (pinned / native / unpinnable / late).
_DECISION_ENV = "TRANSFER_KERNELS"
#: The CPU flags that change which kernels run.
KERNEL_FLAGS: tuple[str, ...] = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> dict[str, bool]:
    """The kernel-relevant flags of :data:`KERNEL_FLAGS` (all False where they cannot be read)."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {name: name in flags for name in KERNEL_FLAGS}


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


def pinnable() -> bool:
    """An x86 CPU with AVX2 (where the pinned kernels exist)."""
    return is_x86() and cpu_flags()["avx2"]


def _torch_loaded() -> bool:
    return "torch" in sys.modules


#: The values of :data:`NATIVE_ENV` that ask for native kernels, and those that do not (unset
#: is as empty); any other (``maybe``, ``2``) is refused (:func:`native_env_problem`).
NATIVE_ON: tuple[str, ...] = ("1", "true", "yes", "on")
NATIVE_OFF: tuple[str, ...] = ("", "0", "false", "no", "off")


def native_requested() -> bool:
    return os.environ.get(NATIVE_ENV, "").strip().lower() in NATIVE_ON


def native_env_problem() -> str | None:
    """What is wrong with :data:`NATIVE_ENV`'s value, or None where it is one of
    :data:`NATIVE_ON` / :data:`NATIVE_OFF` (any case) or unset. Another value was taken as off
    without a word: the command line refuses it, :func:`kernel_state` (every run's provenance)
    raises."""
    value = os.environ.get(NATIVE_ENV, "")
    if value.strip().lower() in NATIVE_ON + NATIVE_OFF:
        return None
    return (f"{NATIVE_ENV}={value!r}: expected 1 (or true, yes, on) for PyTorch's own CPU "
            f"kernels, or 0 (or false, no, off, empty) for the pinned ones; unset it or give "
            f"one of these")


def pin() -> str:
    """Pin the kernels for this process unless the user asked for native ones; returns the
    decision (``pinned``, ``native``, ``unpinnable`` or ``late``: torch was already loaded).

    Idempotent; a no-op once torch is loaded (its kernels are chosen by then)."""
    if native_requested():
        decision = "native"
    elif not pinnable():
        decision = "unpinnable"
    elif _torch_loaded() and not _env_pinned():
        decision = "late"
    else:
        os.environ.update(PINNED_ENV)
        # torch's default intra-op thread count (a user's own setting is kept: see apply_threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(PINNED_THREADS))
        decision = "pinned"
    if not _torch_loaded() or _DECISION_ENV not in os.environ:
        os.environ[_DECISION_ENV] = decision
    return decision


def use_native() -> None:
    """Undo :func:`pin` before torch loads (``--native``): PyTorch's own kernels and threads."""
    os.environ[NATIVE_ENV] = "1"
    if not _torch_loaded():
        for name, value in (*PINNED_ENV.items(), ("OMP_NUM_THREADS", str(PINNED_THREADS))):
            if os.environ.get(name) == value:
                del os.environ[name]
        os.environ[_DECISION_ENV] = "native"


def _env_pinned() -> bool:
    return all(os.environ.get(k, "").lower() == v.lower() for k, v in PINNED_ENV.items())


def apply_threads() -> int:
    """Set the pinned thread count where the kernels are pinned (call before training on a
    CPU); returns torch's intra-op thread count afterwards."""
    import torch

    if kernel_state()["kernels"] == "pinned" or (
            os.environ.get(_DECISION_ENV) == "pinned" and not native_requested()):
        if torch.get_num_threads() != PINNED_THREADS:
            torch.set_num_threads(PINNED_THREADS)
    return torch.get_num_threads()


def kernel_state() -> dict:
    """What the loaded torch runs with: ``kernels`` is ``pinned`` only where the AVX2 kernels,
    oneDNN's AVX2 ceiling and :data:`PINNED_THREADS` threads are all in force (an AVX2-only CPU
    running natively with that thread count counts: its kernels are the same); else ``native``,
    with ``why``."""
    import torch

    problem = native_env_problem()
    if problem is not None:  # a run must not record a choice the user did not make
        raise ValueError(problem)
    capability = torch.backends.cpu.get_cpu_capability()
    threads = torch.get_num_threads()
    flags = cpu_flags()
    wider = flags["avx512f"] or flags["amx_tile"]
    onednn_capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() == "AVX2" or not wider
    why = []
    if not is_x86():
        why.append(f"{platform.machine()} CPU: no x86 kernels to pin")
    elif capability != "AVX2":
        why.append(f"ATen kernels {capability}, not AVX2")
    if is_x86() and not onednn_capped:
        why.append("oneDNN not capped at AVX2")
    if threads != PINNED_THREADS:
        why.append(f"{threads} intra-op threads, not {PINNED_THREADS}")
    if native_requested():
        why.insert(0, f"{NATIVE_ENV}=1 (native kernels asked for)")
    elif os.environ.get(_DECISION_ENV) == "late":
        why.insert(0, "torch was imported before transfer_lib, so the kernels could not be pinned")
    return {"kernels": "native" if why else "pinned", "why": "; ".join(why),
            "cpu_capability": capability, "threads": threads}


def provenance() -> dict:
    """Where and how a run ran: the CPU and its kernel flags, the kernels and threads in force,
    and the versions of the libraries that change its numbers. Recorded in every run summary
    and results file; :func:`reproduces_committed` reads it."""
    import numpy
    import PIL
    import torch

    try:
        import torchvision

        tv = torchvision.__version__
    except ImportError:  # the model and trainer do not need it
        tv = None
    state = kernel_state()
    return {
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        **state,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": tv, "numpy": numpy.__version__, "Pillow": PIL.__version__},
    }


def reproduces_committed(prov: dict, committed: dict | None = None) -> tuple[bool, str]:
    """Whether a run with provenance ``prov`` can reproduce committed figures bit for bit: both
    pinned, on x86, under the same torch (``committed``: the committed file's provenance; None
    takes it as pinned under this torch). Returns (yes, a sentence saying why)."""
    if prov.get("kernels") != "pinned":
        return False, (f"this run used native kernels ({prov.get('why')}), so it is another "
                       f"draw of the same recipe, not a repeat of the committed run")
    if committed is not None:
        if committed.get("kernels") not in (None, "pinned"):
            return False, "the committed run itself used native kernels"
        ct, rt = (committed.get("versions") or {}).get("torch"), prov["versions"]["torch"]
        if ct and ct != rt:
            return False, f"the committed run used torch {ct}, this one {rt}"
    return True, (f"this run used the pinned kernels (AVX2, {PINNED_THREADS} threads) on an x86 "
                  f"CPU ({prov.get('cpu_model')}), as the committed runs did, so it repeats "
                  f"them bit for bit")


__all__ = ["KERNEL_FLAGS", "NATIVE_ENV", "PINNED_ENV", "PINNED_THREADS", "apply_threads",
           "cpu_flags", "cpu_model", "kernel_state", "native_env_problem", "pin", "pinnable", "provenance",
           "reproduces_committed", "use_native"]
