# %% [markdown]
# # 8. What the model looks at
#
# The paper's figures show the LANets' maps landing on eyes, brows and mouth, and MAD and MSAD
# pushing the model off any single region: "the attention maps [...] locate diverse local
# patches", and dropping forces "rich relations among diverse local patches"
# {cite:p}`xue2021transfer` (paraphrased). This chapter looks inside the model trained in
# chapter 6 four ways: the LANet maps, attention rollout through the blocks, Grad-CAM, and the
# same face before and after MAD and MSAD; then an explorer lets you switch parts off.

# %% [setup]

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display
from PIL import Image

from transfer_lib import viz
from transfer_lib.checkpoint import model_from_checkpoint
from transfer_lib.data.synth import render_face
from transfer_lib.data.transforms import eval_transform
from transfer_lib.explorer import StaticExplorer, switch_states
from transfer_lib.profiles import active_profile, find_rafdb
from transfer_lib.train import run_or_load

viz.use_book_style()
profile = active_profile()
rafdb = find_rafdb()
print(viz.describe_setup(profile, rafdb))

# %% [markdown]
# ## The model of chapter 6
#
# The same call as chapter 6: it loads the finished run, or trains it when this chapter runs
# first. We take the weights of the last epoch (the ones chapter 6 evaluated).

# %%
run_dir = viz.book_run_dir("transfer", profile)
summary = run_or_load(run_dir, **viz.transfer_run_config(profile, rafdb))
model = model_from_checkpoint(run_dir / "last.pt")
config = model.config
names, g, H = config.class_names, config.token_grid, config.num_heads
data_name = "RAF-DB" if profile.name == "paper" and rafdb is not None else "synthetic faces"
print(f"{config.variant} ({summary['size']}): {config.input_size} x {config.input_size} input, "
      f"{g} x {g} tokens, {config.depth} blocks of {H} heads; test accuracy "
      f"{100 * summary['final_accuracy']:.1f} % on {data_name}")
assert not model.training and config.variant == "transfer"

# %% [markdown]
# Four test faces, one per class shown, rendered frontal and evenly lit (`nuisance=False`) so
# the pictures are easy to read. All maps below come from this model; at the `smoke` and `cpu`
# profiles it is a small model trained briefly on synthetic faces, so expect rougher maps than
# the paper's.

# %%
shown = ["Happiness", "Surprise", "Anger", "Sadness"]
faces = [render_face(name, seed=100 + i, nuisance=False) for i, name in enumerate(shown)]
transform = eval_transform(config)
x = torch.stack([transform(Image.fromarray(f)) for f in faces])  # (4, 3, S, S)
with torch.no_grad():
    out = model.forward_with_details(x)
probs = out.logits.softmax(1)
predicted = [names[i] for i in probs.argmax(1)]
print("LANet maps", tuple(out.lanet_maps.shape), "fused", tuple(out.fused_map.shape),
      f"attentions {len(out.attentions)} x", tuple(out.attentions[0].shape))
assert out.lanet_maps.shape == (4, config.num_branches, g, g)
assert torch.equal(out.fused_map[:, 0], out.lanet_maps.amax(1))  # eval: max of the maps

# %% [markdown]
# ## The LANet maps
#
# Each LANet gives a g x g map in (0, 1); the local CNN keeps their element-wise maximum and
# multiplies the feature map by it (chapter 4). Here they are over the faces:

# %% tags=["hide-input"]
items, titles = [], []
for i, face in enumerate(faces):
    items += [face] + [viz.overlay(face, m) for m in out.lanet_maps[i]] + \
        [viz.overlay(face, out.fused_map[i, 0])]
    titles += [f"{shown[i]} -> {predicted[i]}", "LANet 1", "LANet 2", "max (M_out)"]
viz.show_grid(items, titles, ncols=4, size=1.7, suptitle=f"LANet maps, {data_name} model")
plt.show()
print("map range per face (min, max):",
      [(round(m.min().item(), 2), round(m.max().item(), 2)) for m in out.fused_map])
assert ((out.lanet_maps > 0) & (out.lanet_maps < 1)).all()  # sigmoid outputs

# %% [markdown]
# ## Attention rollout
#
# One block's attention says which tokens the cls token read in that block, but the tokens it
# read were already mixtures of others. *Attention rollout* {cite:p}`abnar2020rollout`
# follows the flow through every block: average the heads, add the residual connection as
# 0.5 A + 0.5 I, and multiply the blocks' matrices, A_L ... A_1. Row 0 of the product, without
# the cls column, says how much each of the g x g positions reached the classifier
# (`viz.attention_rollout`).

# %%
rollout = viz.attention_rollout(out.attentions)  # (B, N + 1, N + 1)
rollout_maps = rollout[:, 0, 1:].reshape(-1, g, g)
last_maps = out.attentions[-1].mean(1)[:, 0, 1:].reshape(-1, g, g)  # last block only
items, titles = [], []
for i, face in enumerate(faces):
    items += [face, viz.overlay(face, last_maps[i]), viz.overlay(face, rollout_maps[i])]
    titles += [shown[i], "last block, cls row", "rollout, cls row"]
viz.show_grid(items, titles, ncols=6, size=1.6)
plt.show()
assert torch.allclose(rollout.sum(-1), torch.ones(rollout.shape[:2]), atol=1e-4)

# %% [markdown]
# ## Grad-CAM
#
# Grad-CAM {cite:p}`selvaraju2017gradcam` weighs a layer's activations by the gradient of the
# predicted class and keeps the positive part. pytorch-grad-cam expects a CNN's (B, C, h, w)
# activations; a transformer layer gives (B, 1 + h w, C) tokens, so a reshape transform drops the
# cls token and folds the rest back into the grid (`viz.token_reshape_transform`). The layer is
# the last block's first LayerNorm, the input of the last attention.

# %%
from pytorch_grad_cam import GradCAM  # noqa: E402 - an optional dependency, used only here
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

targets = [ClassifierOutputTarget(int(k)) for k in probs.argmax(1)]
with GradCAM(model, target_layers=[model.transformer.blocks[-1].norm1],
             reshape_transform=viz.token_reshape_transform(g)) as cam:
    heat = cam(input_tensor=x, targets=targets)  # (B, S, S), each scaled to [0, 1]
viz.show_grid([viz.overlay(f, h) for f, h in zip(faces, heat)],
              [f"{s}: Grad-CAM for {p}" for s, p in zip(shown, predicted)], ncols=4, size=1.9)
plt.show()
assert heat.shape == (len(faces), config.input_size, config.input_size)
assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1

# %% [markdown]
# ## The same face before and after MAD and MSAD
#
# MAD and MSAD act only in training. To see them on one face we switch just those modules to
# training mode (BatchNorm stays in evaluation mode) and fix the random generator's seed, so the
# pass below is reproducible: MAD (p1 = 0.6) zeroes one LANet map of the face, MSAD
# (p2 = 0.3 per block) one head of the attention, whose weights then become uniform (q = k = 0).

# %%
face, xf = faces[0], x[:1]
model.local_cnn.regulariser.train()
for block in model.transformer.blocks:
    block.attn.msad.train()
N = g * g + 1
for seed in range(1000):  # the first seed that drops a map and a head of the last block
    torch.manual_seed(seed)
    with torch.no_grad():
        dropped = model.forward_with_details(xf)
    zero_maps = (dropped.lanet_maps[0] == 0).flatten(1).all(1)  # (branches,)
    cls_rows = dropped.attentions[-1][0, :, 0]  # (heads, N)
    uniform = (cls_rows - 1 / N).abs().amax(-1) < 1e-6  # (heads,): a zeroed head attends uniformly
    if zero_maps.any() and uniform.any():
        break
model.eval()
m, h = int(zero_maps.nonzero()[0]), int(uniform.nonzero()[0])
before_heads = out.attentions[-1][0, :, 0, 1:].reshape(H, g, g)
after_heads = dropped.attentions[-1][0, :, 0, 1:].reshape(H, g, g)
items = [face] + [viz.overlay(face, mp) for mp in out.lanet_maps[0]] + [face] + \
    [viz.overlay(face, mp) if i != m else np.zeros((g, g)) for i, mp in enumerate(dropped.lanet_maps[0])]
viz.show_grid(items, ["evaluation", "LANet 1", "LANet 2", f"MAD, seed {seed}",
                      *[f"LANet {i + 1}" + (" dropped" if i == m else "") for i in range(2)]],
              ncols=3, size=1.7, cmap="gray", vmin=0, vmax=1)
plt.show()
viz.show_grid(list(before_heads) + list(after_heads),
              [f"head {k + 1}" for k in range(H)] + [f"head {k + 1}" + (" dropped" if k == h else "")
                                                    for k in range(H)],
              ncols=H, size=1.5, cmap="viridis",
              row_labels=["evaluation", f"MSAD, seed {seed}"],
              suptitle="last block: cls token's attention over the grid, per head")
plt.show()
print(f"seed {seed}: MAD dropped LANet {m + 1}; MSAD dropped head {h + 1} of the last block")
assert int(zero_maps.sum()) == 1 and int(uniform.sum()) == 1  # one map and one head, never more
assert not model.local_cnn.regulariser.training

# %% [markdown]
# ## An explorer
#
# Pick a face and switch LANet branches or attention heads off (a head is switched off in every
# block, the way MSAD drops it), and watch the prediction change. The switches are forward
# hooks, removed after each pass, and a whole batch of faces passes at once, each with its own
# switches. A page of the book has no Python behind it, so the cell computes every state the
# controls offer in advance (every on/off setting of the switches for 21 faces) and writes them
# into the page, with a few lines of JavaScript that look the chosen one up
# (`transfer_lib.explorer`); the same output works in Jupyter and on Colab.

# %%
def predict_with(x, branches_on, heads_on):
    """Class probabilities (B, classes) and fused maps (B, g, g) of faces x (B, 3, S, S)
    with some parts off: branches_on (B, branches) and heads_on (B, H), 1 = on."""
    heads = heads_on.to(x.dtype)[:, None, None, :, None]  # (B, 1, 1, H, 1), like qkv
    branches = branches_on.to(x.dtype)[:, :, None, None, None]  # (B, branches, 1, 1, 1)
    hooks = [lanet.register_forward_hook(lambda _m, _i, o, k=k: o * branches[:, k])
             for k, lanet in enumerate(model.local_cnn.lanets)]
    hooks += [b.attn.msad.register_forward_hook(lambda _m, _i, qkv: qkv * heads)
              for b in model.transformer.blocks]
    try:
        with torch.no_grad():
            o = model.forward_with_details(x)
    finally:
        for hook in hooks:
            hook.remove()
    return o.logits.softmax(1), o.fused_map[:, 0]


# %% tags=["hide-input"]
device = "cuda" if torch.cuda.is_available() else "cpu"  # paper size: 21 x 1024 passes
model.to(device)
switches = ["LANet 1", "LANet 2"] + [f"head {k + 1}" for k in range(H)]
states = switch_states(len(switches)).to(device)  # (2 ** 6 or 2 ** 10, switches)
n_maps = 2 ** 2  # the fused map depends on the two branches only
labels, probabilities, pictures = [], [], []
for name in names:
    for seed in range(3):
        img = render_face(name, seed=seed)
        xi = transform(Image.fromarray(img))[None].to(device)
        p, fused = map(torch.cat, zip(*(
            predict_with(xi.expand(len(c), -1, -1, -1), c[:, :2], c[:, 2:])
            for c in states.split(256))))
        assert torch.allclose(fused[:n_maps], fused[-n_maps:])  # heads act after maps
        labels.append(f"{name}, seed {seed}")
        probabilities.append(p.cpu())
        pictures.append([viz.overlay(img, m.cpu(), alpha=0.4) for m in fused[:n_maps]])
with torch.no_grad():
    plain = model.forward_with_details(xi).logits.softmax(1)[0].cpu()  # no hooks
model.cpu()
probabilities = torch.stack(probabilities)  # (faces, states, classes)
assert torch.allclose(probabilities[-1, -1], plain, atol=1e-5)  # all on = the model
both_off = int(states[:, :2].sum(1).eq(0).nonzero()[-1])  # branches off, every head on
assert not torch.allclose(probabilities[:, -1], probabilities[:, both_off])
display(StaticExplorer(labels, switches, names, probabilities, pictures,
                       image_switches=2,
                       true_classes=[k for k in range(len(names)) for _ in range(3)],
                       title=f"{data_name} model: switch parts off"))
