"""Batch-recommendation tests train the tiny learnable dataset of tests/training once per module."""

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS / "training") not in sys.path:
    sys.path.insert(0, str(TESTS / "training"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from llm_emf.cli.main import main
    from train_tiny_dataset import tiny_dataset

    root = tmp_path_factory.mktemp("serving")
    tiny_dataset().write(root / "dataset")
    assert main(["train", f"data.dataset={root / 'dataset'}", f"train.storage={root / 'runs'}", "train.run_name=r",
                 f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
                 "train.epochs=1", "train.batch_size=16", "model.hidden_size=16", "model.n_blocks=1",
                 "model.max_len=8", "eval.n_negatives=5", "seed=3"]) == 0
    return root / "runs/r", root / "dataset"



