# %% [markdown]
# # 6. TransFER: the assembly
#
# Chapters 3 to 5 built the three parts one by one. This chapter puts them together, checks the
# model's size against the paper's, trains it at the active profile's scale and reads the result:
# curves, confusion matrix, per-class accuracy. At the end it evaluates the authors' own
# checkpoint, if the reader has it.
#
# > "TransFER [...] achieves state-of-the-art performance on several FER benchmarks"; on RAF-DB
# > the released checkpoint scores **90.91 %** (the authors' evaluation log) {cite:p}`xue2021transfer`.

# %% [setup]

# %%
import json

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display
from torch.utils.flop_counter import FlopCounterMode

from transfer_lib import build_model, viz
from transfer_lib.profiles import active_profile, find_rafdb
from transfer_lib.summary import count_parameters, forward_flops
from transfer_lib.train import run_or_load

viz.use_book_style()
torch.manual_seed(0)
profile = active_profile()
rafdb = find_rafdb()
print(viz.describe_setup(profile, rafdb))

# %% [markdown]
# ## The data flow
#
# One call builds the model of any row of the paper's ablation; `"transfer"` at `size="paper"` is
# TransFER itself. Forward hooks record the shape that leaves each part, for one 112 x 112 face:

# %%
model = build_model("transfer", size="paper").eval()
config = model.config
x = torch.zeros(1, 3, config.input_size, config.input_size)
parts = {"stem (IR-50 stages 1-3)": model.stem, "local CNN (LANets, MAD, max, x M)": model.local_cnn,
         "projection (1x1 conv)": model.projection, "MSAD transformer (cls output)": model.transformer,
         "head": model.head}
shapes = viz.record_shapes(model, x, parts)
display(pd.DataFrame(shapes, columns=["part", "output shape"]).set_index("part"))
viz.draw_pipeline(config=config)
plt.show()
g, D = config.token_grid, config.embed_dim
assert dict(shapes) == {
    "stem (IR-50 stages 1-3)": (1, 256, g, g), "local CNN (LANets, MAD, max, x M)": (1, 256, g, g),
    "projection (1x1 conv)": (1, D, g, g), "MSAD transformer (cls output)": (1, D),
    "head": (1, config.num_classes)}

# %% [markdown]
# The projection's (1, 768, 14, 14) output is flattened to 196 tokens of 768 numbers; the
# transformer adds the cls token in front (197 tokens) and returns the cls token's final state,
# which the linear head turns into 7 logits.
#
# ## 65.2 M parameters, 29.6 GFLOPs
#
# Built as the authors' code builds it, the paper-size model has about 65.2 M parameters (stem
# 17.6 M) and costs about 29.6 GFLOPs per image (FLOPs = 2 x multiply-adds, forward only), the
# figures usually quoted for TransFER. We count both:

# %%
rows = [(name, count_parameters(m) / 1e6) for name, m in model.named_children()]
params = count_parameters(model) / 1e6
flops = forward_flops(model) / 1e9
display(pd.DataFrame(rows + [("total", params)], columns=["part", "M parameters"])
        .set_index("part").round(2))
print(f"total {params:.1f} M parameters, {flops:.1f} GFLOPs per 112 x 112 image (forward)")
assert round(params, 1) == 65.2 and round(count_parameters(model.stem) / 1e6, 1) == 17.6
assert round(flops, 1) == 29.6
# the explicit attention path adds the two attention matmuls (Q K^T and weights x V) per block
N, blocks = config.num_tokens + 1, config.depth
attention_matmuls = blocks * 2 * (2 * N * N * D)  # FLOPs = 2 x multiply-adds
with torch.no_grad(), FlopCounterMode(display=False) as counter:
    model.forward_with_details(x, return_attention=True)
print(f"with the attention matmuls: {counter.get_total_flops() / 1e9:.2f} GFLOPs "
      f"(+ {attention_matmuls / 1e9:.2f} G)")
assert counter.get_total_flops() - forward_flops(model) == attention_matmuls
del model  # the paper-size model is not the one we train on a CPU

# %% [markdown]
# Most of the weight sits in the transformer (8 blocks of 5.9 M). The 29.6 G is what a FLOP
# counter that sees only the layers' matrix products reports: on a CPU, torch's counter does not
# see inside `scaled_dot_product_attention`, and the quoted figure matches a count that leaves
# it out. The attention's own two products, Q K^T and weights x V, add
# 8 x 2 x 2 x 197^2 x 768 = 0.95 G (what the explicit path counts, and what the GPU benchmark
# of chapter 9 reports: 30.6 G).
#
# ## Training
#
# The library's trainer runs the active profile's recipe (`transfer_lib.profiles`): the
# authors' SGD recipe on RAF-DB at `paper`, a tiny TransFER (64 x 64 input, 2 blocks of width 96)
# trained from scratch on the synthetic faces at `cpu`, a few steps at `smoke`. `run_or_load`
# trains only when the run directory holds no complete run, so rebuilding the book does not
# retrain; chapters 8 and 9 use this model.
#
# ### Why the `cpu` recipe is not the paper's
#
# The paper fine-tunes pretrained weights with SGD at a learning rate of $10^{-4}$. From random
# weights, on two CPU cores, that learns nothing in the minutes we have, so the `cpu` profile
# changes the recipe, one reason at a time:
#
# | change | why |
# | --- | --- |
# | tiny size: 64 x 64 input, stem widths 16/32/64, 2 blocks of width 96 | 0.12 GFLOPs a face instead of 29.6: an epoch of 3,000 faces in seconds |
# | AdamW, lr $10^{-3}$, weight decay 0.05, cosine decay | SGD at $10^{-4}$ only fine-tunes; a model trained from scratch needs a larger, adaptive step |
# | class-balanced sampling | the synthetic set copies RAF-DB's imbalance (Fear 2 %, Happiness 39 %); without it the three rarest classes stayed at 0 % |
# | label smoothing 0.1 | the usual companion of balanced sampling: the rare classes' few images are seen many times |
# | gradient clipping at norm 1, 3 warmup epochs | the rows with a transformer, trained from scratch, stalled at chance for whole runs on some seeds; clipping and a longer warmup stopped that |
# | 30 epochs, evaluated every 3 | the transformer converges more slowly than the CNN |
# | the fast input pipeline, fp32 | images decoded once into a uint8 cache and augmented a batch at a time; fp32 so that every CPU gives the same numbers (bf16 pays only on CPUs with native bf16) |
#
# The evidence for the middle rows comes from sweeps of the library's own trainer
# (`benchmarks/recipe_sweep.py`, `train(profile="cpu", ...)` with one change at a time), run on a
# lent GPU because 70 runs of this model take hours on two cores; a GPU rounds differently, so
# the figures are a guide to the recipe, not to the CPU's exact numbers. A run counts as
# *stalled* when its mean class accuracy ends below 30 % (chance is 14 %).

# %% tags=["hide-input"]
sweeps = [viz.project_root() / "benchmarks" / "results" / f
          for f in ("recipe_sweep_h200.jsonl", "recipe_sweep_2_h200.jsonl")]
runs = pd.DataFrame([json.loads(line) for path in sweeps for line in path.read_text().splitlines()])
runs["config"] = runs["name"].str.replace(r"-s\d+$", "", regex=True)
runs["stalled"] = runs["mean_class_accuracy"] < 0.30
evidence = runs.groupby("config").agg(
    variant=("overrides", lambda o: o.iloc[0]["variant"]),
    epochs=("overrides", lambda o: o.iloc[0]["epochs"]),
    seeds=("name", "size"), stalled=("stalled", "sum"),
    mca_mean=("mean_class_accuracy", lambda v: 100 * v.mean()),
    mca_best=("mean_class_accuracy", lambda v: 100 * v.max()))
shown = ["abl-ir50-e24", "abl-transfer-e24", "abl-vit_fer-e24", "abl-local-e24",
         "abl-local_mad-e24", "t64-e16-lr0.001-b32", "t64-e16-lr0.002-b32",
         "t64-e32-lr0.001-b32", "t64-e16-clip1-wu3", "pt-transfer-e16", "pt-vit_fer-e16",
         "pt-local_mad-e16"]
display(evidence.loc[shown].round(1))
clip = evidence.loc["t64-e16-clip1-wu3"]
noclip = evidence.loc[["t64-e16-lr0.001-b32", "abl-transfer-e24", "abl-vit_fer-e24",
                       "abl-local-e24", "abl-local_mad-e24"]]
pretrained = evidence.loc[["pt-transfer-e16", "pt-vit_fer-e16", "pt-local_mad-e16"]]
print(f"transformer rows without clipping: {int(noclip['stalled'].sum())} of "
      f"{int(noclip['seeds'].sum())} runs stalled; with clipping and a 3-epoch warmup: "
      f"{int(clip['stalled'])} of {int(clip['seeds'])}; the CNN (ir50): "
      f"{int(evidence.loc['abl-ir50-e24', 'stalled'])} of "
      f"{int(evidence.loc['abl-ir50-e24', 'seeds'])}")
print(f"with the identity-pretrained stem (no clipping): {int(pretrained['stalled'].sum())} of "
      f"{int(pretrained['seeds'].sum())} runs stalled, best mean class accuracy "
      f"{pretrained['mca_best'].max():.1f} %")
assert clip["stalled"] == 0 and noclip["stalled"].sum() > 0  # the reason for the clipping row
# ... and for leaving the pretrained stem out of the default recipe (next section)
assert (pretrained["stalled"].sum() / pretrained["seeds"].sum()
        > noclip["stalled"].sum() / noclip["seeds"].sum())

# %% [markdown]
# ### Pretraining, as the paper does
#
# The paper's stem was first trained to recognise *people* (MS-Celeb-1M). The offline analogue
# here is `python -m transfer_lib pretrain`: the tiny stem learns to tell apart synthetic
# identities (expression varied and never the label, identities drawn from seeds the expression
# set never uses), and is written in face.evoLVe's IR-50 key layout, so `train --ir50 FILE` loads
# it through the same loader as the real file (chapter 3). The `pt-` rows above fine-tune from
# its first version, and the transformer rows stalled *more* often from it than from random
# weights. A plausible reason: features trained to separate identities are the nuisance an
# expression model has to ignore. That is also why TransFER leaves out IR-50's last stage, the
# most identity-specific one, and the current `pretrain` does the same: it trains a stage 4 on
# top of the tiny stem and leaves it out of the file. From that version one seed of the CNN row
# fine-tuned slightly better than from scratch (76.0 % / 55.0 % accuracy / mean class accuracy
# against 74.7 % / 50.9 %, 4 epochs of the previous `cpu` recipe, on the CPU); it has not been
# measured on the transformer rows, so the `cpu` profile still starts from random weights. On
# RAF-DB the real MS-Celeb-1M stem is what the paper starts from; the reader with the file gets
# that path through `--ir50`.
#
# ### The run

# %%
run_dir = viz.book_run_dir("transfer", profile)
train_config = viz.transfer_run_config(profile, rafdb)
summary = run_or_load(run_dir, **train_config)
metrics = viz.read_metrics(run_dir)
data_name = "RAF-DB" if "data" in train_config else "the synthetic faces"
print(f"run {run_dir.relative_to(viz.project_root())}: {summary['variant']} ({summary['size']}), "
      f"{summary['epochs']} epochs on {data_name}, {summary['device']}, "
      f"{summary['wall_seconds']:.0f} s of training")
display(pd.DataFrame(metrics).set_index("epoch")[
    ["loss", "lr", "train_accuracy", "test_accuracy", "mean_class_accuracy"]].round(4))

# %% [markdown]
# "Chance" here is the accuracy of always answering the most frequent class of the test set
# (Happiness: 39 % of RAF-DB's test set, and of the synthetic set, which copies its class
# balance), not 1/7.

# %% tags=["hide-input"]
confusion = torch.tensor(summary["confusion_matrix"])
chance = confusion.sum(1).max().item() / confusion.sum().item()
losses = [m["loss"] for m in metrics]
viz.plot_curves(metrics, chance=chance, title=f"TransFER ({summary['size']}) on {data_name}, "
                f"profile {profile.name}")
plt.show()
acc = summary["final_accuracy"]
print(f"test accuracy {100 * acc:.2f} % (most frequent class: {100 * chance:.2f} %), mean class "
      f"accuracy {100 * summary['mean_class_accuracy']:.2f} %, on {data_name}"
      + (" - a synthetic result, not comparable with the paper's" if "data" not in train_config
         else ""))
assert len(metrics) == summary["epochs"] and all(map(torch.isfinite, torch.tensor(losses)))
assert 0.0 <= acc <= 1.0
assert losses[-1] < losses[0], "the training loss did not fall"
if profile.name != "smoke":  # 12 steps on 48 images do not beat the most frequent class
    assert acc > chance, "the test accuracy does not beat the most frequent class"

# %% [markdown]
# ## Where it errs
#
# The confusion matrix, each row normalised to its true class, so the diagonal is the per-class
# accuracy (the recall). On RAF-DB, Fear and Disgust are the rarest classes (about 2 % and 5 %
# of the test set) and where models usually do worst; the synthetic set copies that balance and
# shares cues between classes on purpose (chapter 2), so its errors cluster where cues overlap.
# A model that has learnt little answers the most frequent class for everything: one dark
# column.

# %% tags=["hide-input"]
names = summary["class_names"]
per_class = pd.Series({k: (100 * v if v is not None else float("nan"))
                       for k, v in summary["per_class_accuracy"].items()}, name="accuracy (%)")
fig, (a, b) = plt.subplots(1, 2, figsize=(9.5, 3.6), gridspec_kw={"width_ratios": [1.2, 1]})
viz.plot_confusion(summary["confusion_matrix"], names, title=f"confusion (%), {data_name}", ax=a)
sns.barplot(x=per_class.values, y=per_class.index, hue=per_class.index, palette="crest",
            legend=False, ax=b)
b.set_xlabel("per-class accuracy (%)")
b.set_ylabel("")
b.set_xlim(0, 100)
fig.tight_layout()
plt.show()
assert confusion.shape == (len(names), len(names)) and confusion.sum() > 0
if profile.name == "cpu":  # the recipe's aim on the synthetic set
    met = summary["mean_class_accuracy"] >= 0.90 and per_class.min() >= 80
    print(f"aim of the cpu recipe (mean class accuracy >= 90 %, every class >= 80 %): "
          f"{'met' if met else 'not met'} - {100 * summary['mean_class_accuracy']:.1f} %, weakest "
          f"class {per_class.idxmin()} {per_class.min():.1f} %")
assert abs(confusion.diag().sum().item() / confusion.sum().item() - acc) < 1e-9

# %% [markdown]
# ## The authors' checkpoint
#
# The authors released their RAF-DB model as a PaddlePaddle file.
# `pretrained.load_official_transfer` maps it onto our `TransFER` with an explicit table:
# Paddle stores a Linear weight as (in, out), so those are transposed (chosen by module, never by
# shape), BatchNorm statistics are renamed, and the file is read with an unpickler that admits
# only arrays and plain types. With the file (put it in `weights/` or point `TRANSFER_OFFICIAL` at it) and
# RAF-DB, this cell evaluates it on the 3,068 test images; the reader should see 90.91 %,
# the authors' own log. Both are licensed and cannot be downloaded here, so most builds skip it.

# %%
official = viz.find_weights("TransFER-RAF_param.pdparams", "TRANSFER_OFFICIAL")
if official is None or rafdb is None:
    missing = [what for what, found in (("the checkpoint TransFER-RAF_param.pdparams", official),
                                        ("RAF-DB", rafdb)) if found is None]
    print(f"skipped: {' and '.join(missing)} not found (set TRANSFER_OFFICIAL / TRANSFER_RAFDB)")
else:
    from transfer_lib.evaluate import evaluate, format_metrics, load_eval_set
    from transfer_lib.pretrained import load_official_transfer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    authors = load_official_transfer(official, verbose=False).to(device)
    result = evaluate(authors, load_eval_set(rafdb, "rafdb", authors.config), device=device)
    print(format_metrics(result, "authors' checkpoint on RAF-DB test (paper: 90.91 %)"))
    assert result["num_samples"] == 3068
    assert abs(100 * result["accuracy"] - 90.91) < 0.05
