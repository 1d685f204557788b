"""Fixtures of the evaluation tests: the tiny dataset of eval_tiny_dataset.py and a config pointing at tmp_path."""

from __future__ import annotations

import pytest

from eval_tiny_dataset import make_dataset
from llm_emf.config import load_config
from llm_emf.data.schema import Dataset


@pytest.fixture
def tiny() -> Dataset:
    return make_dataset()


@pytest.fixture
def cfg(tmp_path):
    """Defaults, with the dataset folder (and so the negatives file) in a temporary directory."""
    return load_config(None, [f"data.dataset={tmp_path / 'dataset'}", "train.eval_batch_size=2"])
