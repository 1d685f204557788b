"""Fixtures of the training tests; the helpers live in train_tiny_dataset.py (a unique module name)."""

import pytest

from train_tiny_dataset import tiny_dataset


@pytest.fixture
def dataset_dir(tmp_path):
    tiny_dataset().write(tmp_path / "dataset")
    return tmp_path / "dataset"


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    # The test models are tiny: one thread is fastest, and on a shared 2-core machine two threads spin-wait.
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
