"""Training curves and metric bars: which series are drawn, and that valid PNGs of the right size come out."""

import math
import struct

import pytest

from llm_emf.evaluation.result import EvalResult
from llm_emf.tracking import metric_bars, training_curves
from llm_emf.tracking.plots import _metric_by_group, _strip_common_prefix, bar_values, curve_panels

pytestmark = pytest.mark.unit


def png_size(path):
    """(width, height) from the IHDR chunk; also checks the PNG signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_training_curves_draws_loss_mrr_and_ndcg_panels(history, tmp_path):
    out = training_curves(history, tmp_path / "deep" / "curves.png")
    assert out == tmp_path / "deep" / "curves.png"
    assert png_size(out) == (1500, 400)            # 3 panels of 5 x 4 inches at 100 dpi
    assert out.stat().st_size > 10_000             # lines, labels and legends, not an empty canvas


def test_training_curves_with_loss_only_has_one_panel(tmp_path):
    out = training_curves([{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.5}], tmp_path / "c.png")
    assert png_size(out) == (500, 400)


def test_panels_follow_the_trainer_history_keys():
    row = {"epoch": 1, "train_loss": 0.9, "valid/sampled/Food/MRR": 0.2, "valid/sampled/Food/NDCG@10": 0.3,
           "valid/full/Kitchen/HR@10": 0.4, "valid_mrr": 0.2, "stale_epochs": 0, "train/Food/MRR": 0.5}
    panels = curve_panels([row])
    assert panels == {"loss": ["train_loss"], "MRR": ["valid/sampled/Food/MRR", "valid_mrr"],
                      "NDCG": ["valid/sampled/Food/NDCG@10"]}
    # without any validation key, every MRR/NDCG series is shown
    assert curve_panels([{"X/mrr": 0.1, "Y/ndcg_10": 0.2}]) == {"MRR": ["X/mrr"], "NDCG": ["Y/ndcg_10"]}


def test_training_curves_rejects_a_history_without_curves(tmp_path):
    with pytest.raises(ValueError, match=r"expected loss, MRR or NDCG.*'lr'"):
        training_curves([{"epoch": 1, "lr": 0.1}], tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_metric_lookup_matches_spellings_and_groups_by_domain():
    results = {"full": {"Food": {"NDCG@10": 0.3, "MRR": 0.2}, "Kitchen": {"ndcg_at_10": 0.1}},
               "sampled": {"Food": {"ndcg_10": 0.5, "NDCG@5": 0.9}}}
    assert _metric_by_group(results, "NDCG@10") == {"full/Food": 0.3, "full/Kitchen": 0.1, "sampled/Food": 0.5}
    assert _metric_by_group({"X": 0.4}, "X") == {"all": 0.4}
    stripped = _strip_common_prefix({"a": {"metrics/full/Food": 1.0}, "b": {"metrics/full/Kitchen": 2.0}})
    assert stripped == {"a": {"Food": 1.0}, "b": {"Kitchen": 2.0}}


def test_metric_bars_writes_a_png_for_models_and_eval_results(tmp_path):
    ev = EvalResult("test", ("full",), {"full": {"Food": {"MRR": 0.3}, "Kitchen": {"MRR": math.nan}}},
                    {"Food": 10, "Kitchen": 0}, {"full": {"Food": 100, "Kitchen": 80}})
    results = {"sasrec": {"full": {"Food": {"MRR": 0.25}, "Kitchen": {"MRR": 0.1}}}, "llm_emf": ev}
    # an EvalResult groups like the plain dict; NaN (a domain without cases) draws no bar
    assert bar_values(results, "MRR") == {"sasrec": {"Food": 0.25, "Kitchen": 0.1}, "llm_emf": {"Food": 0.3}}
    out = metric_bars(results, tmp_path / "bars.png", metric="MRR")
    width, height = png_size(out)
    assert height == 400 and width >= 500 and out.stat().st_size > 8_000


def test_metric_bars_names_the_missing_metric(tmp_path):
    with pytest.raises(ValueError, match=r"metric 'HR@20'.*X/MRR"):
        metric_bars({"m": {"X": {"MRR": 0.1}}}, tmp_path / "bars.png", metric="HR@20")
