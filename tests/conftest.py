"""Shared fixtures: paths to the bundled sample and the tiny real fixtures, and a plain-text copy helper."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# A local Ray started by the library (llm_emf.ray_local) skips its dashboard in tests: lighter and faster;
# tests/tuning/test_dashboard.py turns it on for the one test that checks it.
os.environ.setdefault("LLM_EMF_RAY_DASHBOARD", "0")

FIXTURES = Path(__file__).parent / "fixtures"
# The project's shared datasets live beside the checkout (../shared/data); LLM_EMF_SHARED_DATA overrides.
SHARED_DATA = Path(os.environ.get("LLM_EMF_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def sample_dir() -> Path:
    from llm_emf.data.importers import sample_path
    return sample_path()


@pytest.fixture
def plain_sample(tmp_path, sample_dir) -> Path:
    """The bundled sample decompressed to editable plain-text files (x.txt instead of x.txt.gz)."""
    out = tmp_path / "plain_sample"
    out.mkdir()
    for gz in sample_dir.glob("*.gz"):
        (out / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
    return out


@pytest.fixture(scope="module", autouse=True)
def _fresh_ray_per_module():
    """Each test module starts and ends without a Ray connection: jobs started in-process (run_enrich,
    train) call ray.init() when needed and leave it up; the next module must not inherit it."""
    import sys

    def shutdown():
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()

    shutdown()
    yield
    shutdown()


@pytest.fixture(autouse=True, scope="session")
def _free_ray_agent_port():
    """Every Ray this process starts (the fixture's, and those the library starts itself) picks a free port for
    its dashboard agent too, so another Ray on the machine never breaks a test (helpers/ray_local.py)."""
    from helpers.ray_local import free_agent_port

    with free_agent_port():
        yield


@pytest.fixture(scope="module")
def local_ray():
    """A small local Ray (2 CPUs) for the module, unless one is up; shut down after it (the module fixture
    below closes any Ray the library started by itself as well)."""
    import ray

    from helpers.ray_local import start_local_ray

    started = not ray.is_initialized()
    if started:
        start_local_ray(env={k: os.environ[k] for k in ("LLM_EMF_CACHE",) if k in os.environ})
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    # The test models are tiny (model and training tests): one thread is fastest, and on a shared 2-core machine two threads spin-wait.
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch) -> Path:
    """An empty working directory for the test, checked empty afterwards: an object-store URI wrapped in
    ``pathlib.Path`` would show up here as a local ``s3:/bucket/...`` folder."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    yield folder
    assert list(folder.iterdir()) == []


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 API (moto in server mode) on 127.0.0.1, for the whole session."""
    from helpers.s3 import start_s3_server

    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, monkeypatch) -> str:
    """A fresh, empty bucket on the session's S3 server, with this process's environment pointing at it
    (AWS_ENDPOINT_URL and test credentials). Returns ``s3://<bucket>``."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return f"s3://{s3_server.create_bucket()}"
