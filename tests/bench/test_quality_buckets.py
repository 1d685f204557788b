"""bench/quality/buckets.py: test MRR by the target's training count, from per-case ranks."""

from __future__ import annotations

import pytest

from bench.quality import buckets

pytestmark = pytest.mark.unit


def test_bucket_masks_edges():
    masks = buckets.bucket_masks([0, 4, 5, 19, 20, 99, 100, 1000])
    assert {k: m.nonzero()[0].tolist() for k, m in masks.items()} == {
        "< 5": [0, 1], "5-19": [2, 3], "20-99": [4, 5], ">= 100": [6, 7], "all": list(range(8))}


def _run(variant, seed, full, sampled):
    return {"variant": variant, "seed": seed, "ranks": {"full": {"Food": full}, "sampled": {"Food": sampled}}}


def test_bucket_table_mean_over_seeds_by_hand():
    counts = {"Food": [0, 3, 7, 150]}                    # buckets: < 5, < 5, 5-19, >= 100
    runs = [_run("ids", 1, [1, 2, 4, 5], [1, 1, 1, 1]), _run("ids", 2, [2, 2, 4, 10], [1, 1, 2, 2]),
            _run("pop", 1, [3, 3, 3, 3], [2, 2, 2, 2]), {"variant": "old", "seed": 1}]
    table = buckets.bucket_table(runs, counts)
    assert table["buckets"] == ["< 5", "5-19", "20-99", ">= 100", "all"]
    assert list(table["results"]) == ["ids", "pop"]
    ids = table["results"]["ids"]["Food"]
    # seed 1: (1 + 1/2) / 2 = 0.75, seed 2: (1/2 + 1/2) / 2 = 0.5
    assert ids["< 5"] == {"cases": 2, "seeds": 2, "full_MRR": pytest.approx(0.625), "sampled_MRR": pytest.approx(1.0)}
    assert ids["5-19"]["full_MRR"] == pytest.approx(0.25) and ids["5-19"]["sampled_MRR"] == pytest.approx(0.75)
    assert ids["20-99"] == {"cases": 0, "seeds": 2, "full_MRR": None, "sampled_MRR": None}
    assert ids[">= 100"]["full_MRR"] == pytest.approx((1 / 5 + 1 / 10) / 2)
    seed1, seed2 = (1 + 1 / 2 + 1 / 4 + 1 / 5) / 4, (1 / 2 + 1 / 2 + 1 / 4 + 1 / 10) / 4
    assert ids["all"]["full_MRR"] == pytest.approx((seed1 + seed2) / 2)
    assert table["results"]["pop"]["Food"]["all"]["full_MRR"] == pytest.approx(1 / 3)


def test_bucket_table_leaves_out_runs_of_another_test_split():
    runs = [_run("ids", 1, [1, 2], [1, 1]), _run("ids", 2, [1, 2, 3], [1, 1, 1])]    # seed 2: 3 cases
    cell = buckets.bucket_table(runs, {"Food": [0, 50]})["results"]["ids"]["Food"]["all"]
    assert cell["seeds"] == 1 and cell["full_MRR"] == pytest.approx(0.75)


def test_bucket_markdown_headers_carry_case_counts():
    runs = [_run("ids", 1, [1, 2, 4, 5], [1, 1, 1, 1])]
    md = buckets.bucket_markdown(buckets.bucket_table(runs, {"Food": [0, 3, 7, 150]}))
    lines = md.splitlines()
    assert lines[0] == "## Test MRR by the target's training count (mean over seeds)"
    assert ("| variant | seeds | protocol | seen < 5x (2 cases) | seen 5-19x (1 cases) | seen 20-99x (0 cases) | "
            "seen >= 100x (1 cases) | all (4 cases) |") in lines
    assert "| ids | 1 | full | 0.7500 | 0.2500 | - | 0.2000 | 0.4875 |" in lines
    assert "| ids | 1 | sampled | 1.0000 | 1.0000 | - | 1.0000 | 1.0000 |" in lines
    assert "No per-case ranks" in buckets.bucket_markdown({"buckets": [], "results": {}})
