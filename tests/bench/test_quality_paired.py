"""bench/quality/paired.py: per-case metrics from ranks and the paired bootstrap against a reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.quality import paired

pytestmark = pytest.mark.unit


def test_case_metric_matches_hand_computed_values():
    ranks = [1, 2, 10, 11]
    assert paired.case_metric(ranks, "MRR") == pytest.approx([1.0, 0.5, 0.1, 1 / 11])
    assert paired.case_metric(ranks, "NDCG@10") == pytest.approx([1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0])
    assert paired.case_metric(ranks, "HR@10").tolist() == [1.0, 1.0, 1.0, 0.0]
    assert paired.case_metric([1, 2, 3], "HR@1").tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="MRR, NDCG@k or HR@k"):
        paired.case_metric(ranks, "AUC")


def test_seed_mean_averages_each_case_over_seeds():
    # case 0: MRR 1 and 0.5; case 1: 0.5 and 0.5
    assert paired.seed_mean([[1, 2], [2, 2]], "MRR") == pytest.approx([0.75, 0.5])


def test_bootstrap_identical_models_differ_by_exactly_zero():
    a = paired.case_metric([1, 3, 7, 2, 50], "MRR")
    stat = paired.paired_bootstrap(a, a.copy(), n_boot=200)
    assert (stat["diff"], stat["low"], stat["high"], stat["rel"]) == (0.0, 0.0, 0.0, 0.0)
    assert stat["cases"] == 5


def test_bootstrap_better_on_every_case_has_interval_above_zero():
    rng = np.random.default_rng(3)
    b = rng.uniform(0.0, 0.5, size=300)
    a = b + rng.uniform(0.01, 0.1, size=300)          # A beats B on every single case
    stat = paired.paired_bootstrap(a, b)
    assert 0.0 < stat["low"] <= stat["diff"] <= stat["high"]
    assert stat["diff"] == pytest.approx(float(np.mean(a - b)))


def test_bootstrap_mean_difference_and_relative_difference_by_hand():
    a, b = np.array([1.0, 0.5, 0.25, 1.0]), np.array([0.5, 0.5, 0.5, 0.5])
    stat = paired.paired_bootstrap(a, b, n_boot=500, seed=1)
    assert stat["diff"] == pytest.approx((0.5 + 0.0 - 0.25 + 0.5) / 4)     # 0.1875
    assert stat["rel"] == pytest.approx(0.1875 / 0.5)
    # the resampled means lie between the smallest and the largest per-case difference
    assert -0.25 <= stat["low"] <= stat["diff"] <= stat["high"] <= 0.5


def test_bootstrap_is_reproducible_and_its_width_matches_the_standard_error():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 0.2, 2000), rng.normal(0.25, 0.2, 2000)
    one, two = paired.paired_bootstrap(a, b, seed=5), paired.paired_bootstrap(a, b, seed=5)
    assert one == two
    half_width = (one["high"] - one["low"]) / 2
    assert half_width == pytest.approx(1.96 * np.std(a - b) / math.sqrt(2000), rel=0.15)


def test_bootstrap_in_chunks_keeps_its_contract(monkeypatch):
    monkeypatch.setattr(paired, "_CHUNK", 10)           # fewer resamples than cases held at once
    a, b = np.arange(30, dtype=float), np.zeros(30)
    stat = paired.paired_bootstrap(a, b, n_boot=37)
    assert stat["diff"] == pytest.approx(14.5) and 0 <= stat["low"] < 14.5 < stat["high"] <= 29


def test_bootstrap_rejects_unpaired_inputs():
    with pytest.raises(ValueError, match="equal"):
        paired.paired_bootstrap(np.ones(3), np.ones(4))


def _run(variant, seed, full_food, sampled_food=None):
    ranks = {"full": {"Food": full_food}}
    if sampled_food is not None:
        ranks["sampled"] = {"Food": sampled_food}
    return {"variant": variant, "seed": seed, "ranks": ranks}


def test_paired_differences_average_seeds_per_case_then_pair():
    runs = [_run("id_only", 1, [2, 4, 1]), _run("id_only", 2, [4, 4, 1]), _run("text", 1, [1, 2, 1]),
            {"variant": "old", "seed": 1}]                                  # no ranks: left out
    out = paired.paired_differences(runs, "id_only", metrics=("MRR",), n_boot=300)
    assert out["reference"] == "id_only" and list(out["results"]) == ["text"]
    stat = out["results"]["text"]["full"]["Food"]["MRR"]
    # per-case MRR: id_only [0.375, 0.25, 1], text [1, 0.5, 1]
    assert stat["diff"] == pytest.approx((0.625 + 0.25 + 0.0) / 3)
    assert stat["rel"] == pytest.approx((0.875 / 3) / (1.625 / 3))
    assert (stat["seeds"], stat["reference_seeds"], stat["cases"]) == (1, 2, 3)


def test_paired_differences_without_the_reference_are_empty():
    out = paired.paired_differences([_run("text", 1, [1, 2])], "id_only")
    assert out["results"] == {}
    assert "No comparison" in paired.paired_markdown(out)


def test_format_cell_and_markdown_table():
    cell = {"diff": 0.0123, "low": 0.0031, "high": 0.0215, "rel": 0.081}
    assert paired.format_cell(cell) == "+0.0123 [+0.0031, +0.0215] (+8.1%)"
    assert paired.format_cell(None) == "-"
    runs = [_run("id_only", 1, [2, 4, 1], [1, 1, 3]), _run("text", 1, [1, 2, 1], [1, 1, 1])]
    md = paired.paired_markdown(paired.paired_differences(runs, "id_only", n_boot=100))
    lines = md.splitlines()
    assert lines[0] == "## Difference from id_only (paired bootstrap 95% CI over test cases)"
    assert "**sampled protocol, Food**" in lines and "**full protocol, Food**" in lines
    assert lines.index("**sampled protocol, Food**") < lines.index("**full protocol, Food**")
    assert "| variant | seeds | MRR | NDCG@10 |" in lines
    row = [ln for ln in lines if ln.startswith("| text |")][0]
    assert row.count("[") == 2 and "%)" in row
