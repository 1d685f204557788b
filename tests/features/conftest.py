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


@pytest.fixture(scope="session")
def local_ray(model_cache):
    import ray

    if not ray.is_initialized():
        # the cache location must reach the Ray workers too
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"LLM_EMF_CACHE": str(model_cache), "HF_HUB_OFFLINE": "1",
                                           "TRANSFORMERS_OFFLINE": "1"}})
    yield ray
    ray.shutdown()
