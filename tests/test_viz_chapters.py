"""The helpers chapters 3-5 and 8 call without teaching them (transfer_lib.book.viz, last section):
they compute and draw what the chapters once did inline, on the Agg backend, without warnings."""

from __future__ import annotations

import matplotlib  # noqa: E402  (the viz extra; installed by make setup)
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from transfer_lib import build_model  # noqa: E402
from transfer_lib.book import viz
from transfer_lib.book.attention import load_attention, load_maps  # noqa: E402
from transfer_lib.data.synth import most_frequent_class_accuracy, render_face  # noqa: E402
from transfer_lib.data.transforms import eval_transform  # noqa: E402
from transfer_lib.models import local_cnn  # noqa: E402

COMMITTED = viz.project_root() / "book" / "results" / "attention-cpu"


from tests.test_viz import _close_figures  # noqa: E402,F401  (autouse: no warning, figures closed)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build_model("transfer", size="tiny").eval()
    nn.init.normal_(model.head.weight, std=0.5)  # the authors' zero head predicts uniformly
    return model


def test_randomise_batchnorm_is_seeded_and_leaves_other_layers():
    def make():
        return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))

    a, b = make(), make()
    b.load_state_dict(a.state_dict())
    conv = a[0].weight.clone()
    assert viz.randomise_batchnorm(a, torch.Generator().manual_seed(1)) is a
    viz.randomise_batchnorm(b, torch.Generator().manual_seed(1))
    assert torch.equal(a[1].running_mean, b[1].running_mean) and a[1].running_mean.abs().sum() > 0
    assert (a[1].running_var >= 0.5).all() and torch.equal(a[0].weight, conv)
    x = torch.randn(2, 3, 5, 5)
    assert not torch.allclose(a.eval()(x), nn.Sequential(a[0], nn.Identity())(x))


def test_show_regularisers_one_row_per_regulariser():
    maps = torch.rand(2, 6, 6)
    regs = {n: local_cnn.make_map_regulariser(n, 0.6) for n in ("mad", "dropout", "spatial")}
    fig = viz.show_regularisers(maps, regs, draws=3)
    assert len(fig.axes) == 3 * 3 * 2
    assert all(r.training for r in regs.values())


def test_plot_msad_modes_draws_both_masks():
    head = torch.zeros(6, 4, dtype=torch.bool)
    head[1, 2] = True
    token = torch.zeros(6, 10, dtype=torch.bool)
    token[1, 3] = True
    fig = viz.plot_msad_modes(head, token)
    assert len(fig.axes) == 2 and "0-3" in fig.axes[1].get_title()


def test_diversity_verdict_reports_the_committed_study():
    committed = load_attention(COMMITTED)
    steps = viz.diversity_steps(committed)
    assert ("local -> local_mad", "overlap") in steps.index
    mad = steps.loc[("local -> local_mad", "overlap")]
    line = most_frequent_class_accuracy(committed["num_samples"])
    verdict = viz.diversity_verdict(committed, line)
    assert f"{mad['difference']:+.3f}" in verdict["text"]
    runs = [run for r in committed["rows"] if r["row"] in ("local", "local_mad")
            for run in r["runs"]]
    assert verdict["runs"] == len(runs)
    assert verdict["stalled"] == sum(run["metrics"]["accuracy"] <= line for run in runs)
    made_diverse = mad["verdict"] == "interval below 0"
    assert ("did not make" in verdict["text"]) != made_diverse
    assert verdict["lean"] in verdict["text"]


def test_the_attention_figures_draw_the_committed_maps():
    committed, maps = load_attention(COMMITTED), load_maps(COMMITTED)
    rows = ("vit_fer", "local", "local_mad", "transfer")
    fig = viz.show_ablation_maps(maps, committed, rows, seed=0)
    assert len(fig.axes) == len(maps["faces"]) * (1 + 1 + 3 * 3)
    per_run = pd.DataFrame([{"row": r["row"], "seed": run["seed"], **run["metrics"]}
                            for r in committed["rows"] if r["has_lanets"] for run in r["runs"]])
    fig = viz.plot_branch_diversity(per_run, committed["chance_overlap"], title="t")
    assert len(fig.axes) == 2


def test_switch_predictions_all_on_is_the_model_and_removes_its_hooks(tiny):
    x = torch.randn(3, 3, tiny.config.input_size, tiny.config.input_size)
    b, h = len(tiny.local_cnn.lanets), tiny.config.num_heads
    probs, fused = viz.switch_predictions(tiny, x, torch.ones(3, b), torch.ones(3, h))
    with torch.no_grad():
        torch.testing.assert_close(probs, tiny(x).softmax(1))
    off, _ = viz.switch_predictions(tiny, x, torch.zeros(3, b), torch.ones(3, h))
    assert not torch.allclose(off, probs)
    assert fused.shape == (3, tiny.config.token_grid, tiny.config.token_grid)
    assert all(not m._forward_hooks for m in tiny.modules())


def test_explorer_states_cover_every_switch_state(tiny):
    names = tiny.config.class_names[:1]
    e = viz.explorer_states(tiny, names, eval_transform(tiny.config), faces_per_class=1)
    switches = len(tiny.local_cnn.lanets) + tiny.config.num_heads
    assert len(e["switches"]) == switches and e["true_classes"] == [0]
    assert e["probabilities"].shape == (1, 2 ** switches, tiny.config.num_classes)
    assert len(e["pictures"][0]) == 2 ** len(tiny.local_cnn.lanets)


def test_show_mad_msad_drop_finds_a_seed_and_restores_evaluation(tiny):
    transform = eval_transform(tiny.config)
    face = render_face("Happiness", seed=0, nuisance=False)
    x = transform(Image.fromarray(face))[None]
    with torch.no_grad():
        before = tiny.forward_with_details(x)
    drop = viz.show_mad_msad_drop(tiny, face, x, before)
    assert drop["maps_zeroed"] == 1 and drop["heads_uniform"] == 1
    assert not any(m.training for m in tiny.modules())
    assert len(plt.get_fignums()) == 2
