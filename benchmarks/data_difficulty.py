"""How hard the synthetic set is: a linear model on raw pixels and a small CNN, on the CPU.

Run ``python benchmarks/data_difficulty.py [--minutes 2] [--json PATH]``; it generates (or
reuses) the default embedded set with :func:`ensure_synthetic` and prints test accuracy and
balanced accuracy (mean per-class recall) of: the majority class, a logistic regression on the
raw 48 x 48 pixels (downsampled for memory), and a small CNN trained for ``--minutes``. The
JSON records the generator version and the 1-minute load average before and after: the CNN's
figure depends on how many epochs fit in its minutes, so a busy machine reads lower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from transfer_lib.data import build_dataset, ensure_synthetic
from transfer_lib.data.synth import GENERATOR_VERSION
from transfer_lib.utils.atomic import atomic_write_text


def _load(root, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    ds = build_dataset("synthetic", root, split)
    x = np.stack([np.asarray(ds.load_image(i).resize((size, size))) for i in range(len(ds))])
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255, torch.tensor(ds.targets)


def _scores(pred: torch.Tensor, y: torch.Tensor) -> dict:
    acc = (pred == y).float().mean().item()
    recalls = [(pred[y == k] == k).float().mean().item() for k in range(7) if (y == k).any()]
    return dict(accuracy=round(100 * acc, 1), balanced_accuracy=round(100 * float(np.mean(recalls)), 1))


def linear(xtr, ytr, xte, yte, epochs: int = 200) -> dict:
    f_tr, f_te = xtr.flatten(1), xte.flatten(1)
    mu, sd = f_tr.mean(0), f_tr.std(0) + 1e-3
    f_tr, f_te = (f_tr - mu) / sd, (f_te - mu) / sd
    model = nn.Linear(f_tr.shape[1], 7)
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=epochs)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(f_tr), ytr) + 1e-3 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return _scores(model(f_te).argmax(1), yte)


def small_cnn() -> nn.Module:
    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))
    return nn.Sequential(block(3, 32), block(32, 64), block(64, 128), block(128, 128),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 7))


def cnn(xtr, ytr, xte, yte, minutes: float, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = small_cnn()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    t0, epochs = time.perf_counter(), 0
    while time.perf_counter() - t0 < 60 * minutes:
        model.train()
        for idx in torch.randperm(len(xtr)).split(64):
            xb = xtr[idx]
            flip = torch.rand(len(idx)) < 0.5
            xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(-1), xb)
            loss = F.cross_entropy(model(xb), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if time.perf_counter() - t0 > 60 * minutes:
                break
        epochs += 1
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(b).argmax(1) for b in xte.split(256)])
    return dict(_scores(pred, yte), epochs=epochs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--minutes", type=float, default=2.0, help="CNN training time")
    p.add_argument("--size", type=int, default=48, help="side the images are reduced to")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    load_start = round(os.getloadavg()[0], 2)
    root = ensure_synthetic()
    xtr, ytr = _load(root, "train", args.size)
    xte, yte = _load(root, "test", args.size)
    majority = torch.full_like(yte, int(torch.bincount(ytr).argmax()))
    res = dict(machine=f"{os.cpu_count()}-core CPU ({platform.machine()})", train=len(ytr),
               test=len(yte), size=args.size, majority=_scores(majority, yte),
               linear=linear(xtr, ytr, xte, yte), cnn=cnn(xtr, ytr, xte, yte, args.minutes),
               cnn_minutes=args.minutes, generator_version=GENERATOR_VERSION,
               load_average=[load_start, round(os.getloadavg()[0], 2)])
    print(json.dumps(res, indent=1))
    if args.json:
        atomic_write_text(args.json, json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
