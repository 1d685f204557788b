"""Fixtures of the training tests; the helpers live in train_tiny_dataset.py (a unique module name)."""

import pytest

from train_tiny_dataset import tiny_dataset


@pytest.fixture
def dataset_dir(tmp_path):
    tiny_dataset().write(tmp_path / "dataset")
    return tmp_path / "dataset"
