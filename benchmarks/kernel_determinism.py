"""Which settings change a run's numbers: the weights' hash after a few steps of one seed.

Trains the smoke recipe for 3 steps (seed 0) in a fresh process per setting and prints the
sha256 of the final weights beside the kernels and threads it ran with. Equal hashes mean bit
for bit the same weights. Settings: pinned kernels with 2 threads (the default), the same on one
core (`taskset -c 0`), pinned after the caller asked for 1 thread (the trainer resets it to 2),
and native kernels with 2 and with 1 thread.

    python benchmarks/kernel_determinism.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import hashlib, json, sys
import transfer_lib
import torch
if len(sys.argv) > 2:
    torch.set_num_threads(int(sys.argv[2]))
from transfer_lib.utils.kernels import kernel_state
from transfer_lib.train import train
s = train(profile="smoke", out=sys.argv[1], epochs=1, max_steps=3, progress=False)
sd = torch.load(sys.argv[1] + "/last.pt", weights_only=True)["model"]
h = hashlib.sha256()
for k in sorted(sd):
    h.update(sd[k].numpy().tobytes())
print(json.dumps({"hash": h.hexdigest()[:16], **kernel_state()}))
"""


def child(out: Path, prefix: list[str], env: dict, threads: int | None = None) -> dict:
    args = [*prefix, sys.executable, "-c", CHILD, str(out)] + ([str(threads)] if threads else [])
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={**os.environ, **env})
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", help="also write the table here")
    a = p.parse_args()
    taskset = ["taskset", "-c", "0"] if shutil.which("taskset") else None
    settings = [("pinned, 2 threads", [], {"TRANSFER_NATIVE": ""}, None)]
    if taskset:
        settings.append(("pinned, 2 threads, taskset -c 0", taskset, {"TRANSFER_NATIVE": ""}, None))
    # the library resets a pinned run to 2 threads; a native run keeps the count it is given
    settings += [("pinned, set_num_threads(1) first", [], {"TRANSFER_NATIVE": ""}, 1),
                 ("native kernels, 2 threads", [], {"TRANSFER_NATIVE": "1"}, 2),
                 ("native kernels, 1 thread", [], {"TRANSFER_NATIVE": "1"}, 1)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, prefix, env, threads) in enumerate(settings):
            r = child(Path(tmp) / str(i), prefix, env, threads)
            rows.append({"setting": name, **r})
            print(f"{name:34s} {r['hash']}  {r['cpu_capability']:7s} {r['threads']} threads  "
                  f"{r['kernels']}", flush=True)
    from transfer_lib.utils.kernels import cpu_flags, cpu_model

    print(f"CPU: {cpu_model()}, flags {', '.join(k for k, v in cpu_flags().items() if v)}; "
          f"load average {os.getloadavg()}")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "cpu": cpu_model(),
                                            "flags": cpu_flags()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
