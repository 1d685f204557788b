"""What users do on a cluster, on loopback: a Ray head with token authentication, `ray job submit` of the
pipeline, SUCCEEDED, outputs and MLflow runs checked, a resubmission that skips every stage, then stop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.ray_cluster import RayCluster

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.slow]     # a submitted Ray job
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXCLUDES = [".git", ".venv", "runs", "mlflow.db", "mlartifacts", "mlruns", ".pytest_cache", ".hypothesis",
            "**/__pycache__", "bench/results/raw"]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A one-node Ray with token authentication and 2 CPUs (helpers.ray_cluster: every port a free one, the
    dashboard agent's too; stopped by its own processes, never by `ray stop`, which would stop every Ray of
    the user on the machine)."""
    tmp = tmp_path_factory.mktemp("head")
    cluster = RayCluster(tmp, num_workers=0, head_cpus=2).start()
    try:
        yield {"env": cluster.env, "address": cluster.address, "tmp": tmp}
    finally:
        cluster.stop()


def _submit(head, storage: Path | str, mlflow_uri: str | None,
            env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """``mlflow_uri=None``: no MLFLOW_TRACKING_URI, the pipeline's default store (under pipeline.storage)."""
    env_vars = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if mlflow_uri is not None:
        env_vars["MLFLOW_TRACKING_URI"] = mlflow_uri
    runtime_env = {"working_dir": str(ROOT), "excludes": EXCLUDES, "env_vars": env_vars}
    cmd = [str(BIN / "ray"), "job", "submit", "--address", head["address"],
           "--runtime-env-json", json.dumps(runtime_env), "--",
           sys.executable, "-m", "workflows.pipeline", "--config", "configs/smoke.yaml",
           f"pipeline.storage={storage}"]
    for _ in range(30):
        res = subprocess.run(cmd, env={**head["env"], **(env_extra or {})}, capture_output=True, text=True,
                             timeout=900)
        # A head that has just started may not have its job agent up yet (HTTP 500 "No available agent").
        if "No available agent" not in res.stderr + res.stdout:
            return res
        time.sleep(2)
    return res


def test_submission_without_the_token_is_refused(ray_head):
    env = {k: v for k, v in ray_head["env"].items() if k not in ("RAY_AUTH_TOKEN_PATH",)}
    env["RAY_AUTH_TOKEN_PATH"] = str(ray_head["tmp"] / "no_such_token")
    res = subprocess.run([str(BIN / "ray"), "job", "list", "--address", ray_head["address"]], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert "AuthenticationError" in res.stderr + res.stdout or "token" in (res.stderr + res.stdout).lower()


def test_pipeline_job_succeeds_then_resubmission_skips_every_stage(ray_head, tmp_path):
    from mlflow.tracking import MlflowClient

    if "MLFLOW_TRACKING_URI" in ray_head["env"]:
        pytest.skip("MLFLOW_TRACKING_URI is set for the head: the default store is not used")
    storage = tmp_path / "storage"
    # No tracking store named: the records go under pipeline.storage and outlive the job's working_dir.
    mlflow_uri = f"sqlite:///{storage / 'mlflow.db'}"
    first = _submit(ray_head, storage, None)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "succeeded" in first.stdout + first.stderr

    # Outputs of every stage, each with its success marker.
    for stage in ("prepare", "enrich", "embed", "train", "evaluate", "recommend"):
        markers = list((storage / stage).glob("*/_SUCCESS.json"))
        assert len(markers) == 1, stage
    test_json = next((storage / "evaluate").glob("*/test.json"))
    metrics = json.loads(test_json.read_text())["metrics"]
    assert set(metrics) == {"sampled", "full"}
    assert set(metrics["full"]) == {"Food", "Kitchen"}
    assert 0.0 < metrics["sampled"]["Food"]["MRR"] <= 1.0
    enriched = next((storage / "enrich").glob("*/enriched.parquet"))
    import pyarrow.parquet as pq
    assert pq.read_table(enriched).num_rows == 500          # the whole sample catalog, one row per item
    recs = pq.read_table(next((storage / "recommend").glob("*/recommendations.parquet")))
    test_users = json.loads(next((storage / "recommend").glob("*/_SUCCESS.json")).read_text())["summary"]["users"]
    assert recs.num_rows == 2 * test_users > 0 and set(recs.column("domain").to_pylist()) == {"Food", "Kitchen"}
    assert all(len(ids) == 10 for ids in recs.column("item_ids").to_pylist())

    # MLflow holds the training run with params, per-epoch metrics and artifacts.
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("llm-emf")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["model.use_text"] == "True" and run.data.tags["seed"] == "7"
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "results.json" in artifacts

    # Resubmitted: every stage is found done and skipped; no new MLflow run.
    second = _submit(ray_head, storage, None)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    log = second.stdout + second.stderr
    for stage in ("prepare", "enrich", "embed", "train", "evaluate", "recommend"):
        assert f"[{stage}] skipped" in log, stage
    assert len(client.search_runs([exp.experiment_id])) == 1


def test_a_job_whose_mlflow_store_would_be_deleted_with_it_is_refused(ray_head):
    """The demo's relative pipeline.storage in a job lands in Ray's package folder: refused, naming the settings."""
    if "MLFLOW_TRACKING_URI" in ray_head["env"]:
        pytest.skip("MLFLOW_TRACKING_URI is set for the head: the default store is not used")
    res = _submit(ray_head, "runs/job-store", None)
    log = res.stdout + res.stderr
    assert res.returncode != 0, log[-4000:]
    assert "inside this Ray job's working_dir" in log and "set pipeline.storage to an absolute path" in log, log[-4000:]
