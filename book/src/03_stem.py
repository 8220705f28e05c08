# %% [markdown]
# # 3. The stem: IR-50, stages 1-3
#
# TransFER does not look at pixels directly. A convolutional **stem** first turns the
# 112 x 112 face into a grid of local descriptors, and everything after it (LANets, the
# transformer) works on that grid. The stem is IR-50, the "improved residual" ResNet-50 that
# ArcFace {cite:p}`deng2019arcface` made the standard backbone of face recognition, in the
# implementation of face.evoLVe {cite:p}`faceevolve`, pretrained on the 10 million faces of
# MS-Celeb-1M {cite:p}`guo2016msceleb`.
#
# > "we use the IR-50 pretrained on MS-Celeb-1M as the stem CNN" {cite:p}`xue2021transfer`
#
# The authors keep only the first three of its four stages (their config calls it
# `num_layers=44`): 3 + 4 + 14 = 21 residual units. This chapter builds one unit, stacks them,
# follows a face through the stages and counts the parameters.

# %% [setup]

# %%
import matplotlib.pyplot as plt
import pandas as pd
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from transfer_lib import viz
from transfer_lib.data.synth import render_face
from transfer_lib.data.transforms import eval_transform
from transfer_lib.models.config import make_config
from transfer_lib.models.stem import BottleneckIR, IR50Stem, unit_specs
from transfer_lib.pretrained import load_ir50_stem
from transfer_lib.profiles import active_profile, find_rafdb
from transfer_lib.summary import count_parameters

viz.use_book_style()
torch.manual_seed(0)
profile = active_profile()
print(viz.describe_setup(profile, find_rafdb()))
config = make_config(size="paper")  # shapes and sizes are cheap: always the paper's
print(f"stem widths {config.stem_widths}, depths {config.stem_depths}, input {config.input_size}")

# %% [markdown]
# ## One unit: `bottleneck_IR`
#
# A ResNet unit {cite:p}`he2016resnet` adds a learned residual to a shortcut. The IR unit of
# ArcFace changes the order inside the residual to BN - Conv3x3 - PReLU - Conv3x3 - BN and puts
# the stride on the *second* convolution. The shortcut is the identity (a 1 x 1 max-pool when the
# unit subsamples) or, when the width changes, a strided 1 x 1 convolution with BN.

# %%
unit = BottleneckIR(64, 128, stride=2)
print(unit)
x = torch.randn(2, 64, 56, 56)
y = unit(x)
print(f"{tuple(x.shape)} -> {tuple(y.shape)}")
assert y.shape == (2, 128, 28, 28)  # width 64 -> 128, stride 2 halves the grid
assert isinstance(BottleneckIR(128, 128, 1).shortcut_layer, torch.nn.MaxPool2d)

# %% [markdown]
# ## 21 units in three stages
#
# `unit_specs` lists every unit as (in channels, out channels, stride); the first unit of a
# stage halves the resolution. Stage 4 of IR-50 (3 units of width 512, 7 x 7) is left out:
# TransFER wants a 14 x 14 grid, enough positions for local regions.

# %%
specs = unit_specs(config.stem_widths, config.stem_depths, config.stem_widths[0])
stage_of = [s for s, n in enumerate(config.stem_depths, start=1) for _ in range(n)]
table = pd.DataFrame(
    [dict(stage=st, in_channels=i, out_channels=d, stride=s,
          shortcut="conv 1x1" if i != d else "max-pool 1x1",
          parameters=count_parameters(BottleneckIR(i, d, s)))
     for st, (i, d, s) in zip(stage_of, specs)])
table.index.name = "unit"
display(table.style.format({"parameters": "{:,}"}))
assert len(specs) == 21 == sum(config.stem_depths)
assert [i for i, (_, _, s) in enumerate(specs) if s == 2] == [0, 3, 7]  # one per stage
assert table.query("shortcut == 'conv 1x1'").index.tolist() == [3, 7]

# %% [markdown]
# Unit 0 keeps the width (64 -> 64), so its shortcut is the identity, subsampled by a 1 x 1
# max-pool; units 3 and 7 change the width and need a strided 1 x 1 convolution. In face.evoLVe's
# full IR-50 the third conv shortcut sits at unit 21, the first unit of stage 4, which TransFER
# leaves out. Keeping face.evoLVe's layout and names is what lets its weights load unchanged.

# %% [markdown]
# ## Following a face through the stem
#
# Forward hooks record the output shape of the input layer and of the last unit of each stage.

# %%
stem = IR50Stem(config.stem_widths, config.stem_depths).eval()
face = Image.fromarray(render_face("Surprise", seed=7))  # a synthetic face, 100 x 100
x = eval_transform(config)(face)[None]  # (1, 3, 112, 112), ImageNet-normalised
last_units = [sum(config.stem_depths[:k]) - 1 for k in range(1, len(config.stem_depths) + 1)]
watch = {"input_layer": stem.input_layer} | {
    f"stage {k + 1} (unit {u})": stem.body[u] for k, u in enumerate(last_units)}
shapes = viz.record_shapes(stem, x, watch)
display(pd.DataFrame(shapes, columns=["module", "output shape"]).set_index("module"))
assert shapes[-1][1] == (1, 256, 14, 14)  # the paper's 256 x 14 x 14 feature map

# %% [markdown]
# ## Size and cost
#
# The paper's stem has 17.6 M parameters, more than a quarter of TransFER's 65.2 M. Because its
# first stages run at 112 x 112 and 56 x 56, it also costs over a third of TransFER's 29.6
# GFLOPs (chapter 6 counts the rest).

# %%
with torch.no_grad(), FlopCounterMode(display=False) as counter:
    stem(x)
params = count_parameters(stem)
print(f"stem parameters: {params / 1e6:.1f} M; forward FLOPs per image: "
      f"{counter.get_total_flops() / 1e9:.1f} G (FLOPs = 2 x multiply-adds)")
assert round(params / 1e6, 1) == 17.6
assert 0.33 < counter.get_total_flops() / 29.6e9 < 0.4

# %% [markdown]
# ## Pretrained on MS-Celeb-1M
#
# The authors start from face.evoLVe's `backbone_ir50_ms1m_epoch120.pth`. Because our stem keeps
# face.evoLVe's module names, `transfer_lib.pretrained.load_ir50_stem` maps every key to itself
# and reports what it leaves out on purpose: stage 4 (`body.21-23`) and the recognition head
# (`output_layer`). Put the file in `weights/` (or point `TRANSFER_IR50` at it) to load it here;
# without it the stem keeps its random initialisation.

# %%
ir50_path = viz.find_weights("backbone_ir50_ms1m_epoch120.pth", "TRANSFER_IR50")
if ir50_path is None:
    print("backbone_ir50_ms1m_epoch120.pth not found: the stem below is randomly initialised")
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
# each (brighter = larger activation), for the synthetic face on the left. With random weights the
# maps are edge and colour detectors of chance; with the MS-Celeb-1M weights they respond to
# eyes, brows, nose and mouth, the parts the next chapter's LANets choose between.

# %% tags=["hide-input"]
features = {}
hooks = [stem.body[u].register_forward_hook(
    lambda m, i, o, k=k: features.__setitem__(k, o[0])) for k, u in enumerate(last_units)]
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
                    suptitle=f"first 8 channels per stage ({weights}); input: a synthetic face")
for ax in fig.axes[1:8]:
    ax.set_visible(False)
plt.show()
assert out.shape == (1, 256, 14, 14) and torch.isfinite(out).all()

# %% [markdown]
# The stem's output, 256 channels on a 14 x 14 grid, is what the rest of TransFER works with:
# 196 positions, each a 256-dimensional description of a patch of roughly 8 x 8 input pixels
# (with a much larger receptive field). Chapter 4 weighs these positions with attention maps.
