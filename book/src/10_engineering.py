# %% [markdown]
# # 10. Appendix: engineering
#
# The model chapters leave out three practical questions, collected here so that each of them
# keeps one idea: how images reach the model fast enough (the input pipeline of chapter 2), what
# one forward pass costs and in which unit papers count it, and how fast the model trains on a
# CPU and on a GPU. Nothing here changes what the model computes.

# %% [setup]

# %%
import glob
import json
import time

import pandas as pd
import torch
from IPython.display import Markdown, display
from torch.utils.data import DataLoader

from transfer_lib import build_model
from transfer_lib.book import viz
from transfer_lib.cli.summary import forward_flops
from transfer_lib.data import build_dataset, ensure_synthetic, train_transform
from transfer_lib.data.fast import BatchAugment, FastLoader, build_cache
from transfer_lib.models.config import make_config
from transfer_lib.train.profiles import active_profile, find_rafdb

viz.use_book_style()
torch.manual_seed(0)
profile = active_profile()
rafdb = find_rafdb()
print(viz.describe_setup(profile, rafdb))
config = make_config(size="paper")  # the paper's 112 x 112 input
root = ensure_synthetic(profile.synthetic_root, train=profile.synthetic_train,
                        test=profile.synthetic_test)
train = build_dataset("synthetic", root, "train")
print(f"synthetic set at {root}: {len(train)} training images")

# %% [markdown]
# ## Feeding the model: the fast pipeline against the standard one
#
# Chapter 2 showed what `transfer_lib.data.fast` does: `build_cache` decodes every image once
# into a uint8 array on disk, `FastLoader` loads whole batches from it, and `BatchAugment`
# augments a batch on its device with the same distribution as `train_transform`. Here is its
# speed against the standard `DataLoader` with the per-image transform, for a few seconds per
# path on your machine, in one process (`python -m transfer_lib bench data` measures the same
# with worker processes, on the full synthetic set or RAF-DB).

# %%
def images_per_second(batches, seconds):
    """Images per second drawn from the re-iterable ``batches`` during ``seconds``."""
    next(iter(batches))  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for xb, _ in batches:
            n += len(xb)
            if time.perf_counter() - t0 >= seconds:
                break
    return n / (time.perf_counter() - t0)


cache = build_cache(train, root.parent / "cache")
seconds = {"smoke": 2.0, "cpu": 5.0}.get(profile.name, 10.0)
tf_train = train_transform(config)
standard = DataLoader(build_dataset("synthetic", root, "train", transform=tf_train),
                      batch_size=16, shuffle=True, num_workers=0)
fast = FastLoader(cache, batch_size=16, shuffle=True, device="cpu",
                  augment=BatchAugment(config, train=True))
speed = pd.Series({
    "standard DataLoader + train_transform": images_per_second(standard, seconds),
    "FastLoader + BatchAugment (CPU)": images_per_second(fast, seconds),
}, name="images / s (1 process, synthetic set)")
display(speed.round(1).to_frame())
assert (speed > 0).all()

# %% [markdown]
# A few seconds in one process, on a machine that may be busy with other work, are a rough
# guide: at the `smoke` profile the standard path also pays for decoding its few JPEGs for the
# first time. The fast path is built for a GPU, where `BatchAugment` runs on the device and the
# CPU only gathers uint8 rows. The committed measurement with worker processes
# (`benchmarks/data_bench.json`, written by `python -m transfer_lib bench data` with
# `--json`; the file names its machine and load) is:

# %%
data_bench = json.loads((viz.project_root() / "benchmarks" / "data_bench.json").read_text())
standard_ips, fast_ips = data_bench["standard_images_per_s"], data_bench["fast_images_per_s"]
b = data_bench
print(f"{b['machine']}, torch {b['torch']}, {b['workers']} workers, batch {b['batch_size']}, "
      f"{b['input_size']} px, {b['images']} {b['dataset']} images: standard "
      f"{standard_ips:.0f} images/s, fast {fast_ips:.0f} images/s ({b['ratio']:.2f} x)")
assert abs(fast_ips / standard_ips - data_bench["ratio"]) < 0.01

# %% [markdown]
# ## Counting the cost: FLOPs and multiply-adds
#
# A linear layer from $C_\text{in}$ to $C_\text{out}$ features does $C_\text{in} C_\text{out}$
# multiply-adds (MACs) per token. Two conventions turn that into one number:
#
# $$
# \text{FLOPs} = 2 \times \text{MACs}
# $$ (eq-flops-macs)
#
# counts the multiplication and the addition separately; this is what torch's
# `FlopCounterMode`, and so `transfer_lib.cli.summary.forward_flops`, reports. Counters such as
# fvcore and thop report MACs and often call them "FLOPs", so a figure printed as "FLOPs" may be
# either: compare figures only in one convention, and only once you know which one a figure
# uses:

# %%
model = build_model("transfer", size="paper").eval()
flops = forward_flops(model)  # no attention matmuls: the CPU counter cannot see them
N, D = config.num_tokens + 1, config.embed_dim
attention_matmuls = config.depth * 2 * (2 * N * N * D)  # Q K^T, weights x V; FLOPs
cost = pd.DataFrame({
    "FLOPs (G)": [flops / 1e9, (flops + attention_matmuls) / 1e9],
    "multiply-adds (G)": [flops / 2e9, (flops + attention_matmuls) / 2e9],
}, index=["layers only (what a CPU counter sees)", "with the attention matmuls"])
display(cost.round(2))
assert round(flops / 1e9, 1) == 29.6 and flops % 2 == 0
del model

# %% [markdown]
# Chapter 9 uses the multiply-add column when it sets TransFER beside later models.
#
# ## Training speed
#
# `python -m transfer_lib bench train` measures training throughput: fp32 eager against bf16
# autocast with channels_last, and with `torch.compile`, at several batch sizes, with the model
# FLOP utilisation (MFU: achieved FLOP/s over the device's peak, with the training cost taken as
# forward plus backward). Results saved under `benchmarks/results/` are shown with the device
# they were measured on; without any, the cell runs a short CPU measurement of the tiny model.

# %%
saved = []
RESULTS = viz.project_root() / "benchmarks" / "results"
for path in sorted(glob.glob(str(RESULTS / "*.json"))):
    result = json.loads(open(path).read())
    if isinstance(result.get("results"), list) and "device" in result:
        saved.append((path, result))
if not saved:
    from transfer_lib.bench.train import bench

    print("no saved benchmark: a short CPU run of the tiny model (fp32, 4 timed steps)")
    saved = [("(this run)", bench(device="cpu", size="tiny", batch_sizes=[16],
                                  configs=["baseline"], steps=4, warmup=1,
                                  log=lambda *a: None))]
table = []
for path, result in saved:
    for r in result["results"]:
        if r.get("status") == "ok":
            mfu = None if r.get("mfu") is None else round(100 * r["mfu"], 1)
            table.append({"file": path.split("/")[-1], "device": result["device"],
                          "model": result["model_size"], "config": r["config"],
                          "batch": r["batch_size"],
                          "images/s": round(r["images_per_second"]), "MFU (%)": mfu,
                          "40 epochs of RAF-DB (h)":
                              round(r["est_hours_40_epochs_rafdb"], 2)})
speed = pd.DataFrame(table)
display(speed.set_index(["file", "device", "model", "config", "batch"]))
for path, result in saved:
    print(f"{path.split('/')[-1]}: {result['device']}, model {result['model_size']}, "
          f"forward {result['forward_flops_per_image'] / 1e9:.1f} GFLOPs / image, "
          f"training {result['train_flops_per_image'] / 1e9:.1f} GFLOPs / image")
assert len(speed) > 0 and (speed["images/s"] > 0).all()

# %% [markdown]
# What the saved runs say, computed from the table (the best batch of each configuration):

# %%
best = speed.groupby(["file", "device", "model", "config"])["images/s"].max()
lines = []
for (file, device, size, cfg), ips in best.items():
    if cfg != "baseline" and (file, device, size, "baseline") in best:
        ratio = ips / best[(file, device, size, "baseline")]
        lines.append(f"* `{file}` ({device}, {size} model): `{cfg}` trains at {ips:,} "
                     f"images/s, {ratio:.1f} x the fp32 eager baseline.")
top = speed.loc[speed["images/s"].idxmax()]
minutes = 60 * top["40 epochs of RAF-DB (h)"]
lines.append(f"* The fastest row, {top['images/s']:,} images/s ({top['device']}, "
             f"`{top['config']}`, batch {top['batch']}), would train the paper's 40 "
             f"epochs of RAF-DB in {minutes:.0f} minutes.")
train_over_forward = [r["train_flops_per_image"] / r["forward_flops_per_image"]
                      for _, r in saved]
lines.append(f"* A training step costs {min(train_over_forward):.1f} x the forward "
             "pass per image (forward and backward), the factor MFU is computed with.")
display(Markdown("\n".join(lines)))
assert all(2.5 < t < 3.5 for t in train_over_forward)

# %% [markdown]
# On a CPU the `cpu` profile trains the tiny model instead; the committed measurement of its
# trainer (chapter 6 prints the speed of its own run too):

# %%
options = json.loads((viz.project_root() / "benchmarks" / "results"
                      / "cpu_speed_options_epyc_2026-11-28.json").read_text())
eager = next(t for t in options["trainer"] if t["option"].startswith("(none"))
cpu_speed = (f"{min(eager['epoch_images_per_second']):.0f}-"
             f"{max(eager['epoch_images_per_second']):.0f} images/s on a "
             f"{options['machine']['cores']}-core {options['machine']['cpu']}")
print(f"the cpu profile's trainer, eager fp32, {len(eager['epoch_seconds'])} epochs: "
      f"{cpu_speed}, torch {options['torch']}, {options['date']}")

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
display(Markdown(f"""
* The fast pipeline decodes once into a uint8 cache and augments whole batches on the training
  device; in the committed measurement ({b['machine']}, {b['workers']} workers) it drew
  {fast_ips:.0f} images/s against the per-image `DataLoader`'s {standard_ips:.0f}
  ({b['ratio']:.2f} x). `python -m transfer_lib bench data` measures it on your machine.
* FLOPs count a multiply-add as two operations ({{eq}}`eq-flops-macs`): TransFER's
  {flops / 1e9:.1f} GFLOPs as a CPU counter sees them are {flops / 2e9:.1f} G multiply-adds
  ({(flops + attention_matmuls) / 2e9:.1f} G with the attention matmuls).
* `python -m transfer_lib bench train` measures images/s and MFU; the fastest saved row trains
  at {top['images/s']:,} images/s ({top['device']}, `{top['config']}`), and the `cpu`
  profile's trainer ran at {cpu_speed}.
* A training step costs {min(train_over_forward):.1f} to {max(train_over_forward):.1f} forward
  passes per image in the saved results.
"""))

# %% [markdown]
# ## Exercises
#
# 1. Compute the MACs of one LANet at the paper's size by hand ($C \to C/r \to 1$, two 1 x 1
#    convolutions over $G \times G$ positions) and check with `FlopCounterMode` on
#    `build_model("transfer", size="paper").local_cnn` (divide by 2:
#    {eq}`eq-flops-macs`).
# 2. How many multiply-adds do the attention matmuls of one block add, as a function of $N$ and
#    $D$? Why do they matter more at 224 x 224 input than at 112 x 112?
# 3. `python -m transfer_lib bench data --seconds 10 --batch-size 64` on your machine: is the
#    ratio of the two paths closer to 1 or to the committed figure? Try `--workers 0`.
# 4. `python -m transfer_lib bench train --device cpu --size tiny --batch-sizes 8,16,32
#    --configs baseline --steps 4`: how do images/s change with the batch size on a CPU, and
#    why less than on a GPU?
# 5. From the saved GPU results, estimate how long the `cpu` profile's 3-epoch ablation
#    (appendix 12, 37 runs) would take on that GPU at the tiny model's size. What, besides FLOPs, would
#    limit it?
