# %% [markdown]
# # 4. The local CNN: LANets and Multi-Attention Dropping
#
# An expression lives in a few places of the face at once: the brows, the eyes, the mouth. The
# paper's **local CNN** finds such places with several small attention networks, and drops one
# of them now and then so that, the paper argues, they do not all find the same one (chapter 8
# measures whether they do). In the words of its abstract:
#
# > "To address this issue, the MAD is proposed to randomly drop an attention map.
# > Consequently, models are pushed to explore diverse local patches adaptively."
# > {cite:p}`xue2021transfer` (abstract)
#
# Three pieces act on the stem's feature map $F \in \mathbb{R}^{C \times G \times G}$
# ($256 \times 14 \times 14$): $B = 2$ **LANets** each turn $F$ into an attention map
# $A_i \in [0, 1]^{G \times G}$; **MAD** sets one of a sample's $B$ maps to zero now and then
# during training; an element-wise **max** fuses what is left into one map $\bar A$ that
# weights the features. This chapter writes each piece from its equation, checks it against
# the library (same weights, same random draws, same outputs), then uses the library.

# %% [setup]

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as nnf
from IPython.display import Markdown
from PIL import Image
from torch import nn

from transfer_lib.book import viz
from transfer_lib.book.attention import load_attention
from transfer_lib.cli.summary import count_parameters
from transfer_lib.data.synth import render_face
from transfer_lib.data.transforms import eval_transform
from transfer_lib.models import local_cnn as lib
from transfer_lib.models.config import MAP_REGULARISERS, make_config
from transfer_lib.models.stem import IR50Stem
from transfer_lib.train.profiles import active_profile, find_rafdb

viz.use_book_style()
torch.manual_seed(0)
profile = active_profile()
print(viz.describe_setup(profile, find_rafdb()))
config = make_config(size="paper")
C, B, r, p1 = config.stem_channels, config.num_branches, config.lanet_reduction, config.mad_p
print(f"C = {C} channels, B = {B} LANets, reduction r = {r}, MAD p1 = {p1}")

# %% [markdown]
# ## A LANet
#
# The paper describes a LANet as two 1 x 1 convolutions with a ReLU between them and a sigmoid
# at the end. A 1 x 1 convolution is the same matrix applied at every position of the grid, so
# the paper's LANet $i$ reads, at the position in row $u$ and column $v$,
#
# $$
# A_i[u, v] = \sigma\big(W_{i,2} \,\mathrm{ReLU}(W_{i,1} F[:, u, v])\big),
# \qquad W_{i,1} \in \mathbb{R}^{(C/r) \times C},\; W_{i,2} \in \mathbb{R}^{1 \times (C/r)} .
# $$ (eq-lanet-paper)
#
# The authors' code (`LANet` in `la_max.py`, in both the Paddle and the PyTorch folder of
# `youqingxiaozhua/APViT`) and the library add a BatchNorm after each convolution, and give the
# convolutions biases $b_{i,1}, b_{i,2}$. **These BN layers are not in the paper's
# description**; we follow the code, since the released weights contain them:
#
# $$
# A_i[u, v] = \sigma\Big(\mathrm{BN}_{i,2}\big(W_{i,2}\, \mathrm{ReLU}\big(
#   \mathrm{BN}_{i,1}(W_{i,1} F[:, u, v] + b_{i,1})\big) + b_{i,2}\big)\Big) .
# $$ (eq-lanet)
#
# With $C = 256$ and $r = 16$ the hidden width is $C/r = 16$. A LANet is tiny: it chooses
# *where*, the stem has already said *what*. Here is {eq}`eq-lanet`, written out:

# %%
class LANet(nn.Module):
    """(eq-lanet): (n, C, G, G) -> one attention map (n, 1, G, G) in (0, 1)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = channels // reduction
        self.conv1 = nn.Conv2d(channels, hidden, 1)  # W_{i,1}, b_{i,1}
        self.bn1 = nn.BatchNorm2d(hidden)  # not in the paper's description
        self.conv2 = nn.Conv2d(hidden, 1, 1)  # W_{i,2}, b_{i,2}
        self.bn2 = nn.BatchNorm2d(1)  # not in the paper's description

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.bn1(self.conv1(f)))  # (n, C/r, G, G)
        return torch.sigmoid(self.bn2(self.conv2(hidden)))  # (n, 1, G, G)


g = torch.Generator().manual_seed(0)
theirs = lib.LANet(C, r)
viz.randomise_batchnorm(theirs, g)  # fresh BN is the identity in eval mode: a weak check
ours = LANet(C, r)
ours.load_state_dict(theirs.state_dict(), strict=True)  # same names: conv1, bn1, ...
feats = torch.randn(4, C, 14, 14, generator=g)  # (n, C, G, G): a batch of stem outputs
for mode in (False, True):  # eval (running statistics), then train (batch statistics)
    ours.train(mode)
    theirs.train(mode)
    with torch.no_grad():
        torch.testing.assert_close(ours(feats), theirs(feats))
a = ours.eval()(feats).detach()
print(f"LANet == lib.LANet (same weights, eval and train mode); {tuple(feats.shape)} -> "
      f"{tuple(a.shape)}, {count_parameters(ours):,} parameters")
assert a.shape == (4, 1, 14, 14) and (a > 0).all() and (a < 1).all()

# %% [markdown]
# The BN layers make the convolutions' biases redundant: in training, BatchNorm subtracts the
# batch mean, so a constant added before it cancels and its gradient is zero in exact
# arithmetic (exercise 4 prints what a backward pass returns for it). The library keeps the
# biases because the authors' checkpoint has them.
#
# ## B maps, MAD and the max
#
# In training, MAD draws for each sample of the batch whether to drop a map, the coin
# $\delta$, and which one, $i^\star$; the keep-mask of branch $i$ is then
#
# $$
# \delta \sim \mathrm{Bernoulli}(p_1), \qquad i^\star \sim \mathrm{Uniform}\{1, \dots, B\},
# \qquad m_i = 1 - \delta\,[i = i^\star] ,
# $$ (eq-mad-mask)
#
# so a sample loses one map with probability $p_1$ and never more than one. At evaluation
# $m_i = 1$. The kept maps are fused by an element-wise max, and the fused map weights every
# channel of the feature map:
#
# $$
# \bar A[u, v] = \max_{i = 1..B}\; m_i A_i[u, v] ,
# $$ (eq-max-fusion)
#
# $$
# \tilde F[:, u, v] = \bar A[u, v]\, F[:, u, v] \quad \text{at every position},
# \qquad \tilde F = F \odot \bar A .
# $$ (eq-weighted-features)
#
# The authors' code calls $\bar A$ `M_out`. The library's `MultiAttentionDropping` draws
# $\delta$ for the whole batch with `torch.rand`, then $i^\star$ with `torch.randint`, from
# PyTorch's global generator; drawing in the same order from the same seed gives the same masks:

# %%
def mad_keep_mask(n: int, branches: int, p: float) -> torch.Tensor:
    """(eq-mad-mask) for a batch: (n, B) ones, one zero in each sample that drops."""
    delta = (torch.rand(n) < p).float()  # (n,): does the sample drop a map?
    dropped = torch.randint(branches, (n,))  # (n,): i*, which one
    return 1.0 - nnf.one_hot(dropped, branches).float() * delta[:, None]  # (n, B)


def local_cnn(f: torch.Tensor, lanets: nn.ModuleList, p: float, training: bool):
    """(eq-lanet) per branch, (eq-mad-mask), (eq-max-fusion), (eq-weighted-features): f (n, C,
    G, G) -> weighted features (n, C, G, G), maps m_i A_i (n, B, G, G), fused map (n, 1, G, G)."""
    maps = torch.cat([lanet(f) for lanet in lanets], dim=1)  # (n, B, G, G)
    if training:
        maps = maps * mad_keep_mask(len(f), len(lanets), p)[:, :, None, None]
    fused = maps.amax(dim=1, keepdim=True)  # (n, 1, G, G)
    return f * fused, maps, fused  # fused broadcasts over the C channels


mad = lib.MultiAttentionDropping(p=p1).train()
for seed in range(5):
    torch.manual_seed(seed)
    ours_mask = mad_keep_mask(64, B, p1)
    torch.manual_seed(seed)
    assert torch.equal(ours_mask, mad.keep_mask(64, B, torch.device("cpu")))
library = lib.LocalCNN(C, B, r, "mad", p1)
lanets = nn.ModuleList(LANet(C, r) for _ in range(B))
for lanet in library.lanets:
    viz.randomise_batchnorm(lanet, g)
lanets.load_state_dict(library.lanets.state_dict(), strict=True)
for training in (True, False):
    library.train(training)
    lanets.train(training)
    with torch.no_grad():
        torch.manual_seed(7)
        expected = library(feats)
        torch.manual_seed(7)
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
    f = stem(x)  # F: (1, C, G, G)
    weighted, maps, fused = local(f)
print("features", tuple(f.shape), "-> maps", tuple(maps.shape), "-> fused",
      tuple(fused.shape), "-> weighted features", tuple(weighted.shape))
img = viz.to_image(x[0], config.mean, config.std)
viz.show_grid([img, maps[0, 0], maps[0, 1], fused[0, 0], viz.overlay(img, fused[0, 0])],
              ["synthetic face", "LANet 1", "LANet 2", "max (M_out)", "M_out on the face"],
              cmap="viridis", size=1.8, suptitle="random weights: the maps mark nothing yet")
plt.show()
assert torch.equal(fused, maps.amax(dim=1, keepdim=True))
assert torch.allclose(weighted, f * fused)

# %% [markdown]
# Why max and not mean? With a max, a region that *any* branch finds important keeps its full
# weight; a mean of two maps gives a region that only one branch marks half its weight. Whether
# a mean would also let the branches blur into one average map is a hypothesis this book does
# not test (exercise 3 looks at the gradients that suggest it); training `local` with a mean
# fusion and measuring the overlap of its two maps as chapter 8 does would test it.
#
# ## The mask, in numbers
#
# Here is MAD's mask for eight samples, with $p_1 = 0.6$:

# %%
torch.manual_seed(1)
mask = mad.keep_mask(8, B, torch.device("cpu"))  # (n, B)
viz.plot_mask(mask.T, title=f"MAD keep-mask, p1 = {p1} (dark = map dropped)", xlabel="sample",
              ylabel="LANet", ax=plt.subplots(figsize=(4, 1.6))[1],
              xticks=range(8)).set_yticks([0, 1], ["1", "2"])
plt.show()
assert ((mask == 0).sum(dim=1) <= 1).all()  # at most one map per sample

# %% [markdown]
# By {eq}`eq-mad-mask`, a sample loses a map with probability $p_1$, never more than one, and
# each branch is the one dropped with probability $p_1 / B$. A large batch checks it:

# %%
mask = mad.keep_mask(200_000, B, torch.device("cpu"))
dropped = (mask == 0).sum(dim=1)  # maps dropped per sample
share = (dropped > 0).float().mean().item()
per_branch = (mask == 0).float().mean(dim=0)
print(f"samples with a dropped map: {share:.3f} (p1 = {p1}); per branch: "
      f"{[round(v, 3) for v in per_branch.tolist()]} (p1 / B = {p1 / B})")
assert abs(share - p1) < 0.01
assert dropped.max() == 1
assert torch.allclose(per_branch, torch.full_like(per_branch, p1 / B), atol=0.01)
assert torch.equal(mad.eval()(maps), maps)  # evaluation: nothing dropped
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
# \mathbb{E}\big[\bar A[u, v]\big] = A_{(1)} - \frac{p_1}{B}\,\big(A_{(1)} - A_{(2)}\big),
# $$ (eq-mad-expectation)
#
# which is the evaluation value $A_{(1)}$ wherever the branches agree, and lower by at most
# $p_1 / B$ of the gap where they do not. A dropout-style rescale of the kept maps by
# $1 / (1 - p_1 / B)$ would instead raise the fused map *everywhere* a sample keeps its
# winner, and push it out of $[0, 1]$. Measured on independent random maps in $(0.05, 0.95)$:

# %%
stack = torch.rand(20_000, B, 14, 14) * 0.9 + 0.05  # maps in (0, 1), like a LANet's
top2 = stack.topk(2, dim=1).values  # A_(1), A_(2)
predicted = top2[:, 0] - p1 / B * (top2[:, 0] - top2[:, 1])  # (eq-mad-expectation)
torch.manual_seed(0)
keep = mad.keep_mask(len(stack), B, torch.device("cpu"))[:, :, None, None]
fused_by = {"evaluation (no drop)": stack.amax(dim=1),  # every m_i = 1
            "MAD, training": (stack * keep).amax(dim=1),
            "MAD rescaled by 1/(1 - p1/B)": (stack * keep / (1 - p1 / B)).amax(dim=1)}
rescale = pd.DataFrame({"mean fused map": {k: v.mean().item() for k, v in fused_by.items()},
                        "share of positions > 1": {k: (v > 1).float().mean().item()
                                                   for k, v in fused_by.items()}})
display(rescale.style.format(precision=3))
gap_mad, gap_rescaled = rescale.iloc[1:, 0] - rescale.iloc[0, 0]
print(f"(eq-mad-expectation) predicts a training mean of {predicted.mean().item():.3f}; "
      f"training minus evaluation mean: MAD {gap_mad:+.3f}, rescaled {gap_rescaled:+.3f}")
assert abs(gap_mad) < abs(gap_rescaled)
assert abs(rescale.iloc[1, 0] - predicted.mean().item()) < 0.005
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
# \frac{\partial \bar A[u, v]}{\partial A_i[u, v]} =
# \begin{cases}
#   m_i & \text{if } i = \arg\max_{i'} m_{i'} A_{i'}[u, v],\\
#   0 & \text{otherwise.}
# \end{cases}
# $$ (eq-max-grad)
#
# At each position exactly one branch, the winner, receives the gradient of the loss; the
# others are treated there as if a stop-gradient had been put on them, and a dropped branch
# ($m_i = 0$) receives nothing at all for that sample. The paper relates the max to this
# stop-gradient behaviour: a branch is trained only on the positions it wins, which, it argues,
# leaves the other positions to the other branches. Numerically, with the library's LANets in
# training mode, first for $\bar A$ itself, then for a random linear loss $\mathcal{L}$ on
# $\tilde F$:

# %%
local_train = lib.LocalCNN(C, B, r, "mad", p1).train()
f_batch = torch.randn(8, C, 14, 14, generator=g)
a_maps = torch.cat([la(f_batch) for la in local_train.lanets], dim=1)  # A_i: (n, B, G, G)
torch.manual_seed(3)
keep = local_train.regulariser.keep_mask(8, B, torch.device("cpu"))  # m_i: (n, B)
kept = a_maps * keep[:, :, None, None]
fused_map = kept.amax(dim=1, keepdim=True)  # (eq-max-fusion)
winner = kept == fused_map  # (n, B, G, G): the branch that wins each position
assert (winner.sum(dim=1) == 1).all()  # no ties: one winner per position
routed = winner & (keep[:, :, None, None] == 1)  # where dA_bar/dA_i = m_i = 1
(d_fused,) = torch.autograd.grad(fused_map.sum(), a_maps, retain_graph=True)
assert torch.equal(d_fused, routed.float())  # (eq-max-grad): 1 or 0 at every position
loss = (f_batch * fused_map * torch.randn(f_batch.shape, generator=g)).sum()  # linear in F~
(grad,) = torch.autograd.grad(loss, a_maps)  # dL/dA_i: (n, B, G, G)
assert torch.equal(grad != 0, routed)  # the loss reaches A_i only where branch i wins
assert (grad[keep == 0] == 0).all()  # a dropped branch gets no gradient
k = int((keep == 1).all(dim=1).float().argmax())  # a sample that kept both maps
viz.show_grid([a_maps[k, 0].detach(), a_maps[k, 1].detach(), winner[k, 1].float(),
               grad[k, 0].abs(), grad[k, 1].abs()],
              ["A_1", "A_2", "where A_2 wins", "|dL/dA_1|", "|dL/dA_2|"], cmap="viridis",
              size=1.8, suptitle=f"sample {k}: each position sends its gradient to one branch")
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
names = [n for n in MAP_REGULARISERS if n != "none"]
regularisers = {n: lib.make_map_regulariser(n, p1, config.dropblock_size) for n in names}
viz.show_regularisers(maps[0], regularisers,
                      suptitle="the same two maps under each regulariser (training mode)")
plt.show()

# %% [markdown]
# The difference that matters for TransFER is in the fused map. Only MAD guarantees that a
# sample always keeps at least one whole, unscaled map, so the max fusion always sees a region a
# LANet chose. Spatial Dropout drops both maps of a sample with probability $p^2$; Dropout and
# DropBlock punch holes in every map and rescale the rest. On the maps of the rescale cell:

# %%
rows = []
for name, reg in regularisers.items():
    torch.manual_seed(0)
    out = reg.train()(stack)
    whole_map_zero = (out.flatten(2) == 0).all(dim=2)  # (n, B)
    rows.append(dict(regulariser=name, zeroed_positions=(out == 0).float().mean().item(),
                     samples_with_a_whole_map_dropped=whole_map_zero.any(1).float().mean().item(),
                     samples_with_both_maps_dropped=whole_map_zero.all(1).float().mean().item(),
                     rescaled=bool((out > stack + 1e-6).any())))
stats = pd.DataFrame(rows).set_index("regulariser")
display(stats.style.format(precision=3))
assert abs(stats.loc["mad", "samples_with_a_whole_map_dropped"] - p1) < 0.02
assert stats.loc["mad", "samples_with_both_maps_dropped"] == 0
assert not stats.loc["mad", "rescaled"] and stats.loc["dropout", "rescaled"]
assert abs(stats.loc["spatial", "samples_with_both_maps_dropped"] - p1**2) < 0.02

# %% [markdown]
# The paper's argument goes further: with one map dropped, the *other* branch is pushed to find
# a different region. That is a claim about trained maps, and chapter 8 tests it on the
# committed ablation's runs (3 epochs each, synthetic faces), by how much the top regions of the
# two maps overlap with and without MAD, paired seed by seed:

# %%
study = load_attention(viz.project_root() / "book" / "results" / "attention-cpu")
step = next(c for c in study["comparisons"] if c["to"] == "local_mad")["differences"]["overlap"]
mad_step = (f"{step['mean']:+.3f} (95 % interval [{step['low']:+.3f}, {step['high']:+.3f}], "
            f"{step['n']} seeds)")
print(f"local -> local_mad, overlap of the two maps' top regions: {mad_step}")

# %% [markdown]
# The paper reports that MAD does better on RAF-DB than Dropout, DropBlock and Spatial Dropout
# put in its place {cite:p}`xue2021transfer`. The book has no verified figures for that
# comparison and prints none. It is a claim about trained models on RAF-DB, and this chapter trains
# nothing. Chapter 7 runs the comparison (`build_model(..., map_regulariser=...)` switches the
# regulariser) in the active profile; on the synthetic set its numbers say whether the code
# works, not whether the paper's margin holds on real faces.
#
# ## Summary

# %% tags=["hide-input"]
display(Markdown(f"""
* A LANet {{eq}}`eq-lanet` (the BN layers are the authors' code's, not the paper's
  {{eq}}`eq-lanet-paper`) has {count_parameters(ours):,} parameters at $C = {C}$, $r = {r}$.
* MAD {{eq}}`eq-mad-mask` zeroed one whole map in {share:.1%} of {len(dropped):,} samples
  ($p_1 = {p1}$), never two, and nothing at evaluation. It rescales nothing: it moved the fused
  map's mean by {gap_mad:+.3f} from evaluation, as {{eq}}`eq-mad-expectation` predicts; a
  dropout-style rescale moved it by {gap_rescaled:+.3f} and {rescale.iloc[2, 1]:.0%} above 1.
* The max {{eq}}`eq-max-fusion` sent each position's gradient to the one branch that wins it
  {{eq}}`eq-max-grad`, none to a dropped branch. LANet, MAD and fusion, written out, gave the
  library's outputs.
* Spatial Dropout dropped both maps of {stats.loc["spatial", "samples_with_both_maps_dropped"]:.1%}
  of the samples ($p^2 = {p1 ** 2:.2f}$), MAD none. On the committed 3-epoch runs of chapter 8,
  adding MAD changed the overlap of the two maps' top regions by {mad_step}.
"""))

# %% [markdown]
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
#    seeds, at the same budget (3 epochs a run; the provenance line of
#    `book/results/ablation-cpu.md` gives the CPU and the time its runs took):
#
#    ```bash
#    python -c "from transfer_lib.book.ablate import rerun; print([rerun(
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
