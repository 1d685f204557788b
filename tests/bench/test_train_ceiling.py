"""bench/train/ceiling.py: the FLOP formula against a hand computation and against torch's flop counter on a real
step, and one tiny run of the whole benchmark written as "before" and "after" rows (a rerun replaces its row)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.train import ceiling
from bench.train.throughput import synthetic_features
from llm_emf.config import load_config
from llm_emf.model.batch import Ragged
from llm_emf.precision import native_bf16

TRAINING_TESTS = Path(__file__).resolve().parents[1] / "training"      # train_tiny_dataset.py
if str(TRAINING_TESTS) not in sys.path:
    sys.path.insert(0, str(TRAINING_TESTS))
from train_tiny_dataset import tiny_dataset  # noqa: E402

pytestmark = pytest.mark.unit


def test_flop_per_sequence_by_hand():
    # n_X = 3, n_Y = 4 (items >= 3 are Y). Targets are every item after the first:
    # [0, 4, 1] -> Y, X; [5, 6, 2, 0, 3] -> Y, X, X, Y: 3 X and 3 Y targets over 2 sequences.
    # Windows at L = 2: (3 - 2) // 2 + 1 = 1 and (5 - 2) // 2 + 1 = 2.
    seqs = Ragged(np.array([0, 4, 1, 5, 6, 2, 0, 3]), np.array([0, 3]), np.array([3, 8]))
    stats = ceiling.sequence_stats(seqs, 3, 2)
    assert stats == {"sequences": 2, "targets_per_sequence": [1.5, 1.5], "windows_per_sequence": 1.5}
    cfg = load_config(None, ["model.hidden_size=8", "model.max_len=2", "model.n_blocks=1", "model.use_text=true",
                             "train.batch_size=2"])
    flops = ceiling.flop_per_sequence(cfg, (3, 4), {"text": 5}, stats)
    # loss: 6 q r (t_X n_X + t_Y n_Y) = 6 * 8 * 2 * (1.5 * 3 + 1.5 * 4)
    assert flops["loss"] == 1008
    # one window: 3 encoders x 1 block x (12 * 64 + 4 * 2 * 8) + 2 cross-attentions x (8 * 64 + 4 * 2 * 8) = 3648;
    # blocks: 3 (fwd + bwd) * 1.5 windows * L=2 positions * 3648
    assert flops["blocks"] == 3 * 1.5 * 2 * 3648
    # items: 4 * 7 items * e=5 * q=8 / batch 2
    assert flops["items"] == 560
    assert flops["total"] == 1008 + 32832 + 560
    no_shared = load_config(None, ["model.hidden_size=8", "model.max_len=2", "model.n_blocks=1",
                                   "model.cross_attention=false", "model.loss_weight=0", "train.batch_size=2"])
    flops = ceiling.flop_per_sequence(no_shared, (3, 4), {}, stats)
    assert flops["loss"] == 504 and flops["blocks"] == 3 * 1.5 * 2 * 3 * (12 * 64 + 4 * 2 * 8) and flops["items"] == 0


def test_tiny_run_checks_the_formula_and_writes_before_and_after(tmp_path):
    dataset = tiny_dataset(n_users=200)
    dataset.write(tmp_path / "dataset")
    features = synthetic_features(dataset, tmp_path / "features.parquet", dim=12)
    out = str(tmp_path / "results" / "ceiling")
    args = argparse.Namespace(dataset=str(tmp_path / "dataset"), features=str(features), variant="text",
                              label="before", rounds=2, steps=1, warmup=1, repeats=1, seed=0, matmul_size=256)
    run = ceiling.run_ceiling(args, ["model.hidden_size=16", "train.batch_size=16", "model.max_len=6"])
    # torch's count of a real step (bf16 autocast, fused loss, cross-attention, text adaptor) is the formula's
    assert run["flop_check"]["ratio"] == pytest.approx(1.0, rel=1e-9)
    assert run["bound_sequences_per_s"] > 0 and run["sequences_per_s"] > 0
    shares = {c["category"]: c["share"] for c in run["profile"]["categories"]}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert all(shares[c] > 0 for c, _ in ceiling.CATEGORIES.values())     # every labelled region was seen
    assert shares[ceiling.OPTIMIZER] > 0
    # bf16's peak is measured only where bf16 is native (elsewhere one such matmul takes minutes)
    assert set(run["peak_gflops"]) == ({"bf16", "fp32"} if native_bf16("cpu") else {"fp32"})

    ceiling.save(run, out)
    ceiling.save({**run, "label": "after", "sequences_per_s": 2 * run["sequences_per_s"]}, out)
    ceiling.save({**run, "fraction_of_bound": 0.5}, out)                  # "before" again: replaces its row
    doc = json.loads(Path(out + ".json").read_text())
    assert [r["label"] for r in doc["runs"]] == ["before", "after"]
    assert doc["runs"][0]["fraction_of_bound"] == 0.5
    md = Path(out + ".md").read_text()
    assert "| before |" in md and "| after |" in md and "50.0%" in md
    assert "## before" in md and ceiling.CATEGORIES["ceiling::loss"][0] in md
    assert ceiling._peak({"fp32": {"median": 77.6}}, "bf16") == "n/a"
    assert ceiling._peak({"fp32": {"median": 77.6}}, "fp32") == "78"
