"""Fixtures for the stage-1 feature jobs: a small real-title catalog with synthetic images (the private model
cache and the local Ray are tests/conftest.py's)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from features_fixtures import make_catalog

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture()
def catalog(tmp_path) -> Path:
    return make_catalog(tmp_path / "dataset")
