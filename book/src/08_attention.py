# %% [markdown]
# # 8. What the model looks at
#
# The paper argues that MAD pushes the LANets to find diverse local patches instead of one
# discriminative region, and that MSAD makes the transformer explore rich relations among
# those patches; it shows attention maps of its ablation's models on the same faces to make
# the point {cite:p}`xue2021transfer`. This chapter looks inside the model trained in
# chapter 6 four ways: the LANet maps, attention rollout through the blocks, Grad-CAM, and the
# same face before and after MAD and MSAD. Then it puts the rows of the book's additive-task
# ablation (appendix 12) side by side on the same faces and *measures* how different the two LANet maps are with and
# without MAD, over the test set and across seeds. An explorer at the end lets you switch
# parts off.

# %% [setup]

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from PIL import Image

from transfer_lib.book import attention as study
from transfer_lib.book import viz
from transfer_lib.book.ablate import PAPER_ROWS, ablate, check_rerun, load_ablation, rerun
from transfer_lib.book.explorer import StaticExplorer
from transfer_lib.data.synth import most_frequent_class_accuracy, render_face
from transfer_lib.data.transforms import eval_transform
from transfer_lib.train import run_or_load
from transfer_lib.train.profiles import active_profile, find_rafdb
from transfer_lib.weights.checkpoint import model_from_checkpoint

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
print(f"{config.variant} ({summary['size']}), {config.depth} blocks of {H} heads, {g} x {g} "
      f"tokens: test accuracy {100 * summary['final_accuracy']:.1f} % on {data_name}")
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
x = torch.stack([transform(Image.fromarray(f)) for f in faces])  # (n, 3, S, S), n = 4
with torch.no_grad():
    out = model.forward_with_details(x)
probs = out.logits.softmax(1)
predicted = [names[i] for i in probs.argmax(1)]
print("LANet maps", tuple(out.lanet_maps.shape), "attentions", len(out.attentions), "x",
      tuple(out.attentions[0].shape))
assert out.lanet_maps.shape == (4, config.num_branches, g, g)
assert torch.equal(out.fused_map[:, 0], out.lanet_maps.amax(1))  # eval: max of the maps

# %% [markdown]
# ## The LANet maps
#
# Each LANet gives a $G \times G$ map $A_i \in (0, 1)^{G \times G}$; the local CNN keeps
# their element-wise maximum $\bar A = \max_i m_i A_i$ (in evaluation every $m_i = 1$) and
# multiplies the feature map by it (chapter 4). Here they are over the faces:

# %% tags=["hide-input"]
items, titles = [], []
for i, face in enumerate(faces):
    items += [face, *[viz.overlay(face, m) for m in (*out.lanet_maps[i], out.fused_map[i, 0])]]
    titles += [f"{shown[i]} -> {predicted[i]}", "LANet 1", "LANet 2", "max (M_out)"]
viz.show_grid(items, titles, ncols=4, size=1.7, suptitle=f"LANet maps, {data_name} model")
plt.show()
assert ((out.lanet_maps > 0) & (out.lanet_maps < 1)).all()  # sigmoid outputs

# %% [markdown]
# ## Attention rollout
#
# One block's attention says which tokens the cls token read in that block, but the tokens it
# read were already mixtures of others. *Attention rollout* {cite:p}`abnar2020rollout`
# follows the flow through every block. With $P^{(\ell)}_j$ the attention weights of head $j$
# in block $\ell$ (chapter 5), rollout averages the heads, models the residual connection as
# an even mix with the identity $I$, and multiplies the blocks' matrices, last block first:
#
# $$
# P^{(\ell)}_j = \mathrm{softmax}\!\left(\frac{Q_j K_j^\top}{\sqrt{d_h}}\right)
# \in [0,1]^{(N+1)\times(N+1)}, \qquad
# \tilde P^{(\ell)} = \frac{1}{2} \cdot \frac{1}{h} \sum_{j=1}^{h} P^{(\ell)}_j + \frac{1}{2} I
# $$ (eq-rollout-block)
#
# $$
# R = \tilde P^{(L)} \, \tilde P^{(L-1)} \cdots \tilde P^{(1)}
# \in [0,1]^{(N+1)\times(N+1)}
# $$ (eq-rollout)
#
# Every row of every $P^{(\ell)}_j$ sums to 1, so every row of $\tilde P^{(\ell)}$ and of $R$
# does too. Row 0 of $R$ (the cls token's) without its own entry, $(R_{0,1}, \dots, R_{0,N})$ on
# the $G \times G$ grid, says how much each position reached the classifier. We write
# {eq}`eq-rollout-block` and {eq}`eq-rollout` out here and check them against the library's
# `viz.attention_rollout`, which the rest of the chapter uses.

# %%
by_hand = None
for a in out.attentions:  # (n, h, N + 1, N + 1) per block, first block first
    p = 0.5 * a.mean(1) + 0.5 * torch.eye(a.shape[-1])  # (eq-rollout-block)
    by_hand = p if by_hand is None else p @ by_hand  # (eq-rollout): newest on the left
rollout = viz.attention_rollout(out.attentions)  # (n, N + 1, N + 1)
assert torch.allclose(by_hand, rollout, atol=1e-6)
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
# predicted class and keeps the positive part. pytorch-grad-cam expects a CNN's (n, C, H, W)
# activations; a transformer layer gives (n, 1 + N, D) tokens, so a reshape transform drops
# the cls token and folds the rest back into the grid (`viz.token_reshape_transform`). The
# layer is the last block's first LayerNorm, the input of the last attention.

# %%
from pytorch_grad_cam import GradCAM  # noqa: E402 - optional dependency, used only here
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

targets = [ClassifierOutputTarget(int(k)) for k in probs.argmax(1)]
with GradCAM(model, target_layers=[model.transformer.blocks[-1].norm1],
             reshape_transform=viz.token_reshape_transform(g)) as cam:
    heat = cam(input_tensor=x, targets=targets)  # (n, S, S), each scaled to [0, 1]
viz.show_grid([viz.overlay(f, h) for f, h in zip(faces, heat)],
              [f"{s}: Grad-CAM for {p}" for s, p in zip(shown, predicted)], ncols=4, size=1.9)
plt.show()
assert heat.shape == (len(faces), config.input_size, config.input_size)
assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1

# %% [markdown]
# ## The same face before and after MAD and MSAD
#
# MAD and MSAD act only in training. To see them on one face we switch just those modules to
# training mode (BatchNorm stays in evaluation mode) and fix the random generator's seed, so
# the pass below is reproducible: MAD ($p_1 = 0.6$) zeroes one LANet map of the face, MSAD
# ($p_2 = 0.3$ per block) one head of the attention, whose weights then become uniform
# ($Q_j = K_j = 0$ for that head $j$).

# %%
drop = viz.show_mad_msad_drop(model, faces[0], x[:1], out)  # seeds 0, 1, ... until both drop
plt.show()
print(f"seed {drop['seed']}: MAD dropped LANet {drop['map'] + 1}; MSAD dropped head "
      f"{drop['head'] + 1} of the last block")
assert drop["maps_zeroed"] == drop["heads_uniform"] == 1 and not model.training  # one each

# %% [markdown]
# ## The ablation's rows side by side
#
# The paper's attention figure compares the rows of its ablation on the same faces. The book's
# additive-task ablation (appendix 12) trained those rows - (i) `vit_fer`, (ii) `local`, (iii) `local_mad`, (iv) `transfer` - from
# the same seeds, and every run kept its weights. `python -m transfer_lib attention` reads
# them (inference only, nothing is trained): for a few test faces it keeps each run's maps,
# and over the whole test set it measures how different the two LANet maps are (next
# section). Those runs take too long for a book build, so here too the book shows
# **committed** results: `book/results/attention-cpu.json` and `.npz`, computed from the committed cpu ablation's runs by the command in their provenance. The
# last section recomputes what a reader's build can.

# %%
RESULTS = viz.project_root() / "book" / "results"
committed = study.load_attention(RESULTS / "attention-cpu")
maps = study.load_maps(RESULTS / "attention-cpu")
ablation = load_ablation(RESULTS / "ablation-cpu")
prov, mach = committed["provenance"], committed["provenance"]["machine"]
print(f"committed: book/results/attention-cpu.json and .npz\n  command: {prov['command']}\n"
      f"  commit {(prov.get('git') or {}).get('commit', 'unknown')[:12]}, torch {prov['torch']}, "
      f"{mach['cpu']} ({mach['cpu_count']} cores), {prov['wall_seconds'] / 60:.0f} min\n  runs "
      f"from: {committed['source_ablation']['command']}\n  {committed['num_samples']} test faces")
# the runs are the committed ablation's: same command, and each run's accuracy is its figure
assert committed["source_ablation"]["command"] == ablation["provenance"]["command"]
mean_accuracy = {r["row"]: r["accuracy_mean"] for r in ablation["rows"]}
assert all(mean_accuracy[r] < mean_accuracy["ir50"] - 10 for r in PAPER_ROWS)  # (below)
accuracy_of = {(r["row"], run["seed"]): run["metrics"]["occluded_none"]
               for r in ablation["rows"] for run in r["runs"]}
gaps = [abs(run["metrics"]["accuracy"] - accuracy_of[r["row"], run["seed"]])
        for r in committed["rows"] for run in r["runs"]]
assert max(gaps) <= 100 / committed["num_samples"] + 1e-9  # at most one face apart

# %% [markdown]
# The figure: the same four test faces (the first of each class in
# `attention.FIGURE_CLASSES`) in every row, seed 0 of each. For the rows with LANets it shows
# both maps $A_1$, $A_2$ and the rollout's cls row {eq}`eq-rollout`; (i) has no LANets, only
# the rollout. Each overlay is scaled to its own range, so colours say where a map is high
# *relative to itself*: red is a map's maximum whatever its value.

# %%
EPOCHS = ablation["provenance"]["train_overrides"]["epochs"]
fig = viz.show_ablation_maps(maps, committed, PAPER_ROWS, seed=0, suptitle=f"the paper's "
                             f"rows, seed 0, same test faces ({EPOCHS}-epoch cpu ablation)")
plt.show()
assert len(fig.axes) == len(maps["faces"]) * (1 + 1 + 3 * 3)  # (i): rollout; (ii)-(iv): 3 each
assert EPOCHS == 3 and committed["grid"] == [6, 6]  # as the text says
assert [f["class"] for f in committed["faces"]] == [
    c for c in study.FIGURE_CLASSES if c in committed["class_names"]]

# %% [markdown]
# ## Do the two LANets look at different places?
#
# A picture of four faces cannot say whether MAD makes the maps more diverse; a measure over
# the test set can. For one face, let $\mathcal{T}_i$ be the $M = \mathrm{round}(\kappa N)$
# positions where $A_i$ is largest (the top $\kappa = 25\,\%$ of the $N = G^2$ positions; ties
# go to the lower position index). The **overlap** of the two maps is the intersection over
# union of their top regions, and their **correlation** is Pearson's over the positions,
# with $\mu_i$ the mean of $A_i$ and the inner product and norm taken over the $N$ positions:
#
# $$
# \mathrm{IoU}(A_1, A_2) = \frac{|\mathcal{T}_1 \cap \mathcal{T}_2|}
# {|\mathcal{T}_1 \cup \mathcal{T}_2|} \in [0, 1]
# $$ (eq-top-iou)
#
# $$
# \rho(A_1, A_2) = \frac{\langle A_1 - \mu_1, \, A_2 - \mu_2 \rangle}
# {\lVert A_1 - \mu_1 \rVert \, \lVert A_2 - \mu_2 \rVert} \in [-1, 1]
# $$ (eq-map-correlation)
#
# Lower means more different maps. Two top regions drawn at random, independently, share
# $q$ of their $M$ positions with the hypergeometric probability, so by chance the overlap is
#
# $$
# \mathbb{E}\left[\mathrm{IoU}\right] = \sum_{q=0}^{M}
# \frac{\binom{M}{q}\binom{N-M}{M-q}}{\binom{N}{M}} \, \frac{q}{2M - q}
# $$ (eq-iou-chance)
#
# Each run's figure is the mean of {eq}`eq-top-iou` and {eq}`eq-map-correlation` over the test
# faces (`attention.branch_diversity`); the seeds then give a mean ± std per row, and the step
# that adds MAD is compared seed by seed with the paired interval {eq}`eq-paired-difference`
# (at the 95 % level, one comparison). First the measure
# on the chapter 6 model's four faces, written out:

# %%
A1, A2 = out.lanet_maps[:, 0].flatten(1), out.lanet_maps[:, 1].flatten(1)  # (n, N)
M = round(0.25 * g * g)
top1, top2 = (set(a.argsort(descending=True, stable=True)[:M].tolist())
              for a in (A1[0], A2[0]))  # the top regions of the first face
iou = len(top1 & top2) / len(top1 | top2)  # (eq-top-iou), first face
rho = torch.corrcoef(torch.stack([A1[0], A2[0]]))[0, 1]  # (eq-map-correlation)
library = study.branch_diversity(out.lanet_maps)  # every face at once
print(f"{shown[0]}: IoU {iou:.3f}, correlation {rho:.3f}; chance IoU for {M} of "
      f"{g * g} positions {study.chance_overlap(g * g, M):.3f}")
assert M == study.top_count(g * g) and abs(library["overlap"][0].item() - iou) < 1e-6
assert abs(library["correlation"][0].item() - rho.item()) < 1e-4

# %% [markdown]
# Now the committed ablation's runs. Each dot is one run (the mean over the test faces), the
# bar the mean over seeds; the dashed line is the chance overlap {eq}`eq-iou-chance`.

# %%
chance = committed["chance_overlap"]
per_run = pd.DataFrame([
    {"row": r["row"], "seed": run["seed"],
     **{k: run["metrics"][k] for k in ("overlap", "correlation", "accuracy")}}
    for r in committed["rows"] if r["has_lanets"] for run in r["runs"]])
display(per_run.groupby("row", sort=False)[["overlap", "correlation", "accuracy"]]
        .agg(["mean", "std"]).round(3))
viz.plot_branch_diversity(per_run, chance, title=f"the two LANet maps per run, "
                          f"{committed['num_samples']} test faces (committed)")
plt.show()
g_c, M_c = committed["grid"][0], committed["top_positions"]
assert M_c == study.top_count(g_c * g_c, committed["top_fraction"])
assert abs(chance - study.chance_overlap(g_c * g_c, M_c)) < 1e-12
assert per_run["overlap"].between(0, 1).all() and per_run["correlation"].between(-1, 1).all()
tied = {f"{r['row']}/{run['seed']}": run["metrics"]["tied_share"]
        for r in committed["rows"] if r["has_lanets"] for run in r["runs"]}
print("runs where over 1 % of the faces have a map tied at the edge of its top region (saturated "
      "maps):", {k: f"{100 * v:.1f} %" for k, v in tied.items() if v > 0.01} or "none")

# %% [markdown]
# The steps, paired seed by seed (later row minus earlier row; negative: the later row's maps
# are more different):

# %%
steps = viz.diversity_steps(committed)
display(steps.round(3))
chance_line = most_frequent_class_accuracy(committed["num_samples"])  # the learnt-nothing line
verdict = viz.diversity_verdict(committed, chance_line)
display(Markdown(verdict["text"]))
mad_step = steps.loc[("local -> local_mad", "overlap")]

# %% [markdown]
# How to read this. The paper's argument is about its setting: an IR-50 trained on millions
# of faces and an ImageNet ViT, fine-tuned on RAF-DB to convergence. Each run here starts
# from random weights and trains 3 epochs on synthetic faces, and at that budget every one of
# the paper's four rows stays well below the plain CNN's accuracy (appendix 12): these are maps
# of models that have barely started to learn (the sentence above counts the runs of the two
# rows that had not started at all). Two things about the measure matter too.
# First, two LANets from different random initialisations start out different; a regulariser can
# only move them from there, and the direction is not obvious: when MAD drops one map of a
# face, the other map alone must carry it, which rewards each map for covering the useful
# region by itself and could pull the maps *together* rather than apart (a hypothesis these
# runs do not test). Second, the overlap of two smooth maps on a 6 x 6 grid is coarse, which
# is why the correlation stands beside it.
# Whatever the verdict above, it is a measurement at this budget, not a test of the paper's
# claim on RAF-DB; at the `paper` profile the last cell below measures chapter 7's own runs
# (there chapter 7 runs the paper's rows on RAF-DB).
#
# ## Recomputed live
#
# The committed figures are worth showing only if the command reproduces them. What a
# reader's build can recompute depends on the profile:
#
# * `smoke`: the chapter runs the four rows for two seeds of one training step each and runs
#   the measurement on them: a check that the pipeline works, not of any figure;
# * `cpu`: this cell reruns `transfer` at seed 0 exactly as the committed ablation ran it
#   (about a minute; an earlier build's rerun is loaded) and checks its measures as chapters
#   6 and 7 check their reruns: equal to the committed ones where the
#   run's provenance says the pinned kernels ran, else inside the committed seeds' 99 %
#   prediction interval (another draw of the same recipe);
# * `paper` and `gpu`: chapter 7 runs the ablation live; this cell measures its runs.

# %%
if profile.name == "smoke":
    small = viz.book_run_dir("attention-ablate", profile)
    ablate("smoke", seeds=2, rows=list(PAPER_ROWS), out=small, progress=False,
           occlusion=False, epochs=1, max_steps=1)
    live = study.attention_study(small, out=small / "attention")
    print(f"smoke: {sum(len(r['runs']) for r in live['rows'])} runs of one step measured on "
          f"{live['num_samples']} test faces - a check of the path, not of the figures")
    assert [(r["row"], r["seeds"], r["has_lanets"]) for r in live["rows"]] == [
        (row, [0, 1], row != "vit_fer") for row in PAPER_ROWS]
    assert all(0 <= run["metrics"]["overlap"] <= 1 for r in live["rows"][1:] for run in r["runs"])
    assert [(c["before"], c["to"]) for c in live["comparisons"]] == [
        ("local", "local_mad"), ("local_mad", "transfer"), ("local", "transfer")]
    assert set(study.load_maps(small / "attention")) >= {"faces", "transfer.seed1.lanet"}
elif profile.name == "cpu":
    ROW, SEED = "transfer", 0
    rerun_dir = viz.book_run_dir("ablate-rerun", profile) / f"{ROW}-seed{SEED}"
    rerun(ablation, ROW, SEED, rerun_dir)  # trains it, or loads an earlier build's
    record, _ = study.measure_run(rerun_dir)
    run_provenance = json.loads((rerun_dir / "summary.json").read_text()).get("provenance")
    BOUNDS = {"overlap": (0.0, 1.0), "correlation": (-1.0, 1.0), "accuracy": (0.0, 100.0)}
    committed_runs = next(r for r in committed["rows"] if r["row"] == ROW)["runs"]
    for k, bounds in BOUNDS.items():
        values = {run["seed"]: run["metrics"][k] for run in committed_runs}
        check = check_rerun(record["metrics"][k], values, SEED, run_provenance, bounds=bounds)
        print(f"{ROW}, seed {SEED}, {k} ({check['mode']} check): {check['message']}")
        assert check["ok"], f"the rerun does not match the committed {k}: {check['message']}"
    print(check["why"])
elif (viz.book_run_dir("ablate", profile) / "ablation.json").is_file():  # chapter 7's, live
    live_runs = viz.book_run_dir("ablate", profile)
    live = study.attention_study(live_runs, out=live_runs / "attention")
    d = next(c for c in live["comparisons"] if c["to"] == "local_mad")["differences"]["overlap"]
    print(f"profile {profile.name}: local -> local_mad changes the overlap by "
          f"{d['mean']:+.3f}, {d['verdict']}, over {d['n']} seeds")
else:
    print(f"profile {profile.name}: run chapter 7 first; this cell measures its runs")

# %% [markdown]
# ## An explorer
#
# Pick a face and switch LANet branches or attention heads off, and watch the prediction
# change. A head's switch turns that head off in every block at once, always; MSAD instead
# drops, with probability $p_2$, one head drawn separately in each block for each face, so the
# switch is a stronger intervention than any MSAD draw. The switches are forward
# hooks, removed after each pass, and a whole batch of faces passes at once, each with its own
# switches. A page of the book has no Python behind it, so the cell computes every state the
# controls offer in advance (every on/off setting of the switches for 21 faces) and writes them
# into the page, with a few lines of JavaScript that look the chosen one up
# (`transfer_lib.book.explorer`); the same output works in Jupyter and on Colab.

# %%
device = "cuda" if torch.cuda.is_available() else "cpu"  # paper size: 21 x 1024 passes
e = viz.explorer_states(model, names, transform, faces_per_class=3, device=device)
probabilities, states = e["probabilities"], e["states"]  # (faces, states, classes), (states, 10)
last_face = transform(Image.fromarray(render_face(names[-1], seed=2)))[None]
plain = model(last_face).detach().softmax(1)[0]  # the last face, no switch off
assert torch.allclose(probabilities[-1, -1], plain, atol=1e-5)  # all on = the model
both_off = int(states[:, :2].sum(1).eq(0).nonzero()[-1])  # branches off, every head on
assert not torch.allclose(probabilities[:, -1], probabilities[:, both_off])
display(StaticExplorer(e["labels"], e["switches"], names, probabilities, e["pictures"],
                       image_switches=2, true_classes=e["true_classes"],
                       title=f"{data_name} model: switch parts off"))

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
display(Markdown(f"""
* The LANet maps $A_i$, their maximum $\\bar A$, attention rollout {{eq}}`eq-rollout` (written
  out here, equal to the library's) and Grad-CAM are four views of where chapter 6's model
  reads a face; in training, MAD zeroed one of its LANet maps and MSAD one head of its last
  block (seed {drop['seed']}).
* Over {committed['num_samples']} test faces of the committed cpu ablation (3-epoch runs from
  random weights), adding MAD changed the overlap of the two maps' top regions by
  {mad_step['difference']:+.3f} [{mad_step['low']:+.3f}, {mad_step['high']:+.3f}] over
  {mad_step['n']} seeds (chance {chance:.3f}); with the correlation it leans {verdict['lean']}.
  {verdict['stalled']} of the {verdict['runs']} runs of the two rows had not started to learn.
* The committed maps and measures carry their provenance; a `cpu` build checks a rerun of
  one run against them, a `smoke` build the whole path.
"""))

# %% [markdown]
# ## Exercises
#
# 1. Check {eq}`eq-iou-chance` by hand for $M = 2$ of $N = 4$ positions, then compare
#    `chance_overlap(36, 9)` with a simulation: the mean `top_overlap` of 10,000 pairs of
#    random 6 x 6 maps.
# 2. Does the verdict on MAD depend on $\kappa$? Run
#    `python -m transfer_lib attention --runs runs/ablate-cpu --top 0.1` and `--top 0.5` on
#    the ablation's runs (`python -m transfer_lib ablate --profile cpu --rows
#    local,local_mad --seeds 3 --epochs 3 --warmup-epochs 1 --eval-every 3 --out
#    runs/ablate-cpu` writes them, about 7 minutes) and compare the paired differences.
# 3. The figure shows seed 0. Draw seed 2 from the maps file
#    (`maps["local_mad.seed2.lanet"]`): which rows change most from seed to seed?
# 4. Replace the mean over heads in {eq}`eq-rollout-block` by the maximum
#    (`viz.attention_rollout(out.attentions, head_fusion="max")`) and redraw the rollout maps
#    of the chapter 6 model. Which positions gain?
# 5. Set $p_1 = 0.3$: rerun the `local_mad` row for 3 seeds at the committed budget,
#    `rerun(ablation, "local_mad", s, f"runs/p03/local_mad/seed{s}",
#    model_overrides={"mad_p": 0.3})` for s = 0, 1, 2, copy `runs/ablate-cpu/local` beside
#    it and measure `runs/p03`. Does a weaker MAD move the overlap?
# 6. (Longer.) Train `local` and `local_mad` at the full cpu recipe (30 epochs):
#    `ablate("cpu", seeds=3, rows=["local", "local_mad"], out="runs/ablate-30",
#    occlusion=False)`, then measure `runs/ablate-30`. Does MAD's effect on the maps change
#    with training length?
