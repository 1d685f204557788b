"""Shared fixtures (paths to the bundled sample and the tiny real fixtures, a plain-text copy helper, one local
Ray, an S3 server) and the hooks that hold unit tests to their marker (helpers/markers.py)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

import helpers.fuzz  # noqa: F401  (registers the `fast` hypothesis profile before the plugin loads one)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# A local Ray started by the library (llm_emf.ray_local) skips its dashboard in tests: lighter and faster;
# tests/tuning/test_dashboard.py turns it on for the one test that checks it.
os.environ.setdefault("LLM_EMF_RAY_DASHBOARD", "0")
# A test that trains with train.compile=true would compile for minutes on 2 cores: torch.compile is off for the
# suite, Ray workers and subprocesses included; tests/training/test_compile.py turns it on.
os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

FIXTURES = Path(__file__).parent / "fixtures"

# The project's shared datasets live beside the checkout (../shared/data); LLM_EMF_SHARED_DATA overrides.
SHARED_DATA = Path(os.environ.get("LLM_EMF_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    from helpers.markers import mark_default_tier

    mark_default_tier(items)


def _unit_tests_stay_in_process(item):
    from helpers.markers import in_process_only, is_unit

    if is_unit(item):
        with in_process_only(item.nodeid):
            yield
    else:
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield from _unit_tests_stay_in_process(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield from _unit_tests_stay_in_process(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield from _unit_tests_stay_in_process(item)


@pytest.fixture(scope="session")
def _unit_mlflow_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(autouse=True)
def _unit_tests_track_into_tmp(request, monkeypatch):
    """A unit test that trains through the CLI without naming a store would log to <cwd>/mlflow.db, the
    checkout's; unit tests log to one store under pytest's tmp instead (a test checking the default resolution
    deletes the variable itself). Module-scoped fixtures that train name their store (tracking.uri)."""
    from helpers.markers import is_unit

    if is_unit(request.node) and "MLFLOW_TRACKING_URI" not in os.environ:
        store = request.getfixturevalue("_unit_mlflow_dir") / "mlflow.db"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")


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
def _no_stray_ray_per_module():
    """Each test module starts and ends without a Ray connection but the session's (local_ray): jobs started
    in-process (run_enrich, train) call ray.init() when needed and leave it up; the next module must not
    inherit a Ray of another size and environment."""
    from helpers.ray_local import shutdown_unless_shared

    shutdown_unless_shared()
    yield
    shutdown_unless_shared()


@pytest.fixture(autouse=True, scope="session")
def _free_ray_agent_port():
    """Every Ray this process starts (the fixture's, and those the library starts itself) and every command it
    runs gives its dashboard agent a free port too, so another Ray on the machine never breaks a test
    (helpers/ray_local.py)."""
    from helpers.ray_local import free_agent_port

    with free_agent_port():
        yield


@pytest.fixture(autouse=True, scope="session")
def _shared_ray_stops_with_the_session():
    from helpers.ray_local import shutdown_shared

    yield
    shutdown_shared()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """A private converted-model cache ($LLM_EMF_CACHE), so tests never depend on (or disturb) ~/.cache; set
    before the session's Ray starts, so that its workers use it too."""
    root = tmp_path_factory.mktemp("llm-emf-cache")
    old = os.environ.get("LLM_EMF_CACHE")
    os.environ["LLM_EMF_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("LLM_EMF_CACHE", None)
    else:
        os.environ["LLM_EMF_CACHE"] = old


@pytest.fixture(scope="module")
def local_ray(model_cache):
    """The session's small local Ray (2 CPUs, offline, the private model cache): started by the first module
    that asks for it, kept for the next ones, started again if a test shut it down (helpers/ray_local.py)."""
    from helpers.ray_local import shared_local_ray

    return shared_local_ray(env={"LLM_EMF_CACHE": str(model_cache)})


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
