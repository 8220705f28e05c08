# %% [markdown]
# # 4. The local CNN: LANets and Multi-Attention Dropping
#
# An expression lives in a few places of the face at once: the brows, the eyes, the mouth. The
# paper's **local CNN** finds such places with several small attention networks and makes sure
# they do not all find the same one. In the words of its abstract:
#
# > "To address this issue, the MAD is proposed to randomly drop an attention map.
# > Consequently, models are pushed to explore diverse local patches adaptively."
# > {cite:p}`xue2021transfer` (abstract)
#
# Three pieces act on the stem's feature map $F \in \mathbb{R}^{C \times H \times W}$
# ($256 \times 14 \times 14$): $B = 2$ **LANets** each turn $F$ into an attention map
# $A_i \in [0, 1]^{H \times W}$; **MAD** sets one of a sample's $B$ maps to zero now and then
# during training; an element-wise **max** fuses what is left into one map $\bar A$ that
# weights the features. This chapter writes each piece from its equation, checks it against
# the library (same weights, same random draws, same outputs), then uses the library.

# %% [setup]

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as nnf
from PIL import Image
from torch import nn

from transfer_lib import viz
from transfer_lib.data.synth import render_face
from transfer_lib.data.transforms import eval_transform
from transfer_lib.models import local_cnn as lib
from transfer_lib.models.config import MAP_REGULARISERS, make_config
from transfer_lib.models.stem import IR50Stem
from transfer_lib.profiles import active_profile, find_rafdb
from transfer_lib.summary import count_parameters

viz.use_book_style()
torch.manual_seed(0)
profile = active_profile()
print(viz.describe_setup(profile, find_rafdb()))
config = make_config(size="paper")
C, B = config.stem_channels, config.num_branches
r, p1 = config.lanet_reduction, config.mad_p
print(f"C = {C} channels, B = {B} LANets, reduction r = {r}, MAD p1 = {p1}")

# %% [markdown]
# ## A LANet
#
# The paper describes a LANet as two 1 x 1 convolutions with a ReLU between them and a sigmoid
# at the end. A 1 x 1 convolution is the same matrix applied at every position $(h, w)$ of the
# grid, so the paper's LANet $i$ reads, at each position,
#
# $$
# A_i[h, w] = \sigma\big(w_{i,2}^\top \,\mathrm{ReLU}(W_{i,1} F[:, h, w])\big),
# \qquad W_{i,1} \in \mathbb{R}^{(C/r) \times C},\; w_{i,2} \in \mathbb{R}^{C/r} .
# $$ (eq-lanet-paper)
#
# The authors' code (`LANet` in `la_max.py`, in both the Paddle and the PyTorch folder of
# `youqingxiaozhua/APViT`) and the library add a BatchNorm after each convolution, and give the
# convolutions biases $b_{i,1}, b_{i,2}$. **These BN layers are not in the paper's
# description**; we follow the code, since the released weights contain them:
#
# $$
# A_i[h, w] = \sigma\Big(\mathrm{BN}_{i,2}\big(w_{i,2}^\top\, \mathrm{ReLU}\big(
#   \mathrm{BN}_{i,1}(W_{i,1} F[:, h, w] + b_{i,1})\big) + b_{i,2}\big)\Big) .
# $$ (eq-lanet)
#
# With $C = 256$ and $r = 16$ the hidden width is $C/r = 16$. A LANet is tiny: it chooses
# *where*, the stem has already said *what*. Here is {eq}`eq-lanet`, written out:

# %%
class LANet(nn.Module):
    """(eq-lanet): (n, C, H, W) -> one attention map (n, 1, H, W) in (0, 1)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = channels // reduction
        self.conv1 = nn.Conv2d(channels, hidden, 1)  # W_1, b_1
        self.bn1 = nn.BatchNorm2d(hidden)  # not in the paper's description
        self.conv2 = nn.Conv2d(hidden, 1, 1)  # w_2, b_2
        self.bn2 = nn.BatchNorm2d(1)  # not in the paper's description

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.bn1(self.conv1(f)))  # (n, C/r, H, W)
        return torch.sigmoid(self.bn2(self.conv2(hidden)))  # (n, 1, H, W)


def randomise_batchnorm(module: nn.Module, generator: torch.Generator) -> None:
    """Non-trivial BN statistics, so that an equality check in eval mode means
    something (fresh BN layers are the identity there)."""
    for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm2d)):
        c = bn.num_features
        bn.running_mean.copy_(torch.randn(c, generator=generator) * 0.5)
        bn.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
        bn.weight.data.copy_(torch.rand(c, generator=generator) + 0.5)
        bn.bias.data.copy_(torch.randn(c, generator=generator) * 0.1)


g = torch.Generator().manual_seed(0)
theirs = lib.LANet(C, r)
randomise_batchnorm(theirs, g)
ours = LANet(C, r)
ours.load_state_dict(theirs.state_dict(), strict=True)  # same names: conv1, bn1, ...
feats = torch.randn(4, C, 14, 14, generator=g)  # (n, C, H, W): a batch of stem outputs
for mode in (False, True):  # eval (running statistics), then train (batch statistics)
    ours.train(mode)
    theirs.train(mode)
    with torch.no_grad():
        torch.testing.assert_close(ours(feats), theirs(feats))
ours.eval()
with torch.no_grad():
    a = ours(feats)
print("LANet == lib.LANet (same weights, eval and train mode); "
      f"{tuple(feats.shape)} -> {tuple(a.shape)}, "
      f"{count_parameters(ours):,} parameters")
assert a.shape == (4, 1, 14, 14)
assert (a > 0).all() and (a < 1).all()

# %% [markdown]
# The BN layers make the convolutions' biases redundant: in training, BatchNorm subtracts the
# batch mean, so a constant added before it cancels and its gradient is zero in exact
# arithmetic (what a backward pass returns for it is rounding noise, sometimes exactly 0.0). We
# keep the biases because the authors' checkpoint has them.
#
# ## B maps, MAD and the max
#
# In training, MAD draws for each sample of the batch whether to drop a map, $d$, and which
# one, $j$; the keep-mask of branch $i$ is then
#
# $$
# d \sim \mathrm{Bernoulli}(p_1), \qquad j \sim \mathrm{Uniform}\{1, \dots, B\}, \qquad
# m_i = 1 - d\,[i = j] ,
# $$ (eq-mad-mask)
#
# so a sample loses one map with probability $p_1$ and never more than one. At evaluation
# $m_i = 1$. The kept maps are fused by an element-wise max, and the fused map weights every
# channel of the feature map:
#
# $$
# \bar A[h, w] = \max_{i = 1..B}\; m_i A_i[h, w] ,
# $$ (eq-max-fusion)
#
# $$
# F'[c, h, w] = F[c, h, w]\, \bar A[h, w] \quad \text{for every channel } c,
# \qquad F' = F \odot \bar A .
# $$ (eq-weighted-features)
#
# The authors' code calls $\bar A$ `M_out`. The library's `MultiAttentionDropping` draws
# $d$ for the whole batch with `torch.rand`, then $j$ with `torch.randint`, from PyTorch's
# global generator; drawing in the same order from the same seed gives the same masks:

# %%
def mad_keep_mask(n: int, branches: int, p: float) -> torch.Tensor:
    """(eq-mad-mask) for a batch: (n, B) ones, one zero in each sample that drops."""
    d = (torch.rand(n) < p).float()  # (n,): does the sample drop a map?
    j = torch.randint(branches, (n,))  # (n,): which one
    return 1.0 - nnf.one_hot(j, branches).float() * d[:, None]  # (n, B)


def local_cnn(f: torch.Tensor, lanets: nn.ModuleList, p: float, training: bool):
    """(eq-lanet) for each branch, then (eq-mad-mask), (eq-max-fusion) and
    (eq-weighted-features).

    f: (n, C, H, W) -> weighted features (n, C, H, W), maps m_i A_i (n, B, H, W),
    fused map (n, 1, H, W).
    """
    maps = torch.cat([lanet(f) for lanet in lanets], dim=1)  # (n, B, H, W)
    if training:
        maps = maps * mad_keep_mask(len(f), len(lanets), p)[:, :, None, None]
    fused = maps.amax(dim=1, keepdim=True)  # (n, 1, H, W)
    return f * fused, maps, fused  # fused broadcasts over the C channels


mad = lib.MultiAttentionDropping(p=p1).train()
for seed in range(5):
    torch.manual_seed(seed)
    ours_mask = mad_keep_mask(64, B, p1)
    torch.manual_seed(seed)
    assert torch.equal(ours_mask, mad.keep_mask(64, B, torch.device("cpu")))

library = lib.LocalCNN(C, B, r, "mad", p1)
for lanet in library.lanets:
    randomise_batchnorm(lanet, g)
lanets = nn.ModuleList(LANet(C, r) for _ in range(B))
lanets.load_state_dict(library.lanets.state_dict(), strict=True)
for training in (True, False):
    library.train(training)
    lanets.train(training)
    torch.manual_seed(7)
    with torch.no_grad():
        expected = library(feats)
    torch.manual_seed(7)
    with torch.no_grad():
        got = local_cnn(feats, lanets, p1, training)
    for x_ours, x_lib in zip(got, expected):
        torch.testing.assert_close(x_ours, x_lib)
print("mad_keep_mask == lib.MultiAttentionDropping.keep_mask (same seeds); "
      "local_cnn == lib.LocalCNN (same weights and seed, train and eval mode)")

# %% [markdown]
# Same weights and the same random draws give the same masks, maps and weighted features. From
# here on the chapter uses the library's `LocalCNN`. Below it runs on the stem output of a
# synthetic face. Both stem and LANets are randomly initialised here, so the maps mark nothing
# in particular; chapter 8 shows the maps of a trained model.

# %%
stem = IR50Stem(config.stem_widths, config.stem_depths).eval()
local = lib.LocalCNN(C, B, r, "mad", p1).eval()
face = Image.fromarray(render_face("Happiness", seed=5))
x = eval_transform(config)(face)[None]  # (1, 3, S, S)
with torch.no_grad():
    f = stem(x)  # F: (1, C, H, W)
    weighted, maps, fused = local(f)
print("features", tuple(f.shape), "-> maps", tuple(maps.shape), "-> fused",
      tuple(fused.shape), "-> weighted features", tuple(weighted.shape))
img = viz.to_image(x[0], config.mean, config.std)
panels = [img, maps[0, 0], maps[0, 1], fused[0, 0], viz.overlay(img, fused[0, 0])]
fig = viz.show_grid(panels,
                    titles=["synthetic face", "LANet 1", "LANet 2", "max (M_out)",
                            "M_out on the face"],
                    cmap="viridis", size=1.8,
                    suptitle="random weights: the maps mark nothing yet")
plt.show()
assert torch.equal(fused, maps.amax(dim=1, keepdim=True))
assert torch.allclose(weighted, f * fused)

# %% [markdown]
# Why max and not mean? With a max, a region that *any* branch finds important keeps its full
# weight; a mean would halve a region found by one branch only, and would let the branches blur
# into one average map.
#
# ## The mask, in numbers
#
# Here is MAD's mask for eight samples, with $p_1 = 0.6$:

# %%
torch.manual_seed(1)
mask = mad.keep_mask(8, B, torch.device("cpu"))  # (n, B)
fig, ax = plt.subplots(figsize=(4, 1.6))
viz.plot_mask(mask.T, title=f"MAD keep-mask, p1 = {p1} (dark = map dropped)",
              xlabel="sample", ylabel="LANet", ax=ax, xticks=range(8))
ax.set_yticks([0, 1], ["1", "2"])
plt.show()
assert ((mask == 0).sum(dim=1) <= 1).all()  # at most one map per sample

# %% [markdown]
# By {eq}`eq-mad-mask`, a sample loses a map with probability $p_1$, never more than one, and
# each branch is the one dropped with probability $p_1 / B$. A large batch checks it:

# %%
n = 200_000
mask = mad.keep_mask(n, B, torch.device("cpu"))
dropped = (mask == 0).sum(dim=1)  # maps dropped per sample
share = (dropped > 0).float().mean().item()
per_branch = (mask == 0).float().mean(dim=0)
print(f"samples with a dropped map: {share:.3f} (p1 = {p1}); per branch: "
      f"{[round(v, 3) for v in per_branch.tolist()]} (p1 / B = {p1 / B})")
assert abs(share - p1) < 0.01
assert dropped.max() == 1
assert torch.allclose(per_branch, torch.full_like(per_branch, p1 / B), atol=0.01)
maps_train = torch.rand(16, 2, 14, 14)
assert torch.equal(mad.eval()(maps_train), maps_train)  # evaluation: nothing dropped
mad.train()

# %% [markdown]
# ## Why nothing is rescaled
#
# Dropout {cite:p}`srivastava2014dropout` multiplies what it keeps by $1 / (1 - p)$, so that
# each activation has the same expected value in training as at evaluation. MAD rescales
# nothing, in the authors' code and in ours. What reaches the rest of the network is not a
# single map but the max {eq}`eq-max-fusion`, and for the max a dropped map is mostly covered
# by the others: write $A_{(1)} \ge A_{(2)}$ for the largest and second-largest of the $B$ maps
# at a position. Dropping any map but the winner leaves $\bar A$ unchanged; dropping the
# winner, which happens with probability $p_1 / B$, lowers it to $A_{(2)}$. So
#
# $$
# \mathbb{E}\big[\bar A[h, w]\big] = A_{(1)} - \frac{p_1}{B}\,\big(A_{(1)} - A_{(2)}\big),
# $$ (eq-mad-expectation)
#
# which is the evaluation value $A_{(1)}$ wherever the branches agree, and lower by at most
# $p_1 / B$ of the gap where they do not. A dropout-style rescale of the kept maps by
# $1 / (1 - p_1 / B)$ would instead raise the fused map *everywhere* a sample keeps its
# winner, and push it out of $[0, 1]$. Measured on independent random maps in $(0.05, 0.95)$:

# %%
n = 20_000
stack = torch.rand(n, B, 14, 14) * 0.9 + 0.05  # maps in (0, 1), like a LANet's
eval_fused = stack.amax(dim=1)  # m_i = 1 at evaluation
top2 = stack.topk(2, dim=1).values  # A_(1), A_(2)
predicted = top2[:, 0] - p1 / B * (top2[:, 0] - top2[:, 1])  # (eq-mad-expectation)
torch.manual_seed(0)
keep = mad.keep_mask(n, B, torch.device("cpu"))[:, :, None, None]
mad_fused = (stack * keep).amax(dim=1)
rescaled_fused = (stack * keep / (1 - p1 / B)).amax(dim=1)
rescale = pd.DataFrame({
    "mean fused map": [eval_fused.mean().item(), mad_fused.mean().item(),
                       rescaled_fused.mean().item()],
    "share of positions > 1": [(eval_fused > 1).float().mean().item(),
                               (mad_fused > 1).float().mean().item(),
                               (rescaled_fused > 1).float().mean().item()],
}, index=["evaluation (no drop)", "MAD, training", "MAD rescaled by 1/(1 - p1/B)"])
display(rescale.style.format(precision=3))
print(f"(eq-mad-expectation) predicts a training mean of {predicted.mean().item():.3f}")
gap_mad = rescale.iloc[1, 0] - rescale.iloc[0, 0]
gap_rescaled = rescale.iloc[2, 0] - rescale.iloc[0, 0]
print(f"training minus evaluation mean: MAD {gap_mad:+.3f}, "
      f"rescaled {gap_rescaled:+.3f}; "
      f"the rescale takes {rescale.iloc[2, 1]:.0%} of the positions above 1")
assert abs(gap_mad) < abs(gap_rescaled)
assert abs(mad_fused.mean().item() - predicted.mean().item()) < 0.005
assert rescale.iloc[1, 0] < rescale.iloc[0, 0] < rescale.iloc[2, 0]
assert rescale.iloc[1, 1] == 0 and rescale.iloc[2, 1] > 0

# %% [markdown]
# So MAD does leave a difference between training and evaluation in the fused map, but a
# bounded one: at most $p_1 / B$ of the gap between the two largest maps at a position, and
# smaller here than the overshoot a rescale would cause. Where trained branches agree it
# vanishes; where they mark different regions, which is what MAD asks of them, it is the price
# of making each branch work without the others.
#
# ## How the max routes the gradient
#
# The max in {eq}`eq-max-fusion` is differentiable almost everywhere, with
#
# $$
# \frac{\partial \bar A[h, w]}{\partial A_i[h, w]} =
# \begin{cases}
#   m_i & \text{if } i = \arg\max_k m_k A_k[h, w],\\
#   0 & \text{otherwise.}
# \end{cases}
# $$ (eq-max-grad)
#
# At each position exactly one branch, the winner, receives the gradient of the loss; the
# others are treated there as if a stop-gradient had been put on them, and a dropped branch
# ($m_i = 0$) receives nothing at all for that sample. The paper relates the max to this
# stop-gradient behaviour: a branch is trained only on the positions it wins, which leaves the
# other positions to the other branches. Numerically, with the library's LANets in training mode,
# first for $\bar A$ itself, then for a random linear loss $L$ on $F'$:

# %%
local_train = lib.LocalCNN(C, B, r, "mad", p1).train()
f_batch = torch.randn(8, C, 14, 14, generator=g)
a_maps = torch.cat([la(f_batch) for la in local_train.lanets], dim=1)  # (n, B, H, W)
a_maps.retain_grad()
torch.manual_seed(3)
keep = local_train.regulariser.keep_mask(8, B, torch.device("cpu"))  # m_i: (n, B)
kept = a_maps * keep[:, :, None, None]
fused_map = kept.amax(dim=1, keepdim=True)  # (eq-max-fusion)
winner = kept == fused_map  # (n, B, H, W): the branch that wins each position
assert (winner.sum(dim=1) == 1).all()  # no ties: one winner per position
routed = winner & (keep[:, :, None, None] == 1)  # where dA_bar/dA_i = m_i = 1
# the gradient of the fused map itself: exactly (eq-max-grad), 1 or 0 at every position
(d_fused,) = torch.autograd.grad(fused_map.sum(), a_maps, retain_graph=True)
assert torch.equal(d_fused, routed.float())
# and the gradient of a loss on F' = F * A_bar reaches A_i only through those positions
loss = (f_batch * fused_map * torch.randn(f_batch.shape, generator=g)).sum()
loss.backward()
grad = a_maps.grad  # dL/dA_i: (n, B, H, W)
assert torch.equal(grad != 0, routed)
assert (grad[keep == 0] == 0).all()  # a dropped branch gets no gradient
print("share of positions each branch wins:",
      [round(v, 3) for v in winner.float().mean(dim=(0, 2, 3)).tolist()],
      f"; samples with a dropped map: {int((keep == 0).any(dim=1).sum())} of 8")
s = int((keep == 1).all(dim=1).float().argmax())  # a sample that kept both maps
assert (keep[s] == 1).all()
items = [a_maps[s, 0].detach(), a_maps[s, 1].detach(), winner[s, 1].float(),
         grad[s, 0].abs(), grad[s, 1].abs()]
titles = ["A_1", "A_2", "where A_2 wins", "|dL/dA_1|", "|dL/dA_2|"]
fig = viz.show_grid(items, titles=titles, cmap="viridis", size=1.8,
                    suptitle=f"sample {s}: each position sends its gradient "
                             "to one branch")
plt.show()

# %% [markdown]
# The two gradient maps have disjoint supports, and together they cover the grid: the
# gradient of the fused map with respect to $A_i$ is nonzero exactly where branch $i$ is the
# max, as {eq}`eq-max-grad` says. (`amax` would split the gradient evenly between tied
# branches; with sigmoid outputs exact ties do not occur here, as the first assert checks.)
#
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
    reg = lib.make_map_regulariser(name, p1, config.dropblock_size).train()
    torch.manual_seed(3)
    out = reg(base)
    for k in range(4):
        items += [out[k, 0], out[k, 1]]
    labels.append(name)
titles = [f"draw {k + 1}\nLANet {b + 1}" for k in range(4) for b in range(2)]
fig = viz.show_grid(items, ncols=8, cmap="viridis", vmin=0, vmax=float(base.max()),
                    size=1.1, titles=titles,
                    row_labels=labels,
                    suptitle="the same two maps under each regulariser (training mode)")
plt.show()

# %% [markdown]
# The difference that matters for TransFER is in the fused map. Only MAD guarantees that a
# sample always keeps at least one whole, unscaled map, so the max fusion always sees a region a
# LANet chose, while the *other* branch is pushed to find a different one. Spatial Dropout drops
# both maps of a sample with probability $p^2$; Dropout and DropBlock punch holes in every map
# and rescale the rest.

# %%
rows = []
for name in names:
    reg = lib.make_map_regulariser(name, p1, config.dropblock_size).train()
    torch.manual_seed(0)
    out = reg(stack)
    whole_map_zero = (out.flatten(2) == 0).all(dim=2)  # (n, B)
    rows.append(dict(
        regulariser=name,
        zeroed_positions=(out == 0).float().mean().item(),
        samples_with_a_whole_map_dropped=(
            whole_map_zero.any(dim=1).float().mean().item()),
        samples_with_both_maps_dropped=whole_map_zero.all(dim=1).float().mean().item(),
        rescaled=bool((out > stack + 1e-6).any()),
    ))
stats = pd.DataFrame(rows).set_index("regulariser")
display(stats.style.format(precision=3))
assert abs(stats.loc["mad", "samples_with_a_whole_map_dropped"] - p1) < 0.02
assert stats.loc["mad", "samples_with_both_maps_dropped"] == 0
assert not stats.loc["mad", "rescaled"] and stats.loc["dropout", "rescaled"]
assert abs(stats.loc["spatial", "samples_with_both_maps_dropped"] - p1**2) < 0.02

# %% [markdown]
# The paper reports that MAD does better on RAF-DB than Dropout, DropBlock and Spatial Dropout
# put in its place {cite:p}`xue2021transfer`. We have no verified figures for that comparison
# and print none. It is a claim about trained models on RAF-DB, and this chapter trains
# nothing. Chapter 7 runs the comparison (`build_model(..., map_regulariser=...)` switches the
# regulariser) in the active profile; on the synthetic set its numbers say whether the code
# works, not whether the paper's margin holds on real faces.
#
# ## Summary
#
# * A LANet {eq}`eq-lanet` is two 1 x 1 convolutions and a sigmoid; it maps
#   $F \in \mathbb{R}^{C \times H \times W}$ to one map $A_i \in [0, 1]^{H \times W}$. The
#   paper describes conv-ReLU-conv-sigmoid {eq}`eq-lanet-paper`; the BN layers are the authors'
#   code's, and ours.
# * MAD {eq}`eq-mad-mask` zeroes one whole map of a sample with probability $p_1$, never more,
#   and only in training; nothing is rescaled, because the max fusion already covers a dropped
#   map {eq}`eq-mad-expectation`.
# * The fused map $\bar A = \max_i m_i A_i$ weights every channel of $F$
#   {eq}`eq-weighted-features`, and routes the gradient of each position to the one branch that
#   wins it {eq}`eq-max-grad`.
# * The chapter's LANet, MAD mask and fusion equal the library's with the same weights and the
#   same random draws; the library is what the trainer and the CLI use.
#
# ## Exercises
#
# 1. With $p_1 = 0.6$ and $B = 2$, what share of all maps does MAD zero? Check it with
#    `mad.keep_mask(100_000, 2, torch.device("cpu"))`. What is the share for $B = 4$?
# 2. Derive {eq}`eq-mad-expectation` for $B = 3$ and check it numerically: repeat the rescale
#    cell with `B = 3` (`torch.rand(20_000, 3, 14, 14)`).
# 3. In the gradient cell, replace `amax` by `mean(dim=1, keepdim=True)`. What gradient does each
#    branch receive now, and what does that suggest about whether the branches would specialise?
# 4. Run one training-mode backward pass through `LANet` (the cell above, `ours.train()`) and
#    print `ours.conv1.bias.grad.abs().max()` and `ours.conv1.weight.grad.abs().max()`. Explain
#    the difference with the BatchNorm that follows `conv1`.
# 5. Set $p_1 = 0.3$ and rerun the MAD row (`local_mad`) of the committed cpu ablation, three
#    seeds, at the same budget (3 epochs a run; each run takes minutes on two CPU cores):
#
#    ```bash
#    python -c "from transfer_lib.ablate import rerun; print([rerun(
#        'book/results/ablation-cpu.json', 'local_mad', s, f'runs/mad-p03/seed{s}',
#        model_overrides={'mad_p': 0.3})['metrics']['accuracy'] for s in range(3)])"
#    ```
#
#    Compare with the `local_mad` and `local` rows of `book/results/ablation-cpu.md`. Does the
#    difference stand out from the seed-to-seed spread?
# 6. The committed ablation already has MAD replaced by Spatial Dropout on the same maps (row
#    `local_spatial`). Compare it with `local_mad` in `book/results/ablation-cpu.md`, and
#    explain with the regulariser table above why a sample can lose both maps under Spatial
#    Dropout but never under MAD.
