"""Where a pipeline run keeps its MLflow records when no store is named: under pipeline.storage, so that they
outlive a Ray job's temporary working_dir; refused, with the setting to change, where they would not."""

import json

import pytest

from llm_emf.config import load_config
from llm_emf.ray_local import job_working_dir
from llm_emf.storage import StorageError
from llm_emf.tracking.uri import pipeline_tracking_uri, resolve_tracking_uri

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def no_env_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("LLM_EMF_SHARED_FS", raising=False)


def test_default_store_lives_under_pipeline_storage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(overrides=[f"pipeline.storage={tmp_path / 'store'}"])
    assert pipeline_tracking_uri(cfg) == f"sqlite:///{tmp_path}/store/mlflow.db"
    relative = load_config(overrides=["pipeline.storage=runs/demo"])           # resolved like Storage.path
    assert pipeline_tracking_uri(relative) == f"sqlite:///{tmp_path}/runs/demo/mlflow.db"
    # other commands keep the working directory's store
    assert resolve_tracking_uri(cfg) == f"sqlite:///{tmp_path}/mlflow.db"


def test_a_named_store_wins(tmp_path, monkeypatch):
    cfg = load_config(overrides=[f"pipeline.storage={tmp_path}", "tracking.uri=http://tracker:5000"])
    assert pipeline_tracking_uri(cfg, n_nodes=4, job_dir=tmp_path) == "http://tracker:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert pipeline_tracking_uri(load_config(overrides=["pipeline.storage=s3://b/x"]), n_nodes=4) == "http://env:5000"


def test_a_node_local_storage_on_a_multi_node_cluster_is_refused_naming_the_settings(tmp_path):
    cfg = load_config(overrides=[f"pipeline.storage={tmp_path / 'store'}"])
    with pytest.raises(StorageError, match=r"node-local path on a 3-node Ray cluster.*set tracking\.uri .*"
                                           r"or pipeline\.storage to a shared filesystem path"):
        pipeline_tracking_uri(cfg, n_nodes=3)


def test_a_shared_filesystem_passes_on_a_multi_node_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_EMF_SHARED_FS", "1")
    cfg = load_config(overrides=[f"pipeline.storage={tmp_path}"])
    assert pipeline_tracking_uri(cfg, n_nodes=3) == f"sqlite:///{tmp_path}/mlflow.db"


def test_a_store_inside_the_jobs_working_dir_is_refused(tmp_path, monkeypatch):
    """`ray job submit --working-dir . -- python -m workflows.pipeline` with the demo's relative storage."""
    job = tmp_path / "_ray_pkg_0123"
    job.mkdir()
    monkeypatch.chdir(job)
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_0123.zip"}}))
    assert job_working_dir() == job
    with pytest.raises(StorageError, match=r"inside this Ray job's working_dir .*deletes with the job.*"
                                           r"set pipeline\.storage to an absolute path outside it"):
        pipeline_tracking_uri(load_config(overrides=["pipeline.storage=runs/demo"]), job_dir=job_working_dir())
    outside = load_config(overrides=[f"pipeline.storage={tmp_path / 'kept'}"])
    assert pipeline_tracking_uri(outside, job_dir=job_working_dir()) == f"sqlite:///{tmp_path}/kept/mlflow.db"
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    assert job_working_dir() is None


def test_an_object_store_keeps_the_cwd_store_locally_but_is_refused_in_a_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(overrides=["pipeline.storage=s3://bucket/llm-emf"])
    assert pipeline_tracking_uri(cfg) == f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(StorageError, match=r"'s3://bucket/llm-emf' is an object store.*inside a Ray job.*"
                                           r"set tracking\.uri \(or MLFLOW_TRACKING_URI\)"):
        pipeline_tracking_uri(cfg, job_dir=tmp_path)
    with pytest.raises(StorageError, match=r"on a 2-node Ray cluster"):
        pipeline_tracking_uri(cfg, n_nodes=2)


def test_run_pipeline_hands_every_stage_the_store_under_storage(tmp_path, monkeypatch):
    from llm_emf.pipeline import workflow

    seen = {}
    monkeypatch.setattr(workflow, "ensure_ray", lambda *a, **k: None)
    monkeypatch.setattr(workflow, "alive_nodes", lambda: 1)
    monkeypatch.setattr(workflow, "run_stages", lambda cfg, stages, storage, log: seen.setdefault("cfg", cfg) and {})
    cfg = load_config(overrides=[f"pipeline.storage={tmp_path}", "pipeline.stages=[prepare]"])
    workflow.run_pipeline(cfg)
    assert seen["cfg"].tracking.uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert cfg.tracking.uri == ""                        # the caller's config is left as it was

    seen.clear()
    monkeypatch.setattr(workflow, "alive_nodes", lambda: 2)
    with pytest.raises(StorageError, match="pipeline.storage"):
        workflow.run_pipeline(cfg)
    assert not seen                                      # refused before any stage ran
