"""bench/quality/by_target.py: cold/warm metrics averaged over seeds, with the HR@10 ratio."""

from __future__ import annotations

import pytest

from bench.quality import by_target

pytestmark = pytest.mark.unit


def _run(variant, seed, cold_hr, warm_hr, cold_mrr=0.1, warm_mrr=0.2):
    cell = lambda hr, mrr: {"HR@10": hr, "MRR": mrr}  # noqa: E731
    return {"variant": variant, "seed": seed, "test": {
        "by_target": {"cold": {"sampled": {"Food": cell(cold_hr, cold_mrr)}},
                      "warm": {"sampled": {"Food": cell(warm_hr, warm_mrr)}}},
        "counts_by_target": {"cold": {"Food": 3}, "warm": {"Food": 40}}}}


def test_means_over_seeds_and_the_ratio_by_hand():
    runs = [_run("text", 1, 0.2, 0.5), _run("text", 2, 0.4, 0.3), _run("ids", 1, None, 0.6),
            {"variant": "old", "seed": 1, "test": {}}]
    table = by_target.target_kind_table(runs)
    assert list(table) == ["text", "ids"]                       # a run without by_target is left out
    text = table["text"]["sampled"]["Food"]
    assert text["seeds"] == 2 and text["cases"] == {"cold": 3, "warm": 40}
    assert text["cold"]["HR@10"] == pytest.approx(0.3) and text["warm"]["HR@10"] == pytest.approx(0.4)
    assert text["cold_over_warm_HR@10"] == pytest.approx(0.75)
    ids = table["ids"]["sampled"]["Food"]
    assert ids["cold"]["HR@10"] is None and ids["cold_over_warm_HR@10"] is None   # no cold numbers
    md = by_target.target_kind_markdown(table)
    assert "| text | sampled | Food | 3 | 40 | 0.3000 | 0.4000 | 0.7500 | 0.1000 | 0.2000 |" in md
    assert "| ids | sampled | Food | 3 | 40 | - | 0.6000 | - |" in md
