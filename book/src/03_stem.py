# %% [markdown]
# # 3. The stem: IR-50, stages 1-3
#
# TransFER does not look at pixels directly. A convolutional **stem** first turns the
# $S \times S$ face ($S = 112$) into a grid of local descriptors, the feature map
# $F \in \mathbb{R}^{C \times G \times G}$ with $C = 256$ and $G = 14$, and everything
# after it (LANets, the transformer) works on that grid. The stem is IR-50, the "improved
# residual" ResNet-50 of the ArcFace line of face recognition {cite:p}`deng2019arcface`, in the
# implementation of face.evoLVe {cite:p}`faceevolve`. The paper takes IR-50 pretrained on
# MS-Celeb-1M {cite:p}`guo2016msceleb` as its stem CNN {cite:p}`xue2021transfer`. The weights the
# authors start from, `backbone_ir50_ms1m_epoch120.pth`, are face.evoLVe's: its model zoo lists
# the IR-50 as trained for 120 epochs on `MS-Celeb-1M_Align_112x112`, which its data zoo gives as
# 85,742 identities and 5,822,653 aligned 112 x 112 images (the README of
# `ZhaoJ9014/face.evoLVe`, sections "Model Zoo" and "Data Zoo"; its example config reads the
# training set from a folder `faces_emore`, InsightFace's name for its refined MS1M). That is a
# cleaned subset of MS-Celeb-1M, whose first version has about 10 million raw, noisily labelled
# images {cite:p}`guo2016msceleb`.
#
# The authors keep only the first three of its four stages (their config calls it
# `num_layers=44`): 3 + 4 + 14 = 21 residual units. This chapter writes one unit from its
# equation, checks it against the library's `BottleneckIR` with the same weights, then uses the
# library to stack 21 of them, follow a face through the stages and count the parameters.

# %% [setup]

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Markdown
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from transfer_lib import build_model
from transfer_lib.book import viz
from transfer_lib.cli.summary import count_parameters, forward_flops
from transfer_lib.data.synth import render_face
from transfer_lib.data.transforms import eval_transform
from transfer_lib.models import stem as lib
from transfer_lib.models.config import make_config
from transfer_lib.train.profiles import active_profile, find_rafdb
from transfer_lib.weights.convert import load_ir50_stem

viz.use_book_style()
torch.manual_seed(0)
profile = active_profile()
print(viz.describe_setup(profile, find_rafdb()))
config = make_config(size="paper")  # shapes and sizes are cheap: always the paper's
print(f"stem widths {config.stem_widths}, depths {config.stem_depths}, "
      f"input S = {config.input_size}")

# %% [markdown]
# ## One unit: `bottleneck_IR`
#
# A ResNet unit {cite:p}`he2016resnet` adds a learned residual to a shortcut. face.evoLVe's
# `bottleneck_IR`, the unit TransFER's stem is made of, puts a BatchNorm *before* the first
# convolution, a per-channel PReLU between the two 3 x 3 convolutions, a BatchNorm after the
# second, and the stride $s$ on the *second* convolution. With $X$ a map of
# $C_{\text{in}}$ channels and $C_{\text{out}}$ the unit's width:
#
# $$
# \mathrm{IR}(X) = \mathrm{BN}_2\Big(\mathrm{conv}^{3\times3}_{s}\big(
#   \mathrm{PReLU}(\mathrm{conv}^{3\times3}_{1}(\mathrm{BN}_1(X)))\big)\Big)
#   + \mathrm{sc}_s(X),
# \qquad \mathrm{PReLU} = \max(0, \cdot) + \alpha \min(0, \cdot)
# $$ (eq-ir-unit)
#
# where $\mathrm{conv}^{3\times3}_{s}$ is a 3 x 3 convolution with stride $s$, padding 1 and no
# bias ($\mathrm{conv}^{1\times1}_{s}$ a 1 x 1 one, without padding), and $\alpha$ is PReLU's
# learned slope, one per channel. The shortcut is
#
# $$
# \mathrm{sc}_s(X) =
# \begin{cases}
#   \mathrm{maxpool}^{1\times1}_{s}(X) = X[:, ::s, ::s] & C_{\text{in}} = C_{\text{out}},\\
#   \mathrm{BN}_3\big(\mathrm{conv}^{1\times1}_{s}(X)\big) & \text{otherwise,}
# \end{cases}
# $$ (eq-ir-shortcut)
#
# a 1 x 1 max-pool with stride $s$ being nothing but keeping every $s$-th row and column. Both
# branches map a $G \times G$ grid to a $G' \times G'$ one,
#
# $$
# G' = \left\lfloor \frac{G - 1}{s} \right\rfloor + 1 .
# $$ (eq-ir-shape)
#
# Here is {eq}`eq-ir-unit` and {eq}`eq-ir-shortcut`, line by line:

# %%
class IRUnit(nn.Module):
    """face.evoLVe's bottleneck_IR written from (eq-ir-unit) and (eq-ir-shortcut)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=1, padding=1, bias=False)
        self.prelu = nn.PReLU(c_out)  # one slope a_c per channel
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.identity = c_in == c_out
        if not self.identity:
            self.sc_conv = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            self.sc_bn = nn.BatchNorm2d(c_out)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x[:, :, :: self.stride, :: self.stride]  # = MaxPool2d(1, stride)
        return self.sc_bn(self.sc_conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (n, C_in, G, G) -> (n, C_out, G', G')
        residual = self.bn2(self.conv2(self.prelu(self.conv1(self.bn1(x)))))
        return residual + self.shortcut(x)


# %% [markdown]
# The library's `BottleneckIR` keeps face.evoLVe's module names (`res_layer.0..4`,
# `shortcut_layer.0..1`) so that the MS-Celeb-1M checkpoint loads without renaming. Loading its
# weights into our unit is an explicit list of names, in the manner of nanoGPT's
# `from_pretrained`: every library key must be used once, and every key of ours filled.

# %%
TO_OURS = {"res_layer.0": "bn1", "res_layer.1": "conv1", "res_layer.2": "prelu",
           "res_layer.3": "conv2", "res_layer.4": "bn2",
           "shortcut_layer.0": "sc_conv", "shortcut_layer.1": "sc_bn"}


def load_from_library(ours: IRUnit, theirs: lib.BottleneckIR) -> IRUnit:
    """Copy every tensor of the library's unit into ours; fail on any unmatched key."""
    state = {}
    for key, value in theirs.state_dict().items():
        module, name = key.rsplit(".", 1)
        state[f"{TO_OURS[module]}.{name}"] = value
    ours.load_state_dict(state, strict=True)  # raises on a missing or unexpected key
    return ours


g = torch.Generator().manual_seed(0)
cases = [(64, 64, 2), (64, 128, 2), (128, 128, 1)]  # identity-strided, conv, identity
for c_in, c_out, s in cases:
    theirs = lib.BottleneckIR(c_in, c_out, s)
    viz.randomise_batchnorm(theirs, g)  # a fresh BN is the identity in eval mode: a weak check
    ours = load_from_library(IRUnit(c_in, c_out, s), theirs)
    x = torch.randn(4, c_in, 28, 28, generator=g)
    for mode in ("eval", "train"):  # running statistics, then batch statistics
        theirs.train(mode == "train")
        ours.train(mode == "train")
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x))
    assert ours(x).shape[-1] == (28 - 1) // s + 1  # (eq-ir-shape)
print(f"IRUnit == lib.BottleneckIR (same weights, eval and train mode) for "
      f"(c_in, c_out, s) in {cases}")
x = torch.randn(1, 8, 7, 7, generator=g)
assert torch.equal(nn.MaxPool2d(1, 2)(x), x[:, :, ::2, ::2])  # it subsamples

# %% [markdown]
# Our unit and the library's give the same outputs, in evaluation mode (BatchNorm's running
# statistics) and in training mode (the batch's statistics), for both kinds of shortcut. Two
# BatchNorms sit in the residual branch and none between the first convolution and the PReLU:
# that is face.evoLVe's `bottleneck_IR`, whose weights we load. From here on the chapter uses
# the library's `BottleneckIR`:

# %%
unit = lib.BottleneckIR(64, 128, stride=2)
print(unit)
x = torch.randn(2, 64, 56, 56)
y = unit(x)
print(f"{tuple(x.shape)} -> {tuple(y.shape)}")
assert y.shape == (2, 128, 28, 28)  # width 64 -> 128, stride 2 halves the grid
assert isinstance(lib.BottleneckIR(128, 128, 1).shortcut_layer, torch.nn.MaxPool2d)
assert sum(isinstance(m, nn.BatchNorm2d) for m in unit.res_layer) == 2

# %% [markdown]
# Counting the weights of {eq}`eq-ir-unit` and {eq}`eq-ir-shortcut` (a BatchNorm has a scale and
# a shift per channel, PReLU one slope per channel, the convolutions no bias):
#
# $$
# \mathrm{params}(C_{\text{in}}, C_{\text{out}}) = 2C_{\text{in}} + 9C_{\text{in}}C_{\text{out}}
#   + C_{\text{out}} + 9C_{\text{out}}^2 + 2C_{\text{out}}
#   + [C_{\text{in}} \ne C_{\text{out}}]\,(C_{\text{in}}C_{\text{out}} + 2C_{\text{out}}) .
# $$ (eq-ir-params)

# %%
def unit_parameters(c_in: int, c_out: int) -> int:
    """(eq-ir-params)."""
    p = 2 * c_in + 9 * c_in * c_out + c_out + 9 * c_out**2 + 2 * c_out
    return p + (c_in * c_out + 2 * c_out if c_in != c_out else 0)


for c_in, c_out, s in cases:
    library_unit = lib.BottleneckIR(c_in, c_out, s)
    assert unit_parameters(c_in, c_out) == count_parameters(library_unit)
print(f"a 256 -> 256 unit: {unit_parameters(256, 256):,} parameters by (eq-ir-params)")

# %% [markdown]
# ## 21 units in three stages
#
# `unit_specs` lists every unit as (in channels, out channels, stride); the first unit of a
# stage halves the resolution. Stage 4 of IR-50 (3 units of width 512, 7 x 7) is left out:
# TransFER keeps a 14 x 14 grid, 196 positions for the LANets to choose local regions among
# (exercise 3 asks whether 7 x 7 would do). The `parameters` column is
# {eq}`eq-ir-params`.

# %%
specs = lib.unit_specs(config.stem_widths, config.stem_depths, config.stem_widths[0])
stage_of = [s for s, n in enumerate(config.stem_depths, start=1) for _ in range(n)]
table = pd.DataFrame(
    [dict(stage=st, in_channels=i, out_channels=d, stride=s,
          shortcut="conv 1x1" if i != d else "max-pool 1x1",
          parameters=count_parameters(lib.BottleneckIR(i, d, s)))
     for st, (i, d, s) in zip(stage_of, specs)])
table.index.name = "unit"
display(table.style.format({"parameters": "{:,}"}))
assert len(specs) == 21 == sum(config.stem_depths)
assert [i for i, (_, _, s) in enumerate(specs) if s == 2] == [0, 3, 7]  # one per stage
assert table.query("shortcut == 'conv 1x1'").index.tolist() == [3, 7]
assert (table.parameters == [unit_parameters(i, d) for i, d, _ in specs]).all()

# %% [markdown]
# Unit 0 keeps the width (64 -> 64), so its shortcut is the identity, subsampled by a 1 x 1
# max-pool; units 3 and 7 change the width and need a strided 1 x 1 convolution. In face.evoLVe's
# full IR-50 the third conv shortcut sits at unit 21, the first unit of stage 4, which TransFER
# leaves out. Keeping face.evoLVe's layout and names is what lets its weights load unchanged.

# %% [markdown]
# ## Following a face through the stem
#
# Forward hooks record the output shape of the input layer (conv 3 x 3, BN, PReLU, no stride)
# and of the last unit of each stage; {eq}`eq-ir-shape` halves the grid three times,
# $112 \to 56 \to 28 \to 14$.

# %%
stem = lib.IR50Stem(config.stem_widths, config.stem_depths).eval()
face = Image.fromarray(render_face("Surprise", seed=7))  # a synthetic face, 100 x 100
x = eval_transform(config)(face)[None]  # (1, 3, S, S), ImageNet-normalised
ends = torch.tensor(config.stem_depths).cumsum(0)
last_units = [int(e) - 1 for e in ends]  # the last unit of each stage
assert last_units == [2, 6, 20]
watch = {"input_layer": stem.input_layer} | {
    f"stage {k + 1} (unit {u})": stem.body[u] for k, u in enumerate(last_units)}
shapes = viz.record_shapes(stem, x, watch)
display(pd.DataFrame(shapes, columns=["module", "output shape"]).set_index("module"))
assert shapes[-1][1] == (1, config.stem_channels, 14, 14)  # F: C x H x W

# %% [markdown]
# ## Size and cost
#
# The cell below counts the stem's parameters and its forward FLOPs for one $112 \times 112$
# face, counting a multiply-add as 2 FLOPs (PyTorch's `FlopCounterMode`; tables that count
# multiply-adds, as fvcore and thop do, give half these numbers), and counts the whole of
# TransFER the same way to give the stem's share (chapter 6 compares the conventions).

# %%
with torch.no_grad(), FlopCounterMode(display=False) as counter:
    stem(x)
params, flops = count_parameters(stem), counter.get_total_flops()
whole = build_model("transfer", size="paper").eval()
whole_params, whole_flops = count_parameters(whole), forward_flops(whole)
del whole
print(f"stem parameters: {params / 1e6:.1f} M ({params / whole_params:.0%} of TransFER's "
      f"{whole_params / 1e6:.1f} M); forward: {flops / 1e9:.1f} GFLOPs = "
      f"{flops / 2e9:.1f} G multiply-adds per image ({flops / whole_flops:.0%} of "
      f"TransFER's {whole_flops / 1e9:.1f} GFLOPs)")
assert round(params / 1e6, 1) == 17.6

# %% [markdown]
# ## Pretrained on MS-Celeb-1M
#
# The authors start from face.evoLVe's `backbone_ir50_ms1m_epoch120.pth`. Because our stem keeps
# face.evoLVe's module names, `transfer_lib.weights.convert.load_ir50_stem` maps every key to itself
# and reports what it leaves out on purpose: stage 4 (`body.21-23`) and the recognition head
# (`output_layer`). Put the file in `weights/` (or point `TRANSFER_IR50` at it) to load it here;
# without it the stem keeps its random initialisation.

# %%
ir50_path = viz.find_weights("backbone_ir50_ms1m_epoch120.pth", "TRANSFER_IR50")
if ir50_path is None:
    print("backbone_ir50_ms1m_epoch120.pth not found: "
          "the stem below is randomly initialised")
    pretrained = False
else:
    report = load_ir50_stem(stem, ir50_path)
    stem.eval()
    pretrained = True
    assert any(k.startswith("body.21") for k in report.skipped)

# %% [markdown]
# ## What the stem sees
#
# Each stage's output is a stack of feature maps; the pictures show the first eight channels of
# each (brighter = larger activation), for the synthetic face on the left. With random weights
# the maps are filters of chance; with the MS-Celeb-1M weights (when the file above is found),
# look for channels that respond to the eyes, brows, nose and mouth, the parts the next
# chapter's LANets choose between.

# %% tags=["hide-input"]
features = {}
hooks = [stem.body[u].register_forward_hook(
    lambda m, i, o, k=k: features.__setitem__(k, o[0]))
    for k, u in enumerate(last_units)]
with torch.no_grad():
    out = stem(x)
for h in hooks:
    h.remove()
items, labels = [viz.to_image(x[0], config.mean, config.std)] + [None] * 7, ["input"]
for k, fmap in features.items():
    items += [fmap[c] for c in range(8)]
    labels.append(f"stage {k + 1}\n{fmap.shape[0]}x{fmap.shape[1]}x{fmap.shape[2]}")
items = [item if item is not None else torch.zeros(2, 2) for item in items]
weights = "MS-Celeb-1M weights" if pretrained else "random weights"
fig = viz.show_grid(items, ncols=8, cmap="magma", size=1.1, row_labels=labels,
                    suptitle=f"first 8 channels per stage ({weights}); "
                             "input: a synthetic face")
for ax in fig.axes[1:8]:
    ax.set_visible(False)
plt.show()
assert out.shape == (1, 256, 14, 14) and torch.isfinite(out).all()

# %% [markdown]
# The stem's output $F$, $C = 256$ channels on a $G \times G = 14 \times 14$ grid, is what the
# rest of TransFER works with: 196 positions, each a 256-dimensional description of a patch of
# $S / G = 8$ by 8 input pixels (with a much larger receptive field). Chapter 4 weighs these
# positions with attention maps.
#
# ## Summary

# %% tags=["hide-input"]
display(Markdown(f"""
* The stem is face.evoLVe's IR-50, stages 1-3: an input layer and {len(specs)} `bottleneck_IR`
  units {{eq}}`eq-ir-unit`, turning a {config.input_size} x {config.input_size} face into
  $F$ of shape {" x ".join(map(str, out.shape[1:]))}.
* A unit is BN, conv 3 x 3, PReLU, conv 3 x 3 with the stride, BN, plus a shortcut that is a
  strided subsampling when the width is kept and a 1 x 1 convolution with BN when it changes
  {{eq}}`eq-ir-shortcut`.
* Written from its equation, the unit gave the same outputs as the library's `BottleneckIR`
  with the same weights, in both BatchNorm modes, for the {len(cases)} kinds of unit checked;
  the library keeps face.evoLVe's names, so the MS-Celeb-1M weights load unchanged.
* The stem holds {params / 1e6:.1f} M of TransFER's {whole_params / 1e6:.1f} M parameters and,
  counted in FLOPs (2 per multiply-add), {flops / 1e9:.1f} of its {whole_flops / 1e9:.1f}
  GFLOPs ({flops / whole_flops:.0%}).
"""))

# %% [markdown]
#
# ## Exercises
#
# 1. Compute by hand with {eq}`eq-ir-params` the parameters of unit 7 (128 -> 256, stride 2) and
#    check the table. Which term dominates, and why does the stage-3 width dominate the stem's
#    17.6 M?
# 2. Use {eq}`eq-ir-shape` to predict the stem's output grid for a $48 \times 48$ input (the
#    `cpu` profile's $S$) and check it:
#    `lib.IR50Stem()(torch.randn(1, 3, 48, 48)).shape`. How many tokens $N = G^2$ would the
#    transformer then see?
# 3. Put stage 4 back: `lib.IR50Stem((64, 128, 256, 512), (3, 4, 14, 3))`. Check the output
#    shape, the parameter count and, with `FlopCounterMode`, how many FLOPs stage 4 adds. Why
#    might a 7 x 7 grid be too coarse for LANets to choose local regions?
# 4. Change `IRUnit` to put a BatchNorm between `conv1` and the PReLU (the order
#    BN-Conv-BN-PReLU-Conv-BN). Which line of `load_from_library` now fails, and why is that
#    failure (rather than a silent partial load) what you want when loading a checkpoint?
# 5. A small experiment: in training mode BatchNorm updates its running statistics. Run
#    `ours.train(); theirs.train()` and one forward pass of the same batch through both, then
#    compare `ours.bn1.running_mean` with `theirs.res_layer[0].running_mean`. Are they still
#    equal after 10 passes of different batches?
