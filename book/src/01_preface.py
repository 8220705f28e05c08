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
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from transfer_lib import build_model, viz
from transfer_lib.data.synth import render_face
from transfer_lib.models.config import RAFDB_CLASSES, make_config
from transfer_lib.profiles import (
    PROFILE_NAMES,
    PROFILES,
    active_profile,
    find_rafdb,
    get_profile,
)
from transfer_lib.summary import count_parameters

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
# The pixels say the same thing as the eye. Within the top row, faces that share everything but
# the expression differ by a few percent of their pixels; the Happiness faces differ from each
# other by much more:

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
#    during training, so the others are pushed to find other regions; the maps are fused by an
#    element-wise max and weight the feature map (chapter 4);
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
# what can be checked where). What we *can* check here is the model's size: built as the
# authors' code builds it, the paper-size model has about 65.2 M parameters, 17.6 M of them in
# the stem. Building it takes a second; a forward pass on one face a fraction of one.

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
# One letter, one meaning, in every chapter. Sizes are the paper's unless a chapter says
# otherwise; a single image's tensors are written without the batch dimension $n$.
#
# | symbol | meaning |
# | --- | --- |
# | $n$ | batch size (images in a mini-batch) |
# | $S$ | input image side in pixels (112 in the paper; 48 in the cpu profile) |
# | $C$ | channels of the stem's feature map (256 in the paper) |
# | $H, W$ | height and width of the stem's feature map (14 x 14 in the paper) |
# | $F \in \mathbb{R}^{C\times H\times W}$ | the stem's feature map of one image |
# | $B$ | number of LANet branches (2 in the paper) |
# | $r$ | LANet channel reduction ratio (16), hidden width $C/r$ |
# | $A_i \in [0,1]^{H\times W}$ | attention map of LANet branch $i = 1..B$ |
# | $m_i \in \{0,1\}$ | MAD's keep-mask for branch $i$ (one sample) |
# | $p_1$ | MAD's probability of dropping one map of a sample (0.6) |
# | $\bar A \in [0,1]^{H\times W}$ | the fused map $\bar A = \max_i m_i A_i$ (the authors' `M_out`) |
# | $D$ | token (embedding) dimension (768 in the paper) |
# | $N = HW$ | number of patch tokens; $N+1$ with the class token |
# | $L$ | number of transformer blocks (8 in the paper) |
# | $h$ | number of attention heads (8); $d_h = D/h$ the head dimension |
# | $Q, K, V \in \mathbb{R}^{(N+1)\times d_h}$ | queries, keys, values of one head |
# | $g_j \in \{0,1\}$ | MSAD's keep-mask for head $j = 1..h$ (one sample, one block) |
# | $p_2$ | MSAD's probability of dropping one head of a sample in a block (0.3) |
# | $x$, $y$ | an input image and its label; $\hat{y}$ the logits, 7 classes |
# | $\odot$, $\sigma$ | element-wise product; the logistic sigmoid |
# | $P^{(l)}_j$, $R$ | attention weights of head $j$ in block $l$; their rollout over the blocks (chapter 8) |
# | $\kappa$, $u$, $\mathcal{T}_i$ | share of positions called a map's top region, their count $u = \mathrm{round}(\kappa N)$, the top region of $A_i$ (chapter 8) |
# | $\rho$, $\mu_i$ | correlation of two maps over the $N$ positions; the mean of $A_i$ (chapter 8) |
#
# So $B$ never counts images and $N$ never counts a batch; $K$ only ever means keys; a
# transformer's blocks are counted by $L$. Displayed equations are numbered and cited by number.
# The cell below checks the table's sizes against the library's configs.

# %%
paper, tiny = make_config(size="paper"), get_profile("cpu")
notation = pd.Series({
    "S": paper.input_size, "C": paper.stem_channels, "H = W": paper.token_grid,
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
# in chapter 7, at a laptop's scale, and every claim is listed with its evidence in the
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
# * `smoke`: seconds per chapter; it checks that the code runs, not that anything learns. The
#   book's automatic build uses it.
# * `cpu`: the default on a machine without a GPU. A *tiny* TransFER (same architecture, fewer
#   channels and blocks) is trained on the synthetic faces in minutes on a laptop.
# * `paper`: the authors' recipe, the default on a CUDA machine where RAF-DB is found. Open a
#   chapter on Colab with the rocket button at the top of the page, choose a GPU runtime, and put
#   RAF-DB in your Google Drive at `MyDrive/RAF-DB` (or set `TRANSFER_RAFDB`).
#
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
#
# * Expressions are hard to tell apart because classes share local cues and one class looks
#   different on every face; on the synthetic faces the difference within Happiness is
#   several times the difference between classes on one face.
# * TransFER answers with local attention maps ($B$ LANets, fused by a max, regularised by MAD)
#   and a transformer that relates the $N = HW$ positions (regularised by MSAD).
# * The paper-size model has 65.2 M parameters, 17.6 M of them in the stem.
# * One profile switch (`smoke`, `cpu`, `paper`) sets how much every chapter computes; without
#   RAF-DB the synthetic set stands in, and its numbers say whether the code learns, not how
#   well TransFER does on real faces.
# * The `assert`s check the code; the paper's claims are measured in chapter 7 and listed in
#   the claims ledger.
#
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
# 5. Train the `cpu` profile's TransFER (a few minutes):
#    `python -m transfer_lib train --profile cpu --out runs/ex1`. Compare its final test
#    accuracy (`runs/ex1/summary.json`) with the 39 % of always answering Happiness.
