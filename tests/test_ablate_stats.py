import math
import re

import pytest

from transfer_lib.book.ablate import (
    COMPARISONS,
    DEFAULT_SEEDS,
    PAPER_ROWS,
    ROWS,
    compare,
    markdown_table,
    paired_difference,
    parse_seeds,
    seed_plan,
    t_quantile,
    verdict,
)
from transfer_lib.utils.errors import TransferError

# t_{0.975, df} for df = 1..30, as printed in statistics tables (3 decimals)
T_TABLE = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
           2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
           2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def test_t_quantile_matches_the_table():
    for df, t in enumerate(T_TABLE, start=1):
        assert t_quantile(0.975, df) == pytest.approx(t, abs=5e-4)
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(0.475 * math.pi), rel=1e-10)  # Cauchy
    # df 2: P(|T| < t) = t / sqrt(t^2 + 2), so t = p * sqrt(2 / (1 - p^2)) with p = 0.95
    assert t_quantile(0.975, 2) == pytest.approx(0.95 * math.sqrt(2 / (1 - 0.95**2)), rel=1e-10)
    assert t_quantile(0.975, 10_000) == pytest.approx(1.959963984540054, abs=1e-3)  # the normal
    with pytest.raises(ValueError):
        t_quantile(0.4, 3)
    with pytest.raises(ValueError):
        t_quantile(0.975, 0)


def test_t_quantile_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 7, 29, 30, 31, 100):
        for q in (0.6, 0.9, 0.975, 0.995):
            assert t_quantile(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-9)


def test_paired_difference_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, t_{0.975, 2} = 4.302653, half width 4.302653 / sqrt(3)
    d = paired_difference([2, 4, 6], [1, 2, 3])
    assert d["n"] == 3 and d["mean"] == pytest.approx(2.0) and d["sd"] == pytest.approx(1.0)
    assert d["low"] == pytest.approx(-0.484138, abs=1e-6)
    assert d["high"] == pytest.approx(4.484138, abs=1e-6)
    assert verdict(d) == "interval includes 0"
    # differences 1.0, 1.2, 0.8, 1.1, 0.9: mean 1, sd sqrt(0.1 / 4) = 0.158114,
    # t_{0.975, 4} = 2.776445, half width 2.776445 * 0.158114 / sqrt(5) = 0.196324
    d = paired_difference([11.0, 11.2, 10.8, 11.1, 10.9], [10.0] * 5)
    assert d["sd"] == pytest.approx(0.158114, abs=1e-6)
    assert (d["low"], d["high"]) == pytest.approx((0.803676, 1.196324), abs=1e-6)
    assert verdict(d) == "interval above 0"
    assert verdict(paired_difference([10.0] * 5, [11.0, 11.2, 10.8, 11.1, 10.9])) == \
        "interval below 0"
    one = paired_difference([3.0], [1.0])
    assert one == {"n": 1, "mean": 2.0, "sd": None, "low": None, "high": None}
    assert verdict(one).startswith("no interval")
    with pytest.raises(ValueError, match="same length"):
        paired_difference([1, 2], [1])


def test_seed_plan():
    plan = seed_plan()
    assert list(plan) == list(ROWS) and list(ROWS)[0] == "ir50"
    for name in ("ir50", *PAPER_ROWS):
        assert plan[name] == [0, 1, 2, 3, 4]
    for name in ("transfer_token", "local_dropout", "local_dropblock", "local_spatial"):
        assert plan[name] == [0, 1, 2]
    assert DEFAULT_SEEDS == {k: len(v) for k, v in plan.items()}
    assert seed_plan(["local", "ir50"], 2) == {"local": [0, 1], "ir50": [0, 1]}
    with pytest.raises(TransferError, match="--seeds 0"):
        seed_plan(None, 0)
    with pytest.raises(TransferError, match="bogus"):
        seed_plan(["bogus"])


def test_seed_plan_per_row_counts():
    rows = ["ir50", "local", "transfer", "local_dropout"]
    # named rows get their own count; the others the bare number, or the default plan without it
    assert seed_plan(rows, "2,local=4,transfer=1") == {
        "ir50": [0, 1], "local": [0, 1, 2, 3], "transfer": [0], "local_dropout": [0, 1]}
    assert seed_plan(rows, "local=4") == {
        "ir50": [0, 1, 2, 3, 4], "local": [0, 1, 2, 3], "transfer": [0, 1, 2, 3, 4],
        "local_dropout": [0, 1, 2]}
    assert parse_seeds(" 3 , local = 5 ") == (3, {"local": 5})
    assert parse_seeds(4) == (4, {}) and parse_seeds(None) == (None, {})
    for bad, words in (("x", "expected N"), ("3,4", "at most one bare N"), ("=3", "ROW=N"),
                       ("local=2,local=3", "expected N"), ("local=0", "local must have at least"),
                       ("bogus=2", "unknown row(s) bogus")):
        with pytest.raises(TransferError, match=re.escape(words)):
            parse_seeds(bad)
    with pytest.raises(TransferError, match=r"names row\(s\) local_mad that --rows does not run"):
        seed_plan(rows, "local_mad=5")


def _row(name, values):
    return {"row": name, "description": ROWS[name].description, "seeds": sorted(values),
            "runs": [{"seed": s, "metrics": {"accuracy": v}} for s, v in values.items()],
            "stats": {}, "paper_accuracy": None}


def test_comparisons_pair_the_same_seeds():
    assert [(c.before, c.to) for c in COMPARISONS[:4]] == [
        ("vit_fer", "local"), ("local", "local_mad"), ("local_mad", "transfer"),
        ("ir50", "transfer")]
    assert {c.before for c in COMPARISONS if c.to == "local_mad"} >= {
        "local", "local_dropout", "local_dropblock", "local_spatial"}
    rows = {"local_mad": _row("local_mad", {0: 80.0, 1: 82.0, 2: 81.0, 3: 90.0}),
            "local_dropout": _row("local_dropout", {0: 79.0, 1: 80.0, 2: 80.5}),
            "transfer": _row("transfer", {0: 81.0, 1: 82.5, 2: 80.0, 3: 91.0, 4: 70.0})}
    out = {(c["before"], c["to"]): c for c in compare(rows)}
    assert set(out) == {("local_mad", "transfer"), ("local_dropout", "local_mad")}
    mad = out[("local_dropout", "local_mad")]
    assert mad["seeds"] == [0, 1, 2]  # seed 3 only ran for local_mad
    assert mad["differences"]["accuracy"] == {
        **paired_difference([80.0, 82.0, 81.0], [79.0, 80.0, 80.5]),
        "verdict": verdict(paired_difference([80.0, 82.0, 81.0], [79.0, 80.0, 80.5]))}
    assert out[("local_mad", "transfer")]["seeds"] == [0, 1, 2, 3]


def test_markdown_has_the_paired_table_and_the_paper_rule():
    rows = {"vit_fer": _row("vit_fer", {0: 50.0, 1: 52.0}), "local": _row("local", {0: 55.0, 1: 56.0})}
    for r in rows.values():
        vals = [run["metrics"]["accuracy"] for run in r["runs"]]
        r["stats"] = {"accuracy": {"values": vals, "mean": sum(vals) / 2, "std": 1.0, "n": 2}}
    result = {"profile": "cpu", "data": "synthetic (transfer_lib.data.synth)", "dataset": "rafdb",
              "rows": list(rows.values()), "comparisons": compare(rows)}
    md = markdown_table(result)
    assert "| `vit_fer` → `local` ((i) -> (ii): + LANets) | accuracy | 2 | +4.50 |" in md
    assert "95 % interval" in md and "verdict" in md
    assert "not reproduced" in md and "| 90.91 |" not in md
    rows["local"]["row"], rows["local"]["paper_accuracy"] = "transfer", 90.91
    md = markdown_table({**result, "data": "data/RAF-DB", "comparisons": []})
    assert "| 90.91 |" in md


def test_ablate_command_records_per_row_seeds_as_given():
    from transfer_lib.book.ablate import ablate_command

    cmd = ablate_command("cpu", "3,local=5", ["ir50", "local"], "runs/x", None, None, "rafdb",
                         True, {})
    assert cmd == ("python -m transfer_lib ablate --profile cpu --seeds 3,local=5 "
                   "--rows ir50,local --out runs/x")
    assert "--seeds" not in ablate_command("cpu", None, ["ir50"], None, None, None, "rafdb", True,
                                           {})


def test_describe_seed_plan_groups_rows_by_seeds():
    from transfer_lib.book.ablate import describe_seed_plan

    plan = seed_plan(["ir50", "local", "local_dropout", "transfer"], "local=4")
    assert describe_seed_plan(plan) == (
        "seeds 0-4 for ir50 and transfer; 0-3 for local; 0-2 for local_dropout")
    assert describe_seed_plan({"ir50": [0, 1], "local": [0]}) == (
        "seeds 0 and 1 for ir50; 0 for local")
    assert describe_seed_plan({"a": [1, 2, 3], "b": [0, 2, 5]}) == (
        "seeds 1-3 for a; 0, 2 and 5 for b")


def test_prediction_interval_is_the_t_interval_for_one_more_draw():
    from transfer_lib.book.ablate import prediction_interval, t_quantile

    values = [86.4, 86.9, 92.0, 86.1, 90.9]
    low, high = prediction_interval(values, 0.99, bounds=None)
    mean = sum(values) / 5
    sd = (sum((v - mean) ** 2 for v in values) / 4) ** 0.5
    half = t_quantile(0.995, 4) * sd * (1 + 1 / 5) ** 0.5
    assert abs(low - (mean - half)) < 1e-9 and abs(high - (mean + half)) < 1e-9
    assert prediction_interval(values, 0.99) == (low, 100.0)  # clipped to a percentage
    with pytest.raises(ValueError):
        prediction_interval([1.0], 0.99)


def test_check_rerun_is_exact_when_pinned_and_a_draw_otherwise():
    from transfer_lib.book.ablate import check_rerun

    committed = {0: 86.4, 1: 86.9, 2: 92.0, 3: 86.1, 4: 90.9}
    pinned = {"kernels": "pinned", "cpu_model": "x", "versions": {"torch": "2.14.1"}}
    native = {"kernels": "native", "why": "ATen kernels AVX512, not AVX2",
              "versions": {"torch": "2.14.1"}}
    assert check_rerun(86.4, committed, 0, pinned)["ok"]
    exact = check_rerun(86.5, committed, 0, pinned)  # pinned must be equal, not near
    assert exact["mode"] == "exact" and not exact["ok"]
    draw = check_rerun(91.86, committed, 0, native)  # the AVX-512 CPU's native seed 0
    assert draw["mode"] == "distribution" and draw["ok"]
    assert not check_rerun(40.0, committed, 0, native)["ok"]  # a stalled run is no draw of it
    assert check_rerun(90.0, committed, 0, None)["mode"] == "distribution"  # no provenance
    other_torch = check_rerun(86.4, committed, 0, pinned,
                              committed_provenance={"kernels": "pinned",
                                                    "versions": {"torch": "2.9.1"}})
    assert other_torch["mode"] == "distribution"


def test_paired_results_pairs_by_seed():
    from transfer_lib.book.ablate import paired_results

    def result(values):
        return {"rows": [{"row": "transfer", "runs": [
            {"seed": s, "metrics": {"accuracy": v, "mean_class_accuracy": v}}
            for s, v in values.items()]}]}

    a, b = result({0: 90.0, 1: 80.0, 2: 70.0}), result({1: 70.0, 2: 65.0, 3: 10.0})
    lines = paired_results({"30 epochs": (a, b, ("transfer",))}, names=("pt", "scratch"),
                           metrics=("accuracy",))
    (line,) = lines
    assert line["seeds"] == 2 and line["pt"] == 75.0 and line["scratch"] == 67.5
    assert line["difference"] == 7.5  # (10 + 5) / 2, seeds 1 and 2 only
    assert line["verdict"] == "interval includes 0"  # two pairs, sd 3.5: a wide interval
