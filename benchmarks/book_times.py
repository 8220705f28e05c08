"""Execute the book's chapters one by one and print the seconds each takes.

    TRANSFER_PROFILE=smoke .venv/bin/python benchmarks/book_times.py            # every chapter
    TRANSFER_PROFILE=cpu .venv/bin/python benchmarks/book_times.py book/03_stem.ipynb
    ... --out /tmp/executed   # also keep the executed notebooks, to look at their outputs

Each chapter runs in a fresh kernel in ``book/`` (as the book build runs it). The report flags
anything a chapter wrote to stderr (a warning the reader would see) and fails (exit 1) if a
chapter raises or takes longer than ``--budget`` seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def chapters() -> list[Path]:
    return sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


def stderr_lines(nb: nbformat.NotebookNode) -> list[str]:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and o.get("name") == "stderr":
                out += [ln for ln in o.get("text", "").splitlines() if ln.strip()]
    return out


def run(path: Path, timeout: int) -> tuple[float, nbformat.NotebookNode, str | None]:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except Exception as e:  # noqa: BLE001 - report and go on with the next chapter
        error = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
    return time.perf_counter() - start, nb, error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    parser.add_argument("--budget", type=float, default=90.0, help="seconds per chapter")
    parser.add_argument("--out", type=Path, help="write the executed notebooks here")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or chapters()
    profile = os.environ.get("TRANSFER_PROFILE", "(default)")
    print(f"profile {profile}, {os.cpu_count()} CPUs")
    failed = False
    for path in paths:
        seconds, nb, error = run(path, args.timeout)
        noise = stderr_lines(nb)
        status = "ok" if error is None else f"FAILED {error}"
        if error is None and seconds > args.budget:
            status = f"OVER BUDGET ({args.budget:.0f} s)"
        failed |= status != "ok"
        print(f"{path.name:<24}{seconds:7.1f} s  {status}", flush=True)
        for line in noise[:5]:
            print(f"    stderr: {line[:150]}")
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, args.out / path.name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
