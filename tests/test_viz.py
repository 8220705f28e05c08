"""The book's plotting helpers: they draw what they say, on the Agg backend, without warnings."""

from __future__ import annotations

import os
import warnings

import matplotlib  # noqa: E402  (the viz extra; installed by make setup)
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from transfer_lib.book import viz  # noqa: E402
from transfer_lib.models.config import IMAGENET_MEAN, IMAGENET_STD, RAFDB_CLASSES, make_config  # noqa: E402
from transfer_lib.models.stem import IR50Stem  # noqa: E402
from transfer_lib.train.profiles import get_profile  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a figure helper must not warn
        yield
    plt.close("all")


def test_to_image_undoes_normalisation():
    img = torch.rand(3, 8, 8)
    x = (img - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    out = viz.to_image(x, IMAGENET_MEAN, IMAGENET_STD)
    assert out.shape == (8, 8, 3)
    assert np.allclose(out, img.permute(1, 2, 0).numpy(), atol=1e-5)
    assert viz.to_image(np.full((4, 4, 3), 255, np.uint8)).max() == 1.0


def test_show_grid_images_and_maps():
    items = [np.zeros((10, 10, 3), np.uint8), torch.rand(5, 5), torch.rand(3, 6, 6)]
    fig = viz.show_grid(items, titles=["a", "b", "c"], ncols=2, cmap="magma", colorbar=True,
                        row_labels=["r1", "r2"], suptitle="t")
    assert len([ax for ax in fig.axes if ax.get_visible() and ax.images]) == 3


def test_overlay_shape_and_range():
    out = viz.overlay(np.zeros((20, 20, 3), np.uint8), torch.rand(4, 4))
    assert out.shape == (20, 20, 3) and 0.0 <= out.min() and out.max() <= 1.0


def test_word_list_joins_for_a_sentence():
    assert viz.word_list([]) == "none"
    assert viz.word_list([], empty="nothing") == "nothing"
    assert viz.word_list(["a"]) == "a"
    assert viz.word_list(["a", "b"]) == "a and b"
    assert viz.word_list(["a", "b", "c"]) == "a, b and c"
    assert viz.word_list(["a", "b"], last="or") == "a or b"


def test_plot_class_counts_and_mask_and_pipeline():
    ax = viz.plot_class_counts([5, 1, 2, 9, 3, 2, 4], RAFDB_CLASSES, title="x")
    assert len(ax.patches) == len(RAFDB_CLASSES)
    viz.plot_mask(torch.tensor([[1, 0], [1, 1]]), title="m")
    ax = viz.draw_pipeline(config=make_config(size="tiny"))
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "LANet 1" in texts and "MSAD" in texts and "64x64" in texts


def test_record_shapes_in_order_and_hooks_removed():
    stem = IR50Stem((8, 16), (1, 1)).eval()
    shapes = viz.record_shapes(stem, torch.zeros(1, 3, 16, 16),
                               {"input": stem.input_layer, "last": stem.body[-1]})
    assert shapes == [("input", (1, 8, 16, 16)), ("last", (1, 16, 4, 4))]
    assert not stem.body[-1]._forward_hooks


def test_describe_setup_names_profile_and_data(tmp_path):
    text = viz.describe_setup(get_profile("smoke"), None)
    assert "smoke" in text and "synthetic" in text
    assert str(tmp_path) in viz.describe_setup(get_profile("cpu"), tmp_path)


def test_find_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("X_WEIGHTS", raising=False)
    assert viz.find_weights("surely-not-here.pth", "X_WEIGHTS") is None
    f = tmp_path / "w.pth"
    f.write_bytes(b"0")
    monkeypatch.setenv("X_WEIGHTS", os.fspath(f))
    assert viz.find_weights("w.pth", "X_WEIGHTS") == f


# --- chapters 6-9 helpers -------------------------------------------------------------------
def test_attention_rollout_identity_and_product():
    b, h, n = 2, 3, 5
    eye = torch.eye(n).expand(b, h, n, n)
    assert torch.allclose(viz.attention_rollout([eye, eye]), torch.eye(n).expand(b, n, n))
    a1 = torch.rand(b, h, n, n).softmax(-1)
    a2 = torch.rand(b, h, n, n).softmax(-1)
    r = viz.attention_rollout([a1, a2], residual=False)
    assert torch.allclose(r, a2.mean(1) @ a1.mean(1), atol=1e-6)
    r = viz.attention_rollout([a1, a2])
    assert torch.allclose(r.sum(-1), torch.ones(b, n), atol=1e-5)  # rows stay distributions
    with pytest.raises(ValueError):
        viz.attention_rollout([])


def test_token_reshape_transform_drops_cls():
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)  # 1 cls + 2x2 tokens, C=3
    out = viz.token_reshape_transform(2)(x)
    assert out.shape == (2, 3, 2, 2)
    assert torch.equal(out[0, :, 0, 1], x[0, 2])  # token 2 = grid position (0, 1)
    with pytest.raises(ValueError):
        viz.token_reshape_transform(3)(x)


def test_curves_confusion_and_run_helpers(tmp_path):
    metrics = [{"epoch": 1, "loss": 2.0, "train_accuracy": 0.2, "test_accuracy": 0.3},
               {"epoch": 2, "loss": 1.5, "train_accuracy": 0.4}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(__import__("json").dumps(m) for m in metrics))
    assert viz.read_metrics(tmp_path) == metrics
    fig = viz.plot_run_curves(metrics, chance=0.25, title="t")
    assert len(fig.axes) == 2
    assert [len(line.get_xdata()) for line in fig.axes[1].lines[:2]] == [2, 1]  # train, test
    ax = viz.plot_confusion([[3, 1], [0, 0]], ["a", "b"], title="c")
    assert [t.get_text() for t in ax.texts] == ["75", "25", "0", "0"]
    smoke = get_profile("smoke")
    assert viz.book_run_dir("transfer", smoke).parts[-3:] == ("book", "smoke", "transfer")
    assert viz.transfer_run_config(smoke)["profile"] == "smoke"
    assert "data" not in viz.transfer_run_config(smoke, rafdb=tmp_path)  # synthetic below paper
    assert viz.transfer_run_config(get_profile("paper"), rafdb=tmp_path)["data"] == str(tmp_path)


def test_markdown_rows_writes_a_table_and_escapes_bars():
    text = viz.markdown_rows(["row", "value"], [["a|b", 1.5], ["c", None]])
    assert text.splitlines() == ["| row | value |", "| --- | --- |", "| a\\|b | 1.5 |",
                                 "| c | None |"]
