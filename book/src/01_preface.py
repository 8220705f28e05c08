# %% [markdown]
# # 1. Preface: reading a face
#
# A facial expression recognition (FER) system looks at a face and names the expression on it.
# Most data sets use the six basic emotions of {cite:t}`ekman1971constants` plus *Neutral*: RAF-DB
# {cite:p}`li2017rafdb`, the data set this book follows, labels its images Surprise, Fear, Disgust,
# Happiness, Sadness, Anger and Neutral. FERPlus {cite:p}`barsoum2016ferplus` adds Contempt, and
# AffectNet {cite:p}`mollahosseini2017affectnet` has both a 7- and an 8-class protocol.
#
# This book rebuilds one model for the task, **TransFER** {cite:p}`xue2021transfer`, from its parts,
# and runs each part as it is built. This chapter says why the task is hard, what TransFER does
# about it, and how to run the book.

# %% [setup]

# %% [markdown]
# Every chapter starts with the cell above (it does something only on Colab) and then with a
# cell like the next one: it imports the library, picks the **profile** (how big a run is, see
# the end of this chapter) and says which data the chapter would use.

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown

from transfer_lib import build_model
from transfer_lib.book import viz
from transfer_lib.cli.summary import count_parameters
from transfer_lib.data.synth import render_face
from transfer_lib.models.config import RAFDB_CLASSES, make_config
from transfer_lib.train.profiles import (
    PROFILE_NAMES,
    PROFILES,
    active_profile,
    find_rafdb,
    get_profile,
)

viz.use_book_style()
torch.manual_seed(0)
profile = active_profile()
rafdb = find_rafdb()
print(viz.describe_setup(profile, rafdb))
assert profile.name in PROFILE_NAMES

# %% [markdown]
# ## Why expressions are hard to tell apart
#
# The paper names two difficulties {cite:p}`xue2021transfer`:
#
# * **Small differences between classes.** Surprise and Fear both raise the brows, widen the eyes
#   and open the mouth; Anger and Disgust both lower the brows. What tells them apart is a detail
#   in one region (the shape of the brows, the nose wrinkle) *in combination with* the others.
# * **Large differences within a class.** A smile looks different on every face: age, gender,
#   ethnicity, head pose, lighting and occlusion (glasses, a hand, a mask) change the image far
#   more than the expression does.
#
# The pictures below show both. They are **synthetic faces** drawn by the library
# (`transfer_lib.data.synth`, chapter 2), which stand in for RAF-DB wherever the real data set is
# not available: the top row is one face with each of the seven expressions, the bottom row is
# Happiness on seven different faces.

# %% tags=["hide-input"]
same_face = [render_face(k, seed=3, intensity=0.9, nuisance=False) for k in range(7)]
occluders = [None, "glasses", None, "mask", "hand", None, "hat"]
happy_faces = [render_face("Happiness", seed=10 + i, occlusion=o)
               for i, o in enumerate(occluders)]
fig = viz.show_grid(same_face + happy_faces,
                    titles=list(RAFDB_CLASSES) + [o or "" for o in occluders],
                    ncols=7,
                    row_labels=["one face,\n7 expressions", "Happiness,\n7 faces"],
                    suptitle="synthetic faces (transfer_lib.data.synth), not RAF-DB")
plt.show()
assert same_face[0].shape == (100, 100, 3)  # RAF-DB's aligned images are 100 x 100 too

# %% [markdown]
# The pixels say the same thing as the eye. The mean absolute difference of two images, per pixel
# and channel, is small within the top row, where faces share everything but the expression,
# and more than three times as large between the Happiness faces (the cell asserts it):

# %%
def mean_abs_diff(images):
    x = torch.from_numpy(np.stack(images)).float() / 255  # (n, H, W, 3)
    d = (x[:, None] - x[None]).abs().mean(dim=(2, 3, 4))  # (n, n)
    return d[~torch.eye(len(images), dtype=torch.bool)].mean().item()

between = mean_abs_diff(same_face)
within = mean_abs_diff(happy_faces)
print(f"mean |difference| between classes, same face: {between:.3f}")
print(f"mean |difference| within Happiness, 7 faces:   {within:.3f}")
assert within > 3 * between

# %% [markdown]
# ## What TransFER does about it
#
# The paper's answer is to learn **relations between local parts** of the face. Its pipeline
# (the paper's Fig. 2, redrawn below with the library's own sizes) has three stages:
#
# 1. a **stem CNN**, IR-50 {cite:p}`deng2019arcface` from face.evoLVe {cite:p}`faceevolve`,
#    pretrained for face recognition on MS-Celeb-1M {cite:p}`guo2016msceleb`, turns the
#    112 x 112 face into a 256 x 14 x 14 feature map (chapter 3);
# 2. a **local CNN**: $B$ *local attention networks* (LANets) each produce an attention map
#    that picks out a region; *Multi-Attention Dropping* (MAD) sometimes drops one of the maps
#    during training, which, the paper argues, pushes the others to find other regions (chapter
#    8 measures whether it does); the maps are fused by an element-wise max and weight the
#    feature map (chapter 4);
# 3. a **transformer** {cite:p}`vaswani2017attention,dosovitskiy2021vit` over the 196 positions
#    of the map, which models the relations between the regions; *Multi-head Self-Attention
#    Dropping* (MSAD) drops one attention head now and then, for the same reason MAD drops a map
#    (chapter 5).

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(10, 3.2))
viz.draw_pipeline(ax)
plt.show()

# %% [markdown]
# > "Our proposed TransFER model outperforms the state-of-the-art methods on several FER
# > benchmarks" (the paper's abstract, {cite:p}`xue2021transfer`)
#
# with 90.91 % on RAF-DB, 90.83 % on FERPlus and 66.23 % on AffectNet (7 classes).
#
# Those figures need RAF-DB and a GPU (chapter 6 and the [claims ledger](11_claims.ipynb) say
# what can be checked where). What can be checked here is the model's size, built as the
# authors' code builds it:

# %%
model = build_model("transfer", size="paper").eval()
parts = {name: count_parameters(child) for name, child in model.named_children()}
display(pd.Series(parts, name="parameters").to_frame().style.format("{:,}"))
with torch.no_grad():
    logits = model(torch.randn(1, 3, 112, 112))
print("input (1, 3, 112, 112) -> logits", tuple(logits.shape))
assert round(count_parameters(model) / 1e6, 1) == 65.2
assert round(parts["stem"] / 1e6, 1) == 17.6
assert logits.shape == (1, len(RAFDB_CLASSES))

# %% [markdown]
# ## Notation
#
# One letter, one meaning, in every chapter: `tests/test_notation.py` checks every formula of the
# book against this table. Sizes are the paper's unless a chapter says otherwise; a single
# image's tensors are written without the batch dimension $n$.
#
# | symbol | meaning |
# | --- | --- |
# | $n$ | batch size (images in a mini-batch) |
# | $x$, $y$, $\hat y$, $c$ | an input image and its label; the 7 logits; a class |
# | $\mathcal{D}$ | the test set; $\mathcal{D}_c$ its images of class $c$ |
# | $S$ | input image side in pixels (112 in the paper; 48 in the cpu profile) |
# | $C$ | channels of a feature map (256 for $F$); $C_{\text{in}}$, $C_{\text{out}}$ a layer's input and output channels |
# | $G$, $G'$ | side of a square feature map, in positions (14 for $F$); the side after a strided unit |
# | $u$, $v$ | row and column of a position on the $G \times G$ grid |
# | $F$, $\tilde F$ | the stem's feature map of one image, $C \times G \times G$; the same weighted by $\bar A$ |
# | $X$, $s$, $\alpha$ | a map entering a stem unit; a convolution's stride; PReLU's slope per channel (chapter 3) |
# | $W$, $b$ | a learned weight matrix and bias: $W_{i,1}$, $W_{i,2}$ of LANet $i$; $W^{qkv}$, $W^o$, $b^o$ of attention; $W_p$, $b_p$ of the projection; $W_y$, $b_y$ of the head |
# | $B$, $i$, $i'$ | number of LANet branches (2 in the paper); a branch, $i = 1..B$; another branch |
# | $r$ | LANet channel reduction ratio (16), hidden width $C/r$ |
# | $A_i$ | attention map of branch $i$, in $[0,1]^{G\times G}$; $A_{(1)} \ge A_{(2)}$ the two largest maps at a position |
# | $\bar A$ | the fused map $\bar A = \max_i m_i A_i$ (the authors' `M_out`) |
# | $p$ | a regulariser's drop probability; $p_1$ MAD's (0.6), $p_2$ MSAD's (0.3) |
# | $\delta$, $i^\star$, $j^\star$ | a regulariser's coin for one sample (1: drop); the branch MAD drops; the head MSAD drops |
# | $m_i$, $g_j$ | MAD's keep-mask for branch $i$; MSAD's keep-mask for head $j$ (one sample, one block) |
# | $D$ | token (embedding) dimension (768 in the paper) |
# | $N$ | number of patch tokens, $N = G^2$; $N+1$ with the cls token |
# | $Z$, $Z_\ell$, $Z'_\ell$ | the $(N+1) \times D$ tokens of one image, one per row; after block $\ell$; inside block $\ell$ |
# | $T$, $z_{\mathrm{cls}}$, $E_{\mathrm{pos}}$ | the $N \times D$ patch tokens; the learned cls token; the position embedding (chapter 6) |
# | $L$, $\ell$ | number of transformer blocks (8 in the paper); a block, $\ell = 1..L$ |
# | $h$, $j$, $d_h$ | number of attention heads (8); a head, $j = 1..h$; the head dimension $D/h$ |
# | $Q$, $K$, $V$ | queries, keys, values of one head, $(N+1) \times d_h$ |
# | $\tau$ | a token, by its row (0: the cls token; chapter 5) |
# | $\mathcal{L}$, $\varepsilon$ | a loss; label smoothing's share of the target spread over the classes (chapter 6) |
# | $\eta$, $e$ | the learning rate; the fractional epoch (chapter 6) |
# | $\odot$, $\sigma$ | element-wise product; the logistic sigmoid |
# | $P^{(\ell)}_j$, $\tilde P^{(\ell)}$, $I$, $R$ | attention weights of head $j$ in block $\ell$; their head mean mixed with the identity $I$; the rollout (chapter 8) |
# | $\kappa$, $M$, $\mathcal{T}_i$, $q$ | share of positions in a map's top region; their count $M$; the top region of $A_i$; positions two top regions share (chapter 8) |
# | $\rho$, $\mu_i$ | correlation of two maps over the $N$ positions; the mean of $A_i$ (chapter 8) |
# | $k$, $\Delta$, $\bar\Delta$, $t$ | seeds two rows share; the paired difference of their accuracies at one seed; its mean; Student's t quantile (chapter 7) |
# | $\xi$, $f_c$, $\beta_c$, $\gamma_c$ | a relational face's three part states as signs; a per-part scorer's score for class $c$, its constant and its weights (chapter 7) |
#
# So $B$ never counts images and $N$ never counts a batch; $K$ only ever means keys; a
# transformer's blocks are counted by $L$. Displayed equations are numbered and cited by number.
# The cell below checks the table's sizes against the library's configs.

# %%
paper, tiny = make_config(size="paper"), get_profile("cpu")
notation = pd.Series({
    "S": paper.input_size, "C": paper.stem_channels, "G": paper.token_grid,
    "B": paper.num_branches, "r": paper.lanet_reduction, "C / r": paper.stem_channels
    // paper.lanet_reduction, "p1": paper.mad_p, "D": paper.embed_dim,
    "N": paper.num_tokens, "L": paper.depth, "h": paper.num_heads,
    "d_h": paper.embed_dim // paper.num_heads, "p2": paper.msad_p,
    "classes": paper.num_classes}, name="paper size", dtype=object)
display(notation.to_frame().T)
assert (paper.input_size, paper.stem_channels, paper.token_grid) == (112, 256, 14)
assert (paper.num_branches, paper.lanet_reduction, paper.mad_p) == (2, 16, 0.6)
assert (paper.embed_dim, paper.num_tokens) == (768, 196)
assert (paper.depth, paper.num_heads) == (8, 8)
assert paper.msad_p == 0.3 and paper.num_classes == 7 and tiny.input_size == 48

# %% [markdown]
# ## How to read and run this book
#
# Each chapter builds one idea: prose and the paper's words first, then the code, the shapes of
# the tensors it makes, a picture, and `assert`s. The `assert`s check **how the code works**:
# shapes and parameter counts, that a part written out in a chapter computes what the library's
# does, that a regulariser drops what it should and nothing at evaluation, that a committed
# result still reproduces, and that every sentence stating an outcome matches the number it was
# formatted from. They do **not** check the paper's claims about accuracy: those are measured
# in chapter 7, at a CPU's scale, on tasks built so that each claim could come out either
# way, and every claim is listed with its evidence in the
# [claims ledger](11_claims.ipynb). Run a chapter top to bottom; every chapter stands on its own.
#
# How much a chapter computes is set by one switch, the **profile**, read from the environment
# variable `TRANSFER_PROFILE`:

# %% tags=["hide-input"]
table = pd.DataFrame([
    dict(profile=p.name, model=p.size, epochs=p.epochs, batch=p.batch_size,
         optimiser=p.optimiser, lr=p.lr, what=p.description,
         synthetic_images=f"{p.synthetic_train} + {p.synthetic_test}")
    for p in PROFILES.values()
]).set_index("profile")
display(table)
assert set(table.index) == set(PROFILE_NAMES)

# %% [markdown]
# * `smoke`: the least work per chapter; it checks that the code runs, not that anything
#   learns. The book's automatic build uses it.
# * `cpu`: the default on a machine without a GPU. A *tiny* TransFER (same architecture, fewer
#   channels and blocks) is trained on the synthetic faces; the cell below says how long that
#   took on the CPU that made the book's committed runs.
# * `paper`: the authors' recipe, the default on a CUDA machine where RAF-DB is found. Open a
#   chapter on Colab with the rocket button at the top of the page, choose a GPU runtime, and put
#   RAF-DB in your Google Drive at `MyDrive/RAF-DB` (or set `TRANSFER_RAFDB`).

# %%
committed = json.loads((viz.project_root() / "book/results/ablation-cpu-30ep.json").read_text())
machine = committed["provenance"]["machine"]
runs = next(r for r in committed["rows"] if r["row"] == "transfer")["runs"]
minutes = [run["wall_seconds"] / 60 for run in runs]
cpu_time = (f"{min(minutes):.0f}-{max(minutes):.0f} minutes a run on a "
            f"{machine['cpu_count']}-core {machine['cpu']}")
print(f"the cpu profile's TransFER, {get_profile('cpu').epochs} epochs: {cpu_time} "
      f"({len(runs)} committed runs, book/results/ablation-cpu-30ep.json, appendix 12)")
assert not committed["provenance"]["train_overrides"]  # the cpu recipe as it is

# %% [markdown]
# Anything that does not depend on training (shapes, parameter counts, FLOPs, what a regulariser
# does to a tensor) is shown at the paper's size in every profile, because it is cheap.
#
# ## What needs RAF-DB, and what the synthetic set stands in for
#
# RAF-DB {cite:p}`li2017rafdb`, FERPlus and AffectNet are licensed data sets: they cannot be
# downloaded by the book, and you must request them from their authors. Likewise the pretrained
# weights (IR-50 on MS-Celeb-1M, ViT-Small on ImageNet, the authors' RAF-DB model) are files you
# bring. Without them:
#
# * the **synthetic set** (chapter 2) takes RAF-DB's place. It has RAF-DB's layout, labels and
#   class imbalance, and it is built so that TransFER's premise holds: expressions are
#   combinations of local cues that classes share, and any part can be hidden by an occluder.
#   Numbers measured on it say whether the code learns, **not** how well TransFER does on
#   real faces; every such result is labelled as synthetic where it is shown;
# * weights start from random initialisation, and chapters say so where a pretrained file would
#   have been loaded.

# %% tags=["hide-input"]
ir50_file = viz.find_weights("backbone_ir50_ms1m_epoch120.pth", "TRANSFER_IR50")
vit_file = viz.find_weights("vit_small_p16_224-15ec54c9.pth", "TRANSFER_VIT")
needs = pd.DataFrame({
    "without it the book uses": ["synthetic faces (RAF-DB layout and imbalance)",
                                 "random initialisation of the stem",
                                 "random initialisation of the transformer"],
    "found here": [str(rafdb) if rafdb else "no",
                   str(ir50_file or "no"), str(vit_file or "no")],
}, index=["RAF-DB", "IR-50 on MS-Celeb-1M", "ViT-Small on ImageNet"])
display(needs)
assert (rafdb is None) == (needs.loc["RAF-DB", "found here"] == "no")

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
display(Markdown(f"""
* On the synthetic faces, the mean pixel difference within Happiness ({within:.3f}) is
  {within / between:.1f} times the difference between classes on one face ({between:.3f}):
  classes share local cues, and one class looks different on every face.
* TransFER answers with $B = {paper.num_branches}$ LANet maps, fused by a max and regularised
  by MAD, and a transformer over the $N = {paper.num_tokens}$ positions, regularised by MSAD.
* Built as the authors' code builds it, the paper-size model has
  {count_parameters(model) / 1e6:.1f} M parameters, {parts["stem"] / 1e6:.1f} M of them in the
  stem.
* One profile switch (`smoke`, `cpu`, `paper`) sets how much every chapter computes; at `cpu`,
  training TransFER took {cpu_time}. Without RAF-DB the synthetic set stands in: its numbers say
  whether the code learns, not how well TransFER does on real faces.
"""))

# %% [markdown]
# ## Exercises
#
# 1. With `mean_abs_diff`, compare Surprise and Fear on the same face (classes 0 and 1 of the
#    top row) with the mean over all pairs. Is the pair the paper calls hard closer than
#    average?
# 2. Draw seven Happiness faces *without* occluders (`occlusion=None`). How much of the
#    within-class difference above came from the occluders?
# 3. `python -m transfer_lib summary --size tiny` and `python -m transfer_lib summary --size
#    tiny --variant vit_fer` print the tiny model's parts. How many parameters do the LANets
#    add? Which part holds most of the tiny model's parameters, and is it the same part as at
#    the paper's size?
# 4. Using the notation table, write down the shapes of $F$, $A_i$, $\bar A$ and the tokens
#    entering the transformer for one image at the `cpu` profile ($S = 48$, tiny size), then
#    check them with `build_model("transfer", size="tiny", input_size=48)` and forward hooks.
# 5. Train the `cpu` profile's TransFER (the cell under the profile table says how long that
#    took, and on which CPU): `python -m transfer_lib train --profile cpu --out runs/ex1`. Compare
#    its final test accuracy (`runs/ex1/summary.json`) with the accuracy of always answering
#    Happiness (chapter 2).
