"""A real sqlite MLflow store per test module (creating one runs MLflow's migrations: ~2 s)."""

import pytest

from llm_emf.config import load_config
from llm_emf.tracking import tracker


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.fixture
def make_cfg(store_uri):
    def make(*overrides):
        return load_config(overrides=[f"tracking.uri={store_uri}", *overrides])
    return make


@pytest.fixture(autouse=True)
def fresh_warning_state():
    """'Warn once' is per process and URI: give every test a clean slate."""
    tracker._warned_uris.clear()
    yield
    tracker._warned_uris.clear()


@pytest.fixture
def history():
    """Three epochs the way a trainer reports them: nested per split and domain."""
    return [
        {"epoch": e, "train_loss": 1.0 / e,
         "valid": {"X": {"MRR": 0.1 * e, "NDCG@10": 0.2 * e}, "Y": {"MRR": 0.05 * e, "NDCG@10": 0.1 * e}}}
        for e in (1, 2, 3)
    ]
