"""bench/quality/cold_content.py: the content-only ranker's scores by hand, nearest-trained and history
cosines per case (an item is never its own neighbour), and one tiny run of the whole script."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from bench.quality import cold_content
from bench.train.throughput import synthetic_features

TRAINING_TESTS = Path(__file__).resolve().parents[1] / "training"
if str(TRAINING_TESTS) not in sys.path:
    sys.path.insert(0, str(TRAINING_TESTS))
from train_tiny_dataset import tiny_dataset  # noqa: E402
pytestmark = pytest.mark.unit


def test_history_scorer_takes_each_candidates_best_cosine_to_the_input_items():
    # n_X = 2 (items 0, 1), n_Y = 2 (items 2, 3); unit vectors in 2-d.
    content = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, -0.6]])
    rows = pa.table({"items": [[0, 1, 3], [1, 2]]})            # the last item is the target, not input
    scores = cold_content.history_scorer(content, 2, 2)(rows, 1)
    # row 0 inputs {0, 1}: item 2 -> max(0.6, 0.8); item 3 -> max(0.8, -0.6); row 1 input {1}: 0.8, -0.6
    assert torch.allclose(scores, torch.tensor([[0.8, 0.8], [0.8, -0.6]]))


def test_case_similarities_split_cold_from_warm_and_never_match_an_item_to_itself():
    ds = tiny_dataset(n_users=60)
    n = ds.n_items
    content = torch.nn.functional.normalize(torch.randn(n, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    targets = [seq[-1] for seq in ds.split("test").column("items").to_pylist()]
    cold_target = targets[0]
    twin = next(i for i in range(n) if i != cold_target and (i < ds.n_x) == (cold_target < ds.n_x))
    content[twin] = content[cold_target]                     # a near-duplicate of the cold target, trained
    trained = np.ones(n, bool)
    trained[cold_target] = False
    sims = cold_content.case_similarities(ds, content, trained, "test")
    domain = "Food" if cold_target < ds.n_x else "Kitchen"
    assert len(sims[domain]["cold"]["nearest_trained"]) == targets.count(cold_target)
    assert sims[domain]["cold"]["nearest_trained"][0] == pytest.approx(1.0)      # the twin, not itself
    # every case by hand: the best cosine to a trained item of the target's domain other than the target
    expected: dict = {}
    for seq in ds.split("test").column("items").to_pylist():
        t = seq[-1]
        lo, hi = (0, ds.n_x) if t < ds.n_x else (ds.n_x, n)
        pool = [i for i in range(lo, hi) if trained[i] and i != t]
        kind = "warm" if trained[t] else "cold"
        dom = "Food" if t < ds.n_x else "Kitchen"
        expected.setdefault((dom, kind), []).append(float((content[pool] @ content[t]).max()))
    for (dom, kind), values in expected.items():
        assert sims[dom][kind]["nearest_trained"] == pytest.approx(values)


def test_whole_script_writes_json_and_markdown(tmp_path):
    ds = tiny_dataset(n_users=60)
    data = tmp_path / "data"
    ds.write(data)
    features = synthetic_features(ds, tmp_path / "features.parquet", dim=16)
    out = tmp_path / "out" / "content"
    cold_content.main(["--dataset", str(data), "--features", str(features), "--out", str(out)])
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["split"] == "test" and set(doc["content_ranker"]["metrics"]) == {"sampled", "full"}
    cases = sum(r["cases"] for r in doc["cases"].values())
    assert cases == ds.split("test").num_rows
    for row in doc["cases"].values():
        assert 0.0 <= row["content_ranker"]["sampled"]["HR@10"] <= 1.0
    md = out.with_suffix(".md").read_text()
    assert f"Command: `python -m bench.quality.cold_content --dataset {data}" in md and "| Food | warm |" in md
