# %% [markdown]
# # 2. Data: RAF-DB and a synthetic stand-in
#
# TransFER's headline number, 90.91 % {cite:p}`xue2021transfer`, is measured on RAF-DB
# {cite:p}`li2017rafdb`, the Real-world Affective Faces Database: about 30,000 faces from the
# internet, each labelled by some 40 annotators. Its *basic* subset, used by the paper, has 15,339
# aligned faces with one of seven labels. This chapter shows its layout and its imbalance, builds
# a synthetic data set in the same layout for readers without it, applies the authors'
# augmentations to a face, and measures the fast data pipeline the trainer uses.

# %% [setup]

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from transfer_lib import viz
from transfer_lib.data import build_dataset, ensure_synthetic, eval_transform, train_transform
from transfer_lib.data.fast import BatchAugment, FastLoader, build_cache
from transfer_lib.data.synth import (
    EXPRESSION_CUES,
    OCCLUDERS,
    PARTS,
    RAFDB_TRAIN_COUNTS,
    class_counts,
    render_face,
)
from transfer_lib.models.config import RAFDB_CLASSES, make_config
from transfer_lib.profiles import active_profile, find_rafdb

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
# share cues, every face has its own identity, pose, lighting and noise, and about 30 % of the
# faces are partly occluded. The profile decides how many images to draw.

# %%
start = time.perf_counter()
root = ensure_synthetic(profile.synthetic_root, train=profile.synthetic_train,
                        test=profile.synthetic_test)
print(f"synthetic set ({profile.synthetic_train} train + {profile.synthetic_test} test) at {root} "
      f"in {time.perf_counter() - start:.1f} s")
labels_file = root / "basic" / "EmoLabel" / "list_patition_label.txt"
print(*labels_file.read_text().splitlines()[:3], "...", sep="\n")
train = build_dataset("synthetic", root, "train")
test = build_dataset("synthetic", root, "test")
print(f"train {len(train)}, test {len(test)}, classes {train.classes}")
assert (root / "basic" / "Image" / "aligned" / "train_00001_aligned.jpg").is_file()
assert len(train) == profile.synthetic_train and len(test) == profile.synthetic_test
assert tuple(train.classes) == RAFDB_CLASSES

# %% [markdown]
# The cues, as offsets from the resting face (a positive `brow_raise` raises the brows, and so
# on). Note the shared columns: Surprise and Fear both raise the brows and open the eyes and
# mouth; Anger and Disgust both lower the brows.

# %%
cues = pd.DataFrame(EXPRESSION_CUES).T.reindex(list(RAFDB_CLASSES)).fillna(0.0)
display(cues.style.format("{:+.1f}").background_gradient(cmap="RdBu_r", vmin=-1.5, vmax=1.5))

# %% [markdown]
# ## Imbalance
#
# RAF-DB is far from balanced: Happiness has about 17 times as many training images as Fear. The
# synthetic set copies RAF-DB's class proportions (the per-class training counts RAF-DB's
# distribution lists, kept in `synth.RAFDB_TRAIN_COUNTS`), so a model trained on it meets the
# same imbalance. The bar plot counts the synthetic training set the active profile uses;
# RAF-DB's own counts are plotted only where RAF-DB is found.

# %% tags=["hide-input"]
counts = np.bincount(train.targets, minlength=len(RAFDB_CLASSES))
fig, axes = plt.subplots(1, 2 if rafdb else 1, figsize=(12 if rafdb else 6.5, 2.8), squeeze=False)
viz.plot_class_counts(counts, RAFDB_CLASSES, ax=axes[0, 0],
                      title=f"synthetic training set ({len(train)} images, RAF-DB's proportions)")
if rafdb:
    real = build_dataset("rafdb", rafdb, "train")
    viz.plot_class_counts(np.bincount(real.targets, minlength=7), RAFDB_CLASSES, ax=axes[0, 1],
                          title=f"RAF-DB training set at {rafdb}")
fig.tight_layout()
plt.show()
assert counts.tolist() == class_counts(len(train))  # exact proportional counts
share = np.array(RAFDB_TRAIN_COUNTS) / sum(RAFDB_TRAIN_COUNTS)
print("RAF-DB's class shares:", dict(zip(RAFDB_CLASSES, share.round(3))))
assert share.argmax() == RAFDB_CLASSES.index("Happiness") and share.argmin() == RAFDB_CLASSES.index("Fear")

# %% [markdown]
# With this imbalance, a model that always answers "Happiness" is right 39 % of the time; this
# is why the later chapters report the mean per-class accuracy next to the overall one.
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
    imgs += [render_face(k, seed=100 + j) for j in range(per_class - len(imgs))]  # tiny sets
    items += imgs
fig = viz.show_grid(items, ncols=per_class, size=1.05, row_labels=list(RAFDB_CLASSES),
                    suptitle="synthetic faces, one row per class")
plt.show()
assert np.asarray(train.load_image(0)).shape == (100, 100, 3)

# %% [markdown]
# ## Occlusion
#
# The paper's argument for dropping attention maps is that "some facial parts may be occluded"
# {cite:p}`xue2021transfer`: a model that relies on one part fails when it is hidden. The
# generator can hide any part of the *same* face (top row), and draws natural occluders on a
# share of its images (bottom row).

# %% tags=["hide-input"]
face_seed, label = 21, "Anger"
top = [render_face(label, seed=face_seed)] + [render_face(label, seed=face_seed, occlude_part=p)
                                              for p in PARTS]
bottom = [render_face(label, seed=face_seed, occlusion=o) for o in OCCLUDERS]
fig = viz.show_grid(top + [np.full((100, 100, 3), 255, np.uint8)] + bottom,
                    titles=["as drawn"] + [f"no {p}" for p in PARTS] + [""] + list(OCCLUDERS),
                    ncols=6, size=1.3, suptitle=f"one synthetic {label} face, occluded")
fig.axes[6].set_visible(False)
plt.show()
assert not np.array_equal(top[0], top[PARTS.index("mouth") + 1])

# %% [markdown]
# ## The authors' augmentations
#
# The authors train with RandomResizedCrop (scale 0.08-1), horizontal flips, RandAugment with
# 2 operations at magnitude 5 {cite:p}`cubuk2020randaugment`, ImageNet normalisation and Random
# Erasing (p 0.5) {cite:p}`zhong2020erasing`; evaluation only resizes and centre-crops to 112.
# `train_transform(config)` builds that pipeline from the model's config. Twelve draws on one face:

# %%
face = train.load_image(0)
tf_train, tf_eval = train_transform(config), eval_transform(config)
torch.manual_seed(0)
views = [tf_train(face) for _ in range(11)]
shown = [tf_eval(face)] + views
fig = viz.show_grid([viz.to_image(v, config.mean, config.std) for v in shown],
                    titles=["eval transform"] + [f"train draw {i + 1}" for i in range(11)],
                    ncols=6, size=1.3, suptitle="train_transform on one synthetic face")
plt.show()
print(tf_train)
assert all(v.shape == (3, 112, 112) for v in shown)

# %% [markdown]
# Some draws are drastic (a crop of 8 % of the face; a rectangle erased to 0 after normalisation,
# that is to the mean colour, grey): the
# augmentation itself hides parts of the face, in the same spirit as MAD.
#
# ## The fast pipeline
#
# Decoding a JPEG and running eight PIL steps per image on the CPU would starve a GPU.
# `transfer_lib.data.fast` decodes every image once into a uint8 array on disk
# (`build_cache`), loads whole batches from it (`FastLoader`) and augments the batch on its device
# with the same distribution as `train_transform` (`BatchAugment`). A batch:

# %%
cache_dir = root.parent / "cache"
cache = build_cache(train, cache_dir)
loader = FastLoader(cache, batch_size=8, shuffle=True, drop_last=True, device="cpu",
                    augment=BatchAugment(config, train=True), seed=0)
x, y = next(iter(loader))
print(f"cache {tuple(cache.images.shape)} {cache.images.dtype} -> batch x {tuple(x.shape)} "
      f"{x.dtype}, y {tuple(y.shape)}")
fig = viz.show_grid([viz.to_image(v, config.mean, config.std) for v in x], ncols=8, size=1.1,
                    titles=[RAFDB_CLASSES[int(t)] for t in y], suptitle="one FastLoader batch")
plt.show()
assert x.shape == (8, 3, 112, 112) and x.dtype == torch.float32 and y.dtype == torch.long

# %% [markdown]
# And its speed against the standard `DataLoader` with the per-image transform, for a few seconds
# per path on this machine, in one process (`python -m transfer_lib bench data` measures the same
# with worker processes, on the full synthetic set or RAF-DB). On a small CPU the two paths are
# close, since both do the same arithmetic on the same cores; the fast path pays off on a GPU,
# where `BatchAugment` runs on the device and the CPU only gathers uint8 rows.

# %%
def images_per_second(batches, seconds):
    """Images per second drawn from the re-iterable ``batches`` during ``seconds``."""
    next(iter(batches))  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for xb, _ in batches:
            n += len(xb)
            if time.perf_counter() - t0 >= seconds:
                break
    return n / (time.perf_counter() - t0)

seconds = {"smoke": 2.0, "cpu": 5.0}.get(profile.name, 10.0)
standard = DataLoader(build_dataset("synthetic", root, "train", transform=tf_train),
                      batch_size=16, shuffle=True, num_workers=0)
fast = FastLoader(cache, batch_size=16, shuffle=True, device="cpu",
                  augment=BatchAugment(config, train=True))
speed = pd.Series({"standard DataLoader + train_transform": images_per_second(standard, seconds),
                   "FastLoader + BatchAugment (CPU)": images_per_second(fast, seconds)},
                  name="images / s (1 process, synthetic set)")
display(speed.round(1).to_frame())
assert (speed > 0).all()
