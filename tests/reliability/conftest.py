"""Reliability tests reuse the tiny fixtures of other test folders (modules with unique names)."""

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
for folder in ("training", "features"):
    if str(TESTS / folder) not in sys.path:
        sys.path.insert(0, str(TESTS / folder))


@pytest.fixture
def one_torch_thread():
    # Tiny models: one thread is fastest, and on a shared 2-core machine two threads spin-wait.
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



