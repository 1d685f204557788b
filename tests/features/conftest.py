"""Fixtures for the stage-1 feature jobs: a small real-title catalog with synthetic images, a local Ray."""

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


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """A private converted-model cache, so tests never depend on (or disturb) ~/.cache."""
    root = tmp_path_factory.mktemp("llm-emf-cache")
    old = os.environ.get("LLM_EMF_CACHE")
    os.environ["LLM_EMF_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("LLM_EMF_CACHE", None)
    else:
        os.environ["LLM_EMF_CACHE"] = old


@pytest.fixture(scope="module")
def local_ray(model_cache, local_ray):
    """The suite's local_ray (tests/conftest.py), started after model_cache so that the cache location
    ($LLM_EMF_CACHE) reaches the Ray workers too."""
    return local_ray
