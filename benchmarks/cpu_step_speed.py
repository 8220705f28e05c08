"""Training-step speed of the tiny model on this CPU: images/s of forward + loss + backward +
AdamW on random data, one configuration per invocation (the `cpu` profile's choices).

    python benchmarks/cpu_step_speed.py '{"input": 48}'
    python benchmarks/cpu_step_speed.py '{"input": 64, "compile": 1, "batch": 64, "cl": 1}'

Prints one JSON line: the configuration, images/s over the timed steps, the seconds before the
first timed step (compilation included) and the 1-minute load average. Stop other work first.
"""

import json
import os
import sys
import time

import torch

from transfer_lib import build_model

args = json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}")
torch.manual_seed(0)
batch, size = args.get("batch", 32), args.get("input", 64)
model = build_model(args.get("variant", "transfer"), "tiny", input_size=size).train()
if args.get("cl"):
    model = model.to(memory_format=torch.channels_last)
opt = torch.optim.AdamW(model.parameters(), 1e-3)
x, y = torch.randn(batch, 3, size, size), torch.randint(7, (batch,))
if args.get("cl"):
    x = x.contiguous(memory_format=torch.channels_last)


def step_loss(x, y):
    return torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)


if args.get("compile"):
    step_loss = torch.compile(step_loss)
steps, warmup = args.get("steps", 30), 5
t_start = time.perf_counter()
for i in range(steps + warmup):
    if i == warmup:
        t0 = time.perf_counter()
        first = t0 - t_start
    loss = step_loss(x, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
seconds = time.perf_counter() - t0
print(json.dumps(dict(args, threads=torch.get_num_threads(), images_per_second=round(
    steps * batch / seconds), first_seconds=round(first, 1), load=os.getloadavg()[0],
    torch=torch.__version__)))
