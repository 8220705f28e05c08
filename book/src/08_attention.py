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
import warnings

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display
from PIL import Image

from transfer_lib import viz
from transfer_lib.checkpoint import model_from_checkpoint
from transfer_lib.data.synth import render_face
from transfer_lib.data.transforms import eval_transform
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

# %%
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
# Pick a face (class and seed) and switch LANet branches or attention heads off (a head is
# switched off in every block, the way MSAD drops it), and watch the prediction change. The
# switches are forward hooks, removed after each pass. In the book's HTML the widgets are not
# interactive (there is no Python behind a static page): run the notebook to use them. The cell
# first calls the function once directly, so the page shows one result.

# %%
def predict_with(label: str, seed: int, branches_on: tuple[bool, ...], heads_on: tuple[bool, ...]):
    """Class probabilities (and the fused map) of one face with some branches and heads off."""
    img = render_face(label, seed=seed)
    xi = transform(Image.fromarray(img))[None]
    head_mask = torch.tensor(heads_on, dtype=xi.dtype)[None, None, None, :, None]
    hooks = [lanet.register_forward_hook(lambda _m, _i, o: torch.zeros_like(o))
             for lanet, on in zip(model.local_cnn.lanets, branches_on) if not on]
    hooks += [b.attn.msad.register_forward_hook(lambda _m, _i, qkv: qkv * head_mask)
              for b in model.transformer.blocks]
    try:
        with torch.no_grad():
            o = model.forward_with_details(xi)
    finally:
        for hook in hooks:
            hook.remove()
    return img, o.logits.softmax(1)[0], o.fused_map[0, 0]


def explore(label="Happiness", seed=0, lanet_1=True, lanet_2=True, **heads):
    heads_on = tuple(heads.get(f"head_{k + 1}", True) for k in range(H))
    img, p, fused = predict_with(label, seed, (lanet_1, lanet_2), heads_on)
    fig, (a, b) = plt.subplots(1, 2, figsize=(7, 2.4), gridspec_kw={"width_ratios": [1, 2]})
    a.imshow(np.clip(viz.overlay(img, fused, alpha=0.4), 0, 1))  # float blend can pass 1 by 1e-8
    a.set_title(f"{label}, seed {seed} -> {names[int(p.argmax())]}")
    a.axis("off")
    b.barh(list(names), 100 * p.numpy(), color=["#2f5a8a" if n == label else "#9ab" for n in names])
    b.set_xlim(0, 100)
    b.set_xlabel("probability (%)")
    b.invert_yaxis()
    fig.tight_layout()
    plt.show()
    return p


p_all = explore("Happiness", seed=0)
_, p_ref, _ = predict_with("Happiness", 0, (True, True), (True,) * H)
_, p_off, _ = predict_with("Happiness", 0, (False, False), (True,) * H)
assert torch.allclose(p_all.sum(), torch.tensor(1.0)) and torch.equal(p_all, p_ref)
assert not torch.allclose(p_ref, p_off)  # both branches off: the feature map is zeroed

controls = dict(label=widgets.Dropdown(options=list(names), value="Happiness"),
                seed=widgets.IntSlider(0, 0, 50, description="seed"),
                lanet_1=widgets.Checkbox(True, description="LANet 1"),
                lanet_2=widgets.Checkbox(True, description="LANet 2"),
                **{f"head_{k + 1}": widgets.Checkbox(True, description=f"head {k + 1}")
                   for k in range(H)})
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # ipywidgets' deprecation notices are not ours to fix
    panel = widgets.interactive_output(explore, controls)
display(widgets.HBox([widgets.VBox(list(controls.values())[:4]),
                      widgets.VBox(list(controls.values())[4:])]), panel)
