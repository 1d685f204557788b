"""Fixtures of the model tests; the helpers live in model_tiny.py (a unique module name)."""

import pytest

from model_tiny import random_features


@pytest.fixture
def features():
    return random_features()
