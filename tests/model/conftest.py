"""Fixtures of the model tests; the helpers live in model_tiny.py (a unique module name)."""

import pytest

from model_tiny import random_features


@pytest.fixture
def features():
    return random_features()


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    # The test models are tiny: one thread is fastest, and on a shared 2-core machine two threads spin-wait.
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
