# %% [markdown]
# # 4. The local CNN: LANets and Multi-Attention Dropping
#
# An expression lives in a few places of the face at once: the brows, the eyes, the mouth. The
# paper's **local CNN** finds such places with several small attention networks and makes sure
# they do not all find the same one.
#
# > "the LANets are designed to locate diverse local patches ... we propose Multi-Attention
# > Dropping (MAD), which randomly drops an attention map, so that the rest LANets are forced to
# > explore other discriminative regions" {cite:p}`xue2021transfer` (Sec. 3.2, paraphrased)
#
# Three pieces: a **LANet** turns the stem's 256 x 14 x 14 map into one attention map; **MAD**
# drops one of the B maps of a sample now and then during training; an element-wise **max**
# fuses what is left into one map that weights the features.

# %% [setup]

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
from PIL import Image

from transfer_lib import viz
from transfer_lib.data.synth import render_face
from transfer_lib.data.transforms import eval_transform
from transfer_lib.models.config import MAP_REGULARISERS, make_config
from transfer_lib.models.local_cnn import (
    LANet,
    LocalCNN,
    MultiAttentionDropping,
    make_map_regulariser,
)
from transfer_lib.models.stem import IR50Stem
from transfer_lib.profiles import active_profile, find_rafdb
from transfer_lib.summary import count_parameters

viz.use_book_style()
torch.manual_seed(0)
profile = active_profile()
print(viz.describe_setup(profile, find_rafdb()))
config = make_config(size="paper")
print(f"B = {config.num_branches} LANets, reduction r = {config.lanet_reduction}, "
      f"MAD p1 = {config.mad_p}")

# %% [markdown]
# ## A LANet
#
# A LANet is two 1 x 1 convolutions: 256 channels are squeezed to 256 / r = 16, then to one,
# and a sigmoid turns the result into a map of weights in (0, 1), one per position of the grid.
# It is tiny: it chooses *where*, the stem has already said *what*. Each convolution is followed
# by a BatchNorm, as in the authors' `la_max.py` (the paper's figure shows conv-ReLU-conv-sigmoid).
# That makes the convolutions' biases redundant: in training, BatchNorm subtracts the batch mean,
# so a constant added before it cancels and its gradient is zero in exact arithmetic (what a
# backward pass returns for it is rounding noise, sometimes exactly 0.0). We keep the biases
# because the authors' checkpoint has them.

# %%
lanet = LANet(config.stem_channels, config.lanet_reduction).eval()
print(lanet)
feats = torch.randn(4, 256, 14, 14)  # (N, C, H, W): a batch of stem outputs
with torch.no_grad():
    a = lanet(feats)
print(f"{tuple(feats.shape)} -> {tuple(a.shape)}, {count_parameters(lanet):,} parameters")
assert a.shape == (4, 1, 14, 14)
assert (a > 0).all() and (a < 1).all()

# %% [markdown]
# ## B maps, fused by max
#
# `LocalCNN` runs B = 2 LANets side by side, regularises their stacked maps (MAD, in training),
# takes the element-wise max over the branches and multiplies the feature map by it. Below it
# runs on the stem output of a synthetic face. Both stem and LANets are randomly initialised
# here, so the maps mark nothing in particular; chapter 8 shows the maps of a trained model.

# %%
stem = IR50Stem(config.stem_widths, config.stem_depths).eval()
local = LocalCNN(config.stem_channels, config.num_branches, config.lanet_reduction,
                 "mad", config.mad_p).eval()
face = Image.fromarray(render_face("Happiness", seed=5))
x = eval_transform(config)(face)[None]  # (1, 3, 112, 112)
with torch.no_grad():
    f = stem(x)  # (1, 256, 14, 14)
    weighted, maps, fused = local(f)
print("features", tuple(f.shape), "-> maps", tuple(maps.shape), "-> fused", tuple(fused.shape),
      "-> weighted features", tuple(weighted.shape))
img = viz.to_image(x[0], config.mean, config.std)
fig = viz.show_grid([img, maps[0, 0], maps[0, 1], fused[0, 0], viz.overlay(img, fused[0, 0])],
                    titles=["synthetic face", "LANet 1", "LANet 2", "max (M_out)", "M_out on the face"],
                    cmap="viridis", size=1.8, suptitle="random weights: the maps mark nothing yet")
plt.show()
assert torch.equal(fused, maps.amax(dim=1, keepdim=True))
assert torch.allclose(weighted, f * fused)

# %% [markdown]
# Why max and not mean? With a max, a region that *any* branch finds important keeps its full
# weight; a mean would halve a region found by one branch only, and would let the branches blur
# into one average map.

# %% [markdown]
# ## Multi-Attention Dropping
#
# MAD acts on the stack of maps (N, B, 14, 14) in training: for each sample, with probability
# p1 = 0.6, one of its B maps, chosen uniformly, is set to zero. Nothing is rescaled, and at
# evaluation nothing is dropped. Here is its mask for eight samples:

# %%
mad = MultiAttentionDropping(p=config.mad_p).train()
torch.manual_seed(1)
mask = mad.keep_mask(8, config.num_branches, torch.device("cpu"))  # (N, B)
fig, ax = plt.subplots(figsize=(4, 1.6))
viz.plot_mask(mask.T, title="MAD keep-mask, p1 = 0.6 (dark = map dropped)", xlabel="sample",
              ylabel="LANet", ax=ax, xticks=range(8))
ax.set_yticks([0, 1], ["1", "2"])
plt.show()
assert ((mask == 0).sum(dim=1) <= 1).all()  # at most one map per sample

# %% [markdown]
# The paper's claim is about the statistics of this mask: a sample loses one map with
# probability p1, never more than one, each branch equally often. A large batch checks it:

# %%
n = 200_000
mask = mad.keep_mask(n, config.num_branches, torch.device("cpu"))
dropped = (mask == 0).sum(dim=1)  # maps dropped per sample
share = (dropped > 0).float().mean().item()
per_branch = (mask == 0).float().mean(dim=0)
print(f"samples with a dropped map: {share:.3f} (p1 = {config.mad_p}); per branch: "
      f"{per_branch.tolist()}")
assert abs(share - config.mad_p) < 0.01
assert dropped.max() == 1
assert torch.allclose(per_branch, torch.full_like(per_branch, config.mad_p / 2), atol=0.01)
maps_train = torch.rand(16, 2, 14, 14)
assert torch.equal(mad.eval()(maps_train), maps_train)  # evaluation: nothing dropped

# %% [markdown]
# ## MAD beside Dropout, DropBlock and Spatial Dropout
#
# The paper compares MAD with three regularisers put in its place on the same maps: Dropout
# {cite:p}`srivastava2014dropout` zeroes single positions, DropBlock {cite:p}`ghiasi2018dropblock`
# zeroes square blocks, Spatial Dropout {cite:p}`tompson2015spatial` zeroes whole maps, each map
# independently; all three rescale what they keep. Here each is applied in training mode, with
# the same p = 0.6, to the same two maps (four draws of the same sample, so each row shows
# what one regulariser can do). The colour scale is the original maps': values rescaled by
# 1 / (1 - p) saturate to yellow, zeros are dark.

# %% tags=["hide-input"]
base = torch.stack([maps[0]] * 8)  # the two LANet maps above, 8 times: (8, 2, 14, 14)
names = [n for n in MAP_REGULARISERS if n != "none"]
items, labels = [], []
for name in names:
    reg = make_map_regulariser(name, config.mad_p, config.dropblock_size).train()
    torch.manual_seed(3)
    out = reg(base)
    for s in range(4):
        items += [out[s, 0], out[s, 1]]
    labels.append(name)
fig = viz.show_grid(items, ncols=8, cmap="viridis", vmin=0, vmax=float(base.max()), size=1.1,
                    titles=[f"draw {s + 1}\nLANet {b + 1}" for s in range(4) for b in range(2)],
                    row_labels=labels, suptitle="the same two maps under each regulariser (training mode)")
plt.show()

# %% [markdown]
# The difference that matters for TransFER is in the fused map. Only MAD guarantees that a
# sample always keeps at least one whole, unscaled map, so the max fusion always sees a region a
# LANet chose, while the *other* branch is pushed to find a different one. Spatial Dropout drops
# both maps of a sample with probability p^2; Dropout and DropBlock punch holes in every map and
# rescale the rest.

# %%
rows = []
n = 20_000
stack = torch.rand(n, 2, 14, 14) * 0.9 + 0.05  # maps in (0, 1), like a LANet's
for name in names:
    reg = make_map_regulariser(name, config.mad_p, config.dropblock_size).train()
    torch.manual_seed(0)
    out = reg(stack)
    whole_map_zero = (out.flatten(2) == 0).all(dim=2)  # (n, 2)
    rows.append(dict(
        regulariser=name,
        zeroed_positions=(out == 0).float().mean().item(),
        samples_with_a_whole_map_dropped=whole_map_zero.any(dim=1).float().mean().item(),
        samples_with_both_maps_dropped=whole_map_zero.all(dim=1).float().mean().item(),
        rescaled=bool((out > stack + 1e-6).any()),
    ))
stats = pd.DataFrame(rows).set_index("regulariser")
display(stats.style.format(precision=3))
assert abs(stats.loc["mad", "samples_with_a_whole_map_dropped"] - config.mad_p) < 0.02
assert stats.loc["mad", "samples_with_both_maps_dropped"] == 0
assert not stats.loc["mad", "rescaled"] and stats.loc["dropout", "rescaled"]
assert abs(stats.loc["spatial", "samples_with_both_maps_dropped"] - config.mad_p**2) < 0.02

# %% [markdown]
# > MAD outperforms Dropout, DropBlock and Spatial Dropout on RAF-DB by at least 0.56 points
# > {cite:p}`xue2021transfer` (Sec. 4, the paper's comparison).
#
# That is a claim about trained models on RAF-DB, and this chapter trains nothing. Chapter 7
# runs the comparison (`build_model(..., map_regulariser=...)` switches the regulariser) in the
# active profile; on the synthetic set its numbers say whether the code works, not whether the
# paper's margin holds on real faces.
