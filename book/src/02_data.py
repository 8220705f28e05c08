# %% [markdown]
# # 2. Data: RAF-DB and a synthetic stand-in
#
# TransFER's headline number, 90.91 % {cite:p}`xue2021transfer`, is measured on RAF-DB
# {cite:p}`li2017rafdb`, the Real-world Affective Faces Database: about 30,000 faces from the
# internet, each labelled by some 40 annotators. Its *basic* subset, used by the paper, has 15,339
# aligned faces with one of seven labels. This chapter shows its layout and its imbalance, defines
# the two accuracies the book reports, builds a synthetic data set in the same layout for readers
# without it, applies the authors' augmentations to a face, and shows the fast data pipeline the
# trainer uses. Throughout the book a sample is an image $x$ with its label $y$, one of 7
# classes; the model's output $\hat y$ holds 7 logits, and the input side is $S$ pixels
# ($S = 112$ in the paper, 48 in the `cpu` profile).

# %% [setup]

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown

from transfer_lib.book import viz
from transfer_lib.data import (
    build_dataset,
    ensure_synthetic,
    eval_transform,
    train_transform,
)
from transfer_lib.data.fast import BatchAugment, FastLoader, build_cache
from transfer_lib.data.synth import (
    CUE_PART,
    DEFAULT_OCCLUSION,
    EXPRESSION_CUES,
    OCCLUDERS,
    PARTS,
    RAFDB_TRAIN_COUNTS,
    class_counts,
    render_face,
)
from transfer_lib.data.transforms import AuthorsRandomErasing
from transfer_lib.evaluate import metrics_from_confusion
from transfer_lib.models.config import RAFDB_CLASSES, make_config
from transfer_lib.train.profiles import active_profile, find_rafdb

viz.use_book_style()
torch.manual_seed(0)
profile = active_profile()
rafdb = find_rafdb()
print(viz.describe_setup(profile, rafdb))
config = make_config(size="paper")  # the paper's 112 x 112 input for the pictures

# %% [markdown]
# ## RAF-DB as distributed
#
# ```text
# RAF-DB/basic/
#   EmoLabel/list_patition_label.txt     "train_00001.jpg 5" per line (sic: "patition")
#   Image/aligned/train_00001_aligned.jpg  100 x 100, already aligned
# ```
#
# The split is in the file names: 12,271 `train_` and 3,068 `test_` images. Labels run 1..7 in
# RAF-DB's own order, which the library keeps (label k is `RAFDB_CLASSES[k - 1]`):

# %%
print({k + 1: name for k, name in enumerate(RAFDB_CLASSES)})
assert RAFDB_CLASSES[3] == "Happiness" and RAFDB_CLASSES[6] == "Neutral"

# %% [markdown]
# ## The synthetic set
#
# RAF-DB cannot be downloaded by this book (it is released on request, for research). So the
# library draws its own faces, in exactly RAF-DB's layout, so that every loader, transform and
# trainer runs unchanged on either. The set is made to be hard in TransFER's way: each expression
# is a **combination of local cues** on five parts (brows, eyes, nose, cheeks, mouth), classes
# share cues, every face has its own identity, pose, lighting and noise, and a share
# `DEFAULT_OCCLUSION` of the faces (0.3) is partly occluded. The profile decides how many images
# to draw.

# %%
start = time.perf_counter()
root = ensure_synthetic(profile.synthetic_root, train=profile.synthetic_train,
                        test=profile.synthetic_test)
seconds_taken = time.perf_counter() - start
print(f"synthetic set ({profile.synthetic_train} train "
      f"+ {profile.synthetic_test} test) at {root} in {seconds_taken:.1f} s")
labels_file = root / "basic" / "EmoLabel" / "list_patition_label.txt"
print(*labels_file.read_text().splitlines()[:3], "...", sep="\n")
train = build_dataset("synthetic", root, "train")
test = build_dataset("synthetic", root, "test")
print(f"train {len(train)}, test {len(test)}, classes {train.classes}")
assert (root / "basic" / "Image" / "aligned" / "train_00001_aligned.jpg").is_file()
assert len(train) == profile.synthetic_train and len(test) == profile.synthetic_test
assert tuple(train.classes) == RAFDB_CLASSES
assert DEFAULT_OCCLUSION == 0.3

# %% [markdown]
# The cues, as offsets from the resting face (a positive `brow_raise` raises the brows, and so
# on). Note the shared columns: Surprise and Fear both raise the brows and open the eyes and
# mouth; Anger and Disgust both lower the brows. Every class but Neutral, the resting face
# itself, has cues on at least three of the five parts, so no single part decides a class.

# %%
cues = pd.DataFrame(EXPRESSION_CUES).T.reindex(list(RAFDB_CLASSES)).fillna(0.0)
display(cues.style.format("{:+.1f}")
        .background_gradient(cmap="RdBu_r", vmin=-1.5, vmax=1.5))
parts_cued = {k: {CUE_PART[c] for c in v} for k, v in EXPRESSION_CUES.items()}
assert parts_cued["Neutral"] == set()
assert all(len(p) >= 3 for k, p in parts_cued.items() if k != "Neutral")

# %% [markdown]
# ## Imbalance
#
# RAF-DB is far from balanced: Happiness has many times as many training images as Fear (the
# ratio is printed below). The synthetic set copies RAF-DB's class proportions (the per-class training counts RAF-DB's
# distribution lists, kept in `synth.RAFDB_TRAIN_COUNTS`), so a model trained on it meets the
# same imbalance. The bar plot counts the synthetic training set the active profile uses;
# RAF-DB's own counts are plotted only where RAF-DB is found.

# %% tags=["hide-input"]
counts = np.bincount(train.targets, minlength=len(RAFDB_CLASSES))
fig, axes = plt.subplots(1, 2 if rafdb else 1, figsize=(12 if rafdb else 6.5, 2.8),
                         squeeze=False)
viz.plot_class_counts(counts, RAFDB_CLASSES, ax=axes[0, 0],
                      title=f"synthetic training set ({len(train)} images, "
                            "RAF-DB's proportions)")
if rafdb:
    real = build_dataset("rafdb", rafdb, "train")
    viz.plot_class_counts(np.bincount(real.targets, minlength=7), RAFDB_CLASSES,
                          ax=axes[0, 1], title=f"RAF-DB training set at {rafdb}")
fig.tight_layout()
plt.show()
assert counts.tolist() == class_counts(len(train))  # exact proportional counts
share = np.array(RAFDB_TRAIN_COUNTS) / sum(RAFDB_TRAIN_COUNTS)
print("RAF-DB's class shares:", dict(zip(RAFDB_CLASSES, share.round(3))))
happy, fear = RAFDB_CLASSES.index("Happiness"), RAFDB_CLASSES.index("Fear")
ratio = RAFDB_TRAIN_COUNTS[happy] / RAFDB_TRAIN_COUNTS[fear]
print(f"Happiness / Fear in RAF-DB's training set: {ratio:.1f}")
assert share.argmax() == happy and share.argmin() == fear
assert sum(RAFDB_TRAIN_COUNTS) == 12_271  # the train_ images above

# %% [markdown]
# ## Two accuracies
#
# The paper reports the **accuracy** on the test set $\mathcal{D}$, the share of images whose
# largest logit is the true class. With $\mathcal{D}_c$ the test images of class $c$, the **mean
# class accuracy** averages the accuracy within each class instead, so that every class counts
# the same ($\arg\max \hat y$ is the class of the largest logit):
#
# $$
# \mathrm{acc} = \frac{1}{|\mathcal{D}|} \sum_{(x, y) \in \mathcal{D}}
#   \big[\arg\max \hat y = y\big],
# \qquad
# \mathrm{mca} = \frac{1}{7} \sum_{c = 1}^{7} \frac{1}{|\mathcal{D}_c|}
#   \sum_{(x, y) \in \mathcal{D}_c} \big[\arg\max \hat y = c\big] .
# $$ (eq-accuracies)
#
# Under this imbalance the two tell different stories. A model that always answers
# "Happiness" has an accuracy equal to Happiness's share of the test set, but a mean class
# accuracy of $1/7$: right on every Happiness image, wrong on every other class. Below,
# {eq}`eq-accuracies` is written out for a label set with RAF-DB's training proportions and
# checked against the library's `metrics_from_confusion`, which the trainer and `eval` use.

# %%
def accuracies(predicted: np.ndarray, labels: np.ndarray, classes: int = 7):
    """(eq-accuracies): accuracy and mean class accuracy of predicted class indices."""
    correct = predicted == labels
    recalls = [correct[labels == c].mean() for c in range(classes)
               if (labels == c).any()]  # classes absent from the labels are skipped
    return correct.mean(), np.mean(recalls)


y_rafdb = np.repeat(np.arange(7), RAFDB_TRAIN_COUNTS)  # RAF-DB's training labels
always_happy = np.full_like(y_rafdb, happy)
acc, mca = accuracies(always_happy, y_rafdb)
confusion = torch.zeros(7, 7, dtype=torch.int64)
confusion[:, happy] = torch.tensor(RAFDB_TRAIN_COUNTS)  # row: true, column: predicted
library = metrics_from_confusion(confusion, RAFDB_CLASSES)
print(f'always "Happiness": accuracy {acc:.1%}, mean class accuracy {mca:.1%}')
assert np.isclose(acc, library["accuracy"])
assert np.isclose(mca, library["mean_class_accuracy"])
assert np.isclose(acc, share[happy]) and np.isclose(mca, 1 / 7)

# %% [markdown]
# This is why the later chapters report the mean class accuracy next to the accuracy.
#
# ## Faces per class
#
# Six training images per class, as the data set stores them (100 x 100 JPEG). Results computed
# on these images in later chapters are marked as synthetic.

# %% tags=["hide-input"]
per_class = 6
items, titles = [], []
for k in range(len(RAFDB_CLASSES)):
    idx = [i for i, t in enumerate(train.targets) if t == k][:per_class]
    imgs = [train.load_image(i) for i in idx]
    # tiny sets may lack a class: draw the missing faces
    imgs += [render_face(k, seed=100 + j) for j in range(per_class - len(imgs))]
    items += imgs
fig = viz.show_grid(items, ncols=per_class, size=1.05, row_labels=list(RAFDB_CLASSES),
                    suptitle="synthetic faces, one row per class")
plt.show()
assert np.asarray(train.load_image(0)).shape == (100, 100, 3)

# %% [markdown]
# ## Occlusion
#
# The paper's argument for dropping attention maps starts from faces whose parts cannot be seen:
#
# > "This can cause serious problems when some patches are invisible due to pose variations or
# > viewpoint changes." {cite:p}`xue2021transfer` (abstract)
#
# A model that relies on one part can fail when that part is hidden. The generator can hide any
# part of the *same* face (top row), and draws natural occluders on a share of its images
# (bottom row).

# %% tags=["hide-input"]
face_seed, label = 21, "Anger"
top = [render_face(label, seed=face_seed)] + [
    render_face(label, seed=face_seed, occlude_part=p) for p in PARTS]
bottom = [render_face(label, seed=face_seed, occlusion=o) for o in OCCLUDERS]
fig = viz.show_grid(top + [np.full((100, 100, 3), 255, np.uint8)] + bottom,
                    titles=["as drawn", *[f"no {p}" for p in PARTS], "", *OCCLUDERS],
                    ncols=6, size=1.3, suptitle=f"one synthetic {label} face, occluded")
fig.axes[6].set_visible(False)
plt.show()
assert not np.array_equal(top[0], top[PARTS.index("mouth") + 1])

# %% [markdown]
# ## The authors' augmentations
#
# The authors train with RandomResizedCrop (scale 0.08-1), horizontal flips, RandAugment with
# 2 operations at magnitude 5 {cite:p}`cubuk2020randaugment` in PaddleClas's version (14 ops, no
# identity, grey fill; appendix 12 lists its magnitudes) and ImageNet normalisation; evaluation only
# resizes and centre-crops to 112. Their config adds Random Erasing (p 0.5)
# {cite:p}`zhong2020erasing`, but their pipeline hands it the image in HWC order while it is
# written for CHW, so it erases a few values of the top row at most (the cell checks it on 200
# draws): in effect it is off. `train_transform(config)` builds the pipeline as they ran it from
# the model's config (`randaugment="torchvision"` and `erasing="config"` give the
# alternatives). Twelve draws on one face:

# %%
face = train.load_image(0)
tf_train, tf_eval = train_transform(config), eval_transform(config)
torch.manual_seed(0)
views = [tf_train(face) for _ in range(11)]
shown = [tf_eval(face)] + views
fig = viz.show_grid([viz.to_image(v, config.mean, config.std) for v in shown],
                    titles=["eval transform"] + [f"draw {i + 1}" for i in range(11)],
                    ncols=6, size=1.3, suptitle="train_transform on one synthetic face")
plt.show()
print(tf_train)
assert all(v.shape == (3, 112, 112) for v in shown)
erased = [AuthorsRandomErasing("hwc")(torch.ones(3, 112, 112)) == 0 for _ in range(200)]
most_erased = max(int(e.sum()) for e in erased)  # of the image's 3 x 112 x 112 values
assert not any(e[:, 1:].any() for e in erased) and most_erased > 0  # row 0 only

# %% [markdown]
# Draws can be drastic: the crop may keep as little as 8 % of the face, RandAugment may invert,
# solarize or posterize the colours, and a shear, a shift or a turn leaves grey wedges where the
# image leaves the frame. The augmentation itself can hide parts of the face, in the same spirit
# as MAD.
#
# ## The fast pipeline
#
# Decoding a JPEG and running eight PIL steps per image on the CPU can feed images more slowly
# than a GPU trains on them. `transfer_lib.data.fast` decodes every image once into a uint8 array on disk
# (`build_cache`), loads whole batches from it (`FastLoader`) and augments the batch on its device
# with the same distribution as `train_transform` (`BatchAugment`). A batch:

# %%
cache_dir = root.parent / "cache"
cache = build_cache(train, cache_dir)
loader = FastLoader(cache, batch_size=8, shuffle=True, drop_last=True, device="cpu",
                    augment=BatchAugment(config, train=True), seed=0)
x, y = next(iter(loader))
print(f"cache {tuple(cache.images.shape)} {cache.images.dtype} "
      f"-> batch x {tuple(x.shape)} {x.dtype}, y {tuple(y.shape)}")
fig = viz.show_grid([viz.to_image(v, config.mean, config.std) for v in x], ncols=8,
                    size=1.1, titles=[RAFDB_CLASSES[int(t)] for t in y],
                    suptitle="one FastLoader batch")
plt.show()
assert x.shape == (8, 3, 112, 112) and x.dtype == torch.float32 and y.dtype == torch.long

# %% [markdown]
# How fast this pipeline is against the standard `DataLoader` is measured in the
# [engineering appendix](10_engineering.ipynb).

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
display(Markdown(f"""
* RAF-DB's basic subset has {sum(RAFDB_TRAIN_COUNTS):,} training faces, 100 x 100 and aligned,
  with seven labels in RAF-DB's own order, which the library keeps (`RAFDB_CLASSES`).
* Its classes are far from balanced: Happiness has {ratio:.1f} times as many training images as
  Fear. A constant answer "Happiness" scores an accuracy of {acc:.1%} but a mean class accuracy
  of {mca:.1%} ({{eq}}`eq-accuracies`), which is why the book reports both.
* The synthetic set has RAF-DB's layout and class proportions ({len(train):,} training and
  {len(test):,} test faces at this profile); every class but Neutral has cues on at least three
  of the {len(PARTS)} parts, some shared between classes, and a share of {DEFAULT_OCCLUSION} of
  the faces is occluded.
* `train_transform` is the authors' augmentation, built from the model's config; some of its
  draws hide parts of the face, in the spirit of MAD. Its Random Erasing, as the authors ran it,
  touched only the top row of the image in 200 draws, at most {most_erased} values.
"""))

# %% [markdown]
#
# ## Exercises
#
# 1. Use `accuracies` on a model that always answers "Neutral". Which of the two numbers of
#    {eq}`eq-accuracies` changes from the "Happiness" case, and why does the other not?
# 2. A model is right on every image except the Fear images, which it calls Surprise. Predict
#    its accuracy and mean class accuracy on RAF-DB's training proportions with
#    {eq}`eq-accuracies`, then check with `accuracies`.
# 3. Find the two classes whose cue vectors in `cues` are closest (Euclidean distance between
#    rows) and draw one face of each with `render_face(label, seed=0)`. Which part must a model
#    see to tell them apart? Hide it (`occlude_part=...`) and look again.
# 4. Random Erasing as the config reads it (`train_transform(config, erasing="config")`, on the
#    CHW image) writes 0 after normalisation. Over 200 draws on one face, measure the share of
#    pixels with all three channels exactly 0 and compare it with
#    $p \cdot \mathbb{E}[\text{area}] = 0.5 \times (0.02 + 0.4) / 2$. Why might the measured
#    share be a little lower? (Hint: a try whose rectangle does not fit is drawn again, at most
#    a few times.)
# 5. A small experiment at the `cpu` profile: train the CNN baseline without class-balanced
#    sampling, at the budget of the committed ablation (3 epochs; the provenance line of
#    `book/results/ablation-cpu.md` gives the CPU and the time its runs took),
#
#    ```bash
#    python -m transfer_lib train --profile cpu --variant ir50 --balance none \
#        --epochs 3 --warmup-epochs 1 --eval-every 3 --out runs/ir50-no-balance
#    ```
#
#    and compare `accuracy` and `mean_class_accuracy` in `runs/ir50-no-balance/summary.json`
#    with the `ir50` row of `book/results/ablation-cpu.md` (same budget, balanced sampling).
#    Which of the two accuracies moves more?
