"""The pre-registered suite: its design, the statistics of its decision rule, the negative
control's shuffled labels (the runs themselves are made by ``python -m transfer_lib.book.suite``)."""

import math

import numpy as np
import pytest

from transfer_lib.book import suite
from transfer_lib.book.ablate import t_quantile


def test_main_design_has_controls_unique_keys_and_five_seeds_per_compared_row():
    tune = [dict(row=row, model_overrides={"mad_p": p}, val_mca=50 + 10 * p + (row == "local_mad"))
            for row in suite.REGULARISERS for p in suite.DROP_RATES]
    specs = suite.design("main", tune)
    keys = [s.key for s in specs]
    assert len(keys) == len(set(keys)) and len(specs) >= 50
    assert {s.control for s in specs} == {None, "positive", "negative"}
    hyps = suite.HYPOTHESES + suite._h4(suite.chosen_rates(tune))
    prefixes = {k.rsplit("/seed", 1)[0] for k in keys}
    for h in hyps:  # every compared row exists with the confirmatory seeds
        for side in (x for part in (h.a, h.b) for x in part.split(" - ")):
            assert side in prefixes, side
            assert sorted(s.seed for s in specs if s.key.startswith(side + "/seed")) == \
                list(suite.SEEDS)
    # without every tuning run the comparators' rows are not planned yet
    assert not any(s.group == "H4" for s in suite.design("main", tune[:-1]))
    for c in suite.CONTROLS:
        assert all(p in prefixes for p in c["runs"]), c["id"]
    assert all(s.seed not in suite.SEEDS for s in suite.design("pilot"))


def test_chosen_rates_take_the_best_validation_and_the_smaller_rate_on_ties():
    tune = [dict(row=row, model_overrides={"mad_p": p}, val_mca={0.2: 60, 0.4: 70, 0.6: 70}[p])
            for row in suite.REGULARISERS for p in suite.DROP_RATES]
    assert suite.chosen_rates(tune) == dict.fromkeys(suite.REGULARISERS, 0.4)
    arm = suite._rate_arm("local_dropout", 0.4)
    assert arm["model_overrides"] == {"mad_p": 0.4, "map_rescale": False}
    assert suite._rate_arm("local_mad", 0.4)["model_overrides"] == {"mad_p": 0.4}


def test_holm_adjusts_step_down():
    adj = suite.holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adj == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})


def test_t_p_value_matches_the_quantile():
    assert suite.t_two_sided_p(t_quantile(0.975, 4), 4) == pytest.approx(0.05, abs=1e-9)


def _runs(prefix, values):
    return [dict(key=f"{prefix}/seed{s}", seed=s, test_mca=v) for s, v in enumerate(values)]


def test_an_interaction_is_a_difference_of_differences():
    runs = (_runs("r/a", [10, 20]) + _runs("d/a", [1, 2]) + _runs("r/b", [5, 5])
            + _runs("d/b", [0, 0]))
    assert suite._by_seed(runs, "r/a - d/a", "test_mca") == {0: 9, 1: 18}
    h = suite.Hypothesis("i", "", "r/a - d/a", "r/b - d/b", "test_mca", 1.0)
    assert suite.analyse(runs, [h])[0]["differences"] == [4, 13]


def test_verdicts_follow_the_registered_rule():
    h = [suite.Hypothesis("big", "", "x/a", "x/b", "test_mca", 2.0),
         suite.Hypothesis("none", "", "y/a", "y/b", "test_mca", 2.0),
         suite.Hypothesis("noisy", "", "z/a", "z/b", "test_mca", 2.0)]
    runs = (_runs("x/a", [80, 81, 82, 80, 81]) + _runs("x/b", [70, 70.5, 71, 69.5, 70])
            + _runs("y/a", [70, 70.2, 69.9, 70.1, 70]) + _runs("y/b", [70, 70, 70, 70, 70.1])
            + _runs("z/a", [80, 60, 75, 65, 72]) + _runs("z/b", [70, 70, 70, 70, 70]))
    res = {r["id"]: r for r in suite.analyse(runs, h)}
    assert res["big"]["verdict"] == "supported" and res["big"]["estimate"] == pytest.approx(10.6)
    assert res["none"]["verdict"] == "not supported"  # interval below the smallest effect
    assert res["noisy"]["verdict"] == "inconclusive"
    # the interval is at the family's Bonferroni level
    d = res["big"]["differences"]
    half = t_quantile(1 - 0.05 / 6, 4) * np.std(d, ddof=1) / math.sqrt(5)
    assert res["big"]["high"] - res["big"]["estimate"] == pytest.approx(half)


def test_shuffled_copy_permutes_train_and_val_labels_only(tmp_path):
    from transfer_lib.data.synth import generate

    src = generate(tmp_path / "rel", train=40, test=8, val=8, seed=0, workers=1,
                   task="relational")
    dst = suite.shuffled_copy(src, tmp_path / "shuf")
    read = lambda r: dict(line.split() for line in  # noqa: E731
                          (r / "basic/EmoLabel/list_patition_label.txt").read_text().splitlines())
    a, b = read(src), read(dst)
    assert a.keys() == b.keys()
    for split in ("train", "val", "test"):
        sa = [a[k] for k in a if k.startswith(split)]
        sb = [b[k] for k in b if k.startswith(split)]
        assert sorted(sa) == sorted(sb)  # the same labels, permuted
        assert (sa == sb) == (split == "test")
    assert suite.shuffled_copy(src, tmp_path / "shuf") == dst  # reused


def test_controls_are_judged_as_registered():
    n = len(suite.SEEDS)
    runs = (_runs("relational/ir50", [90, 92, 91, 93, 90, 91, 92, 90][:n])
            + [dict(key=f"occlusion-planted/local/seed{s}", seed=s, occluded_mca=70 + s % 3)
               for s in suite.SEEDS]
            + [dict(key=f"occlusion-shift/local/seed{s}", seed=s, occluded_mca=71 - s % 2)
               for s in suite.SEEDS])
    res = {c["id"]: c for c in suite.control_results(runs)}
    assert res["C1"]["passed"] is True and res["C1"]["complete"]
    assert res["C2"]["passed"] is False  # no clear gain from planting: could not see one
    assert [c["id"] for c in suite.failed_positive_controls(runs)] == ["C2"]
    assert res["C3"]["passed"] is None and not res["C3"]["complete"]
    # a control is judged only once all its runs are in
    assert suite.control_results(runs[1:])[0]["passed"] is None


def test_results_hold_every_part_and_the_forest_plot_draws_them():
    import matplotlib

    matplotlib.use("Agg")
    tune = [dict(key=f"additive/{row}+p{p:g}/seed100", row=row, model_overrides={"mad_p": p},
                 val_mca=80 + p, stalled=False)
            for row in suite.REGULARISERS for p in suite.DROP_RATES]
    specs = suite.design("main", tune)
    rng = np.random.default_rng(0)
    runs = [dict(key=s.key, seed=s.seed, control=s.control, test_mca=85 + rng.normal(),
                 occluded_mca=70 + rng.normal(), gap=11.0, stalled=False) for s in specs]
    res = suite.results(runs, tune)
    assert res["complete"] and not res["missing"] and res["made"] == res["planned"]
    assert res["chosen_rates"] == dict.fromkeys(suite.REGULARISERS, 0.6)
    assert [h["id"] for h in res["hypotheses"]] == ["H1", "H2a", "H2b", "H3", "H4a", "H4b", "H4c"]
    assert all(h["verdict"] in ("supported", "not supported", "inconclusive")
               for h in res["hypotheses"])
    assert res["stalls"] == []
    runs[0]["stalled"] = True
    assert suite.results(runs, tune)["stalls"] == [runs[0]["key"]]
    for r in runs:  # C4's runs must stall; every other run counts, negative controls' too
        r["stalled"] = r["key"].startswith(("relational-shuffled/", "additive/ir50/"))
    assert suite.results(runs, tune)["stalls"] == [
        r["key"] for r in runs if r["key"].startswith("additive/ir50/")]
    ax = suite.plot_forest(res)
    assert len(ax.get_yticklabels()) == 7
    page = suite.results_markdown(res)
    assert "(complete)" in page and all(f"| {h} |" in page for h in ("H1", "H4c", "C5"))


def test_rerun_is_checked_exactly_when_pinned_and_by_distribution_otherwise(monkeypatch):
    from transfer_lib.utils.kernels import provenance

    runs = _runs("relational/ir50", [90.0, 91.0, 92.0, 90.5, 91.5, 90.0, 92.0, 91.0])
    pinned = dict(provenance(), kernels="pinned")
    rec = dict(key="relational/ir50/seed2", seed=2, test_mca=92.0, provenance=pinned)
    monkeypatch.setattr(suite, "stem_reproduced", lambda: True)
    assert suite.check_rerun(rec, runs)["mode"] == "exact"
    assert not suite.check_rerun({**rec, "test_mca": 91.9}, runs)["ok"]
    monkeypatch.setattr(suite, "stem_reproduced", lambda: False)
    other = suite.check_rerun({**rec, "test_mca": 91.9}, runs)
    assert other["mode"] == "distribution" and other["ok"] and "stem" in other["why"]
    with pytest.raises(KeyError, match="no run"):
        suite.find_spec("relational/nonsense/seed0")
    assert suite.find_spec("relational/ir50/seed3").control == "positive"


@pytest.mark.parametrize("argv, words", [
    # "0 run(s) made" and exit 0; --list printed every run whatever --only said
    (["--stage", "pilot", "--only", "zzzz"], "--only 'zzzz' matches no run of --stage pilot: "
                                              "list the stage's run keys with --stage pilot --list"),
    (["--stage", "pilot", "--list", "--only", "zzzz"], "--only 'zzzz' matches no run"),
    (["--stage", "pilot", "--runs", "-1"], "argument --runs: expected an integer, 1 or more"),
    # "--train N (N >= 7) is for the pilot only" said of the pilot
    (["--stage", "pilot", "--train", "0"], "argument --train: expected an integer, 7 or more"),
    (["--stage", "tune", "--train", "50"], "--train is for the pilot only (--stage pilot): "
                                           "--stage tune uses the registered sizes"),
])
def test_main_refuses_what_it_cannot_do(argv, words, monkeypatch, capsys):
    monkeypatch.setattr(suite, "run_stage", lambda *a, **k: pytest.fail("ran the stage"))
    with pytest.raises(SystemExit) as exit_:
        suite.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and words in err, err


def test_list_honours_only(capsys):
    assert suite.main(["--stage", "pilot", "--list", "--only", "seed901"]) == 0
    lines = capsys.readouterr().out.splitlines()
    keys = [s.key for s in suite.design("pilot") if "seed901" in s.key]
    assert lines and len(lines) == len(keys) and all("seed901" in line for line in lines)
