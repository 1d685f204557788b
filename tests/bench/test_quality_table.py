"""bench/quality/table.py: mean ± sample std over seeds, and the per-(protocol, domain) markdown tables."""

from __future__ import annotations

import math

import pytest

from bench.quality import table

pytestmark = pytest.mark.unit


def _run(variant: str, seed: int, food_mrr: float, kitchen_mrr, wall: float) -> dict:
    return {"variant": variant, "seed": seed, "wall_s": wall,
            "test": {"metrics": {"sampled": {"Food": {"MRR": food_mrr + 0.1}, "Kitchen": {"MRR": kitchen_mrr}},
                                 "full": {"Food": {"MRR": food_mrr}, "Kitchen": {"MRR": kitchen_mrr}}}}}


def test_aggregate_mean_and_sample_std_per_variant():
    runs = [_run("text", 1, 0.2, 0.1, 60), _run("ids", 1, 0.05, 0.02, 30), _run("text", 2, 0.4, 0.3, 120)]
    agg = table.aggregate(runs)
    assert list(agg) == ["text", "ids"]                     # order of first appearance
    assert agg["text"]["seeds"] == [1, 2] and agg["text"]["wall_s"] == [60, 120]
    food = agg["text"]["metrics"]["full"]["Food"]["MRR"]
    assert food["mean"] == pytest.approx(0.3)
    assert food["std"] == pytest.approx(math.sqrt(0.02))    # (0.1² + 0.1²) / (2 - 1), sample std
    assert agg["text"]["metrics"]["sampled"]["Food"]["MRR"]["mean"] == pytest.approx(0.4)
    one = agg["ids"]["metrics"]["full"]["Kitchen"]["MRR"]
    assert one["mean"] == pytest.approx(0.02) and math.isnan(one["std"])   # one seed: no std


def test_aggregate_skips_missing_values():
    runs = [_run("text", 1, 0.2, None, 10), _run("text", 2, 0.4, 0.3, 10)]
    stat = table.aggregate(runs)["text"]["metrics"]["full"]["Kitchen"]["MRR"]
    assert stat["mean"] == pytest.approx(0.3) and math.isnan(stat["std"])


def test_markdown_table_rows_cells_and_wall_minutes():
    runs = [_run("text", 1, 0.2, 0.1, 60), _run("text", 2, 0.4, 0.3, 120), _run("ids", 1, 0.05, 0.02, 30)]
    md = table.markdown_table(table.aggregate(runs), metrics=("MRR", "HR@1"))
    blocks = md.split("\n\n")
    titles = [b for b in blocks if b.startswith("**")]
    assert titles == ["**sampled protocol, Food**", "**sampled protocol, Kitchen**",
                      "**full protocol, Food**", "**full protocol, Kitchen**"]
    lines = md.splitlines()
    assert "| variant | seeds | MRR | HR@1 | wall (min/run) |" in lines
    full_food = lines[lines.index("**full protocol, Food**") + 4:][:2]
    assert full_food == ["| text | 2 | 0.3000 ± 0.1414 | - | 1.5 |", "| ids | 1 | 0.0500 | - | 0.5 |"]


def test_means_has_the_shape_metric_bars_reads():
    agg = table.aggregate([_run("text", 1, 0.2, 0.1, 60), _run("text", 2, 0.4, 0.3, 60)])
    assert table.means(agg) == {"text": {"sampled": {"Food": {"MRR": pytest.approx(0.4)},
                                                     "Kitchen": {"MRR": pytest.approx(0.2)}},
                                         "full": {"Food": {"MRR": pytest.approx(0.3)},
                                                  "Kitchen": {"MRR": pytest.approx(0.2)}}}}
