"""Fixtures for tests that run against a real Ray cluster on this machine, as `ray up cluster.yaml` builds it:
a head and worker nodes started by `ray start` with token authentication, an MLflow server with basic auth
whose artifacts go to S3, and the S3 API itself (moto, ``s3_server`` from tests/conftest.py).

- ``mlflow_server``: :class:`helpers.mlflow_server.MlflowServer`; ``.uri``, ``.env`` (the three MLFLOW_TRACKING_*
  variables a client needs), ``.bucket`` / ``.artifacts_prefix`` (where its artifacts land).
- ``mlflow_client``: an ``MlflowClient`` of that server, this test's process logged in (the MLFLOW_TRACKING_*
  variables set for the test only): MLflow reads the login from the environment, never from the client.
- ``ray_cluster``: :class:`helpers.ray_cluster.RayCluster`, a 0-CPU head and 2 worker nodes of 1 CPU each
  (resources ``worker_node_1``, ``worker_node_2``). Like cluster.yaml, every node's Ray is started with the
  MLflow address and login and, standing in for an instance profile, the S3 endpoint and credentials, so a
  job submitted with no env_vars logs to MLflow and reaches the bucket. ``.address`` (for
  ``ray job submit --address``), ``.env`` (a client's environment: the token), ``.submit(...)``,
  ``.run_client(argv)``, ``.job_logs(id)``, ``.nodes()``, ``.kill_worker_raylet(i)``, ``.restart_worker(i)``.
  A test that kills a node must bring it back (``restart_worker``) before it ends: later tests share the cluster.
- ``cluster_env``: the S3 + MLflow + token variables merged, for a job's ``runtime_env["env_vars"]`` when a
  test wants them explicit (or overrides one of them).
- ``cluster_storage``: a fresh bucket on the S3 server, as ``s3://<bucket>/llm-emf`` (for ``pipeline.storage``);
  the test process gets the S3 variables too, to read the outputs.
- ``ray_cluster_factory``: ``make(num_workers=..., ...)`` a cluster of a test's own, stopped after the test.

The cluster and the MLflow server live for the tests of this folder only (package scope: tests/cluster has an
__init__.py), so three idle Ray nodes do not sit beside the rest of the suite.
"""

from __future__ import annotations

import pytest

from helpers.mlflow_server import auth_app_missing, start_mlflow_server
from helpers.ray_cluster import RayCluster

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="package")
def mlflow_server(s3_server, tmp_path_factory):
    reason = auth_app_missing()
    if reason:
        pytest.skip(reason)
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow_server"), s3_server)
    yield server
    server.stop()


@pytest.fixture
def mlflow_client(mlflow_server, monkeypatch):
    from mlflow.tracking import MlflowClient

    for key, value in mlflow_server.env.items():
        monkeypatch.setenv(key, value)
    return MlflowClient(mlflow_server.uri)


@pytest.fixture(scope="package")
def ray_cluster(s3_server, mlflow_server, tmp_path_factory):
    cluster = RayCluster(tmp_path_factory.mktemp("ray_cluster"), num_workers=2, head_cpus=0, worker_cpus=1,
                         node_env={**s3_server.env, **mlflow_server.env, **OFFLINE})
    cluster.start()
    print(f"\nRay cluster up in {cluster.timings['start_s']:.1f} s: {cluster.address}")
    yield cluster
    cluster.stop()
    print(f"\nRay cluster stopped in {cluster.timings['stop_s']:.1f} s")


@pytest.fixture
def cluster_env(ray_cluster, s3_server, mlflow_server) -> dict[str, str]:
    return {**s3_server.env, **mlflow_server.env, **OFFLINE, "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(ray_cluster.token_path)}


@pytest.fixture
def cluster_storage(s3_server, monkeypatch) -> str:
    """A fresh bucket; this test process gets the S3 env too, to read what jobs wrote (llm_emf.files)."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return f"s3://{s3_server.create_bucket()}/llm-emf"


@pytest.fixture
def ray_cluster_factory(tmp_path_factory, s3_server):
    clusters: list[RayCluster] = []

    def make(num_workers: int = 1, **kwargs) -> RayCluster:
        kwargs.setdefault("node_env", {**s3_server.env, **OFFLINE})
        cluster = RayCluster(tmp_path_factory.mktemp("own_ray_cluster"), num_workers=num_workers, **kwargs)
        clusters.append(cluster)
        return cluster.start()

    yield make
    errors = []
    for cluster in clusters:
        try:
            cluster.stop()
        except RuntimeError as e:
            errors.append(str(e))
    assert not errors, errors
