"""Training, evaluation and batch recommendations with the dataset, train.storage and every output in an object
store (a real S3 API: moto server, tests/helpers/s3.py).

Local mode (train.num_workers=0) keeps its checkpoints in the bucket with latest.json written last, resumes
from there after a crash without training an epoch twice, and sets a corrupt checkpoint aside; the run's
results name the checkpoint by its URI, which ``load_scorer``, ``llm-emf evaluate --run`` and ``recommend_all``
load from. Ray Train (one worker) reports the same, with the worker's node in the results and in MLflow.
Nothing lands in the working directory (``Path("s3://b")`` would make ``s3:/b`` there).
"""

from __future__ import annotations

import json

import pytest
import torch

from llm_emf import files
from llm_emf.checkpoints import (STATE_FILE, CorruptCheckpoint, load_checkpoint_config, load_state, save_checkpoint,
                                 verify_state_file)
from llm_emf.cli.main import main
from llm_emf.data.schema import Dataset
from llm_emf.evaluation import evaluate
from llm_emf.serving import find_checkpoint, load_scorer
from llm_emf.training import TrainHook, WorkerContext, train
from llm_emf.training.session import LocalSession

from faults import FailOnceAfterEpoch
from train_tiny_dataset import tiny_dataset, tiny_train_config

pytestmark = [pytest.mark.cluster, pytest.mark.integration]

CHECKPOINT_FILES = ["config.yaml", "state.pt", "state.pt.sha256"]


class StartEpochs(TrainHook):
    """Records where each start resumed (local mode runs hooks in this process)."""

    def __init__(self):
        self.seen: list[int] = []

    def on_train_start(self, ctx: WorkerContext, start_epoch: int) -> None:
        self.seen.append(start_epoch)


@pytest.fixture
def cwd(empty_cwd):
    return empty_cwd


@pytest.fixture
def bucket_dataset(s3_bucket) -> str:
    uri = f"{s3_bucket}/dataset"
    tiny_dataset().write(uri)
    return uri


def keys(s3_server, uri: str) -> list[str]:
    """The object keys under ``uri`` (s3://bucket/prefix), relative to the prefix."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return [k[len(prefix) + 1:] for k in s3_server.keys(bucket, prefix)]


@pytest.fixture
def ray_with_this_env():
    """A Ray the library starts from this process's environment (the bucket's AWS_ENDPOINT_URL and keys), so
    that its workers reach the bucket; the session's shared Ray, started earlier without them, is shut down
    first (the next test that asks for it starts it again)."""
    from helpers.ray_local import shutdown_shared, shutdown_unless_shared

    shutdown_shared()
    yield
    shutdown_unless_shared()


def bucket_config(tmp_path, s3_bucket, dataset: str, **train_kw):
    cfg = tiny_train_config(tmp_path, **train_kw)
    cfg.data.dataset, cfg.train.storage = dataset, f"{s3_bucket}/runs"
    return cfg


def test_local_mode_trains_into_the_bucket_and_evaluates_from_it(tmp_path, cwd, s3_bucket, s3_server,
                                                                   bucket_dataset, capsys):
    cfg = bucket_config(tmp_path, s3_bucket, bucket_dataset, epochs=2, run_name="s3run")
    result = train(cfg)
    run_dir = f"{s3_bucket}/runs/s3run"
    assert result.run_dir == run_dir
    assert result.checkpoint == f"{run_dir}/checkpoints/checkpoint_000001"
    assert result.extra["workers"][0]["rank"] == 0
    stored = keys(s3_server, run_dir)
    assert stored == sorted([*(f"checkpoints/checkpoint_00000{i}/{f}" for i in (0, 1) for f in CHECKPOINT_FILES),
                             "checkpoints/latest.json", "history.json", "results.json"])
    assert files.read_json(f"{run_dir}/checkpoints/latest.json")["name"] == "checkpoint_000001"
    saved = files.read_json(f"{run_dir}/results.json")
    assert saved["checkpoint"] == result.checkpoint and saved["epochs_run"] == 2
    assert [h["epoch"] for h in files.read_json(f"{run_dir}/history.json")["history"]] == [1, 2]
    assert load_state(result.checkpoint)["epoch"] == 2
    assert "negatives_test_seed42_n5.parquet" in keys(s3_server, bucket_dataset)   # the sampled protocol's cache

    # Loaded back from the bucket (another node, a later job): the same test metrics.
    dataset = Dataset.read(bucket_dataset)
    again = evaluate(load_scorer(run_dir, dataset, cfg), dataset, "test", cfg, protocols=result.test.protocols)
    assert again.metrics == result.test.metrics

    # `llm-emf evaluate --run s3://...`: the dataset the run names, results written beside the run.
    capsys.readouterr()
    assert main(["evaluate", "--run", run_dir, "eval.n_negatives=5", "seed=7"]) == 0
    assert f"results written to {run_dir}/evaluation.json" in capsys.readouterr().out
    evaluated = files.read_json(f"{run_dir}/evaluation.json")["splits"]["test"]
    assert evaluated["metrics"] == json.loads(json.dumps(result.test.to_dict()["metrics"]))


def test_a_killed_local_run_resumes_from_the_bucket_like_an_uninterrupted_one(tmp_path, cwd, s3_bucket, s3_server,
                                                                              bucket_dataset):
    full = train(bucket_config(tmp_path, s3_bucket, bucket_dataset, epochs=2, run_name="full"))
    crash = bucket_config(tmp_path, s3_bucket, bucket_dataset, epochs=2, run_name="crash")
    starts = StartEpochs()
    with pytest.raises(RuntimeError, match="injected failure after epoch 1"):
        train(crash, hooks=[FailOnceAfterEpoch(1), starts])
    checkpoints = f"{s3_bucket}/runs/crash/checkpoints"
    assert files.listdir(checkpoints) == ["checkpoint_000000", "latest.json"]
    # a writer killed while uploading the next checkpoint: some of its files, and no marker naming it
    files.write_text(f"{checkpoints}/checkpoint_000001/config.yaml", "half an upload\n")
    resumed = train(crash, hooks=[FailOnceAfterEpoch(1), starts])
    assert starts.seen == [0, 1]                                     # epoch 1 restored, not trained again
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history == full.history
    assert resumed.test.metrics == full.test.metrics
    assert keys(s3_server, f"{checkpoints}/checkpoint_000001") == CHECKPOINT_FILES   # replaced whole
    # a driver restart: one epoch, then the same run name asked for two
    train(bucket_config(tmp_path, s3_bucket, bucket_dataset, epochs=1, run_name="restart"))
    restarted = train(bucket_config(tmp_path, s3_bucket, bucket_dataset, epochs=2, run_name="restart"))
    assert restarted.history == full.history


def test_a_corrupt_checkpoint_in_the_bucket_is_set_aside(tmp_path, cwd, s3_bucket, s3_server):
    session = LocalSession(f"{s3_bucket}/run")
    cfg = tiny_train_config(tmp_path)
    for epoch in (1, 2, 3):
        source = save_checkpoint(tmp_path / f"src{epoch}", {"epoch": epoch, "w": torch.arange(4096.0)}, cfg)
        session.report({"epoch": epoch}, str(source))
    checkpoints = f"{s3_bucket}/run/checkpoints"
    assert files.listdir(checkpoints) == ["checkpoint_000001", "checkpoint_000002", "latest.json"]   # 2 kept
    latest = session.latest_path()
    assert latest.name == "checkpoint_000002" and not files.is_remote(latest)
    assert load_state(latest)["epoch"] == 3
    state = bytearray(files.read_bytes(f"{checkpoints}/checkpoint_000002/{STATE_FILE}"))
    state[len(state) // 2] ^= 0xFF
    files.write_bytes(f"{checkpoints}/checkpoint_000002/{STATE_FILE}", bytes(state))
    with pytest.warns(RuntimeWarning, match="checkpoint_000002 is corrupt.*moved to corrupt_checkpoint_000002"):
        assert session.latest_location() == f"{checkpoints}/checkpoint_000001"
    assert load_state(session.latest_path())["epoch"] == 2
    assert files.listdir(checkpoints) == ["checkpoint_000001", "corrupt_checkpoint_000002", "latest.json"]
    assert keys(s3_server, f"{checkpoints}/corrupt_checkpoint_000002") == CHECKPOINT_FILES
    assert find_checkpoint(f"{s3_bucket}/run") == f"{checkpoints}/checkpoint_000001"   # never the set-aside one
    with pytest.raises(CorruptCheckpoint, match=f"{checkpoints}/corrupt_checkpoint_000002/state.pt: expected sha256"):
        load_state(f"{checkpoints}/corrupt_checkpoint_000002")


def test_checkpoint_folders_written_to_and_read_from_the_bucket(tmp_path, cwd, s3_bucket, s3_server):
    folder = save_checkpoint(f"{s3_bucket}/direct", {"epoch": 5, "w": torch.arange(8.0)}, tiny_train_config(tmp_path))
    assert folder == f"{s3_bucket}/direct" and keys(s3_server, folder) == CHECKPOINT_FILES
    verify_state_file(folder)
    assert load_state(folder)["epoch"] == 5 and load_checkpoint_config(folder).seed == 7
    files.write_bytes(f"{folder}/{STATE_FILE}", files.read_bytes(f"{folder}/{STATE_FILE}")[:100])
    with pytest.raises(CorruptCheckpoint, match=f"{folder}/state.pt: expected sha256 .* truncated or corrupted"):
        verify_state_file(folder)


def test_batch_recommendations_from_a_bucket_run_into_the_bucket(tmp_path, cwd, s3_bucket, s3_server,
                                                                 bucket_dataset, ray_with_this_env):
    import pyarrow.parquet as pq
    from llm_emf.serving.batch import recommend_all

    tiny_dataset().write(tmp_path / "dataset")
    local_run = train(tiny_train_config(tmp_path, epochs=1, run_name="local"))      # the reference, on disk
    remote_run = train(bucket_config(tmp_path, s3_bucket, bucket_dataset, epochs=1, run_name="r"))
    output = f"{s3_bucket}/recs/recommendations.parquet"
    summary = recommend_all(remote_run.run_dir, output, "test", k=4, batch_size=8, dashboard=False)
    assert summary.done == 20
    assert keys(s3_server, f"{s3_bucket}/recs") == ["recommendations.json", "recommendations.parquet"]
    assert files.read_json(f"{s3_bucket}/recs/recommendations.json")["run"] == remote_run.run_dir
    reference = tmp_path / "recs.parquet"
    recommend_all(local_run.run_dir, reference, "test", k=4, batch_size=8, dashboard=False)
    got = files.read_parquet(output).sort_by("request")
    assert got.select(["request", "item_ids"]).equals(pq.read_table(reference).sort_by("request")
                                                      .select(["request", "item_ids"]))
    again = recommend_all(remote_run.run_dir, output, "test", k=4, batch_size=8, dashboard=False)
    assert again.skipped_cached == 20 and again.done == 0


def test_item_features_in_the_bucket_train_and_pin_the_model(tmp_path, cwd, s3_bucket, bucket_dataset):
    from llm_emf.config import ConfigError
    from llm_emf.model import load_item_features
    from llm_emf.serving import load_models

    from test_train_local import _write_tiny_features
    from train_tiny_dataset import N_X, N_Y

    features = f"{s3_bucket}/features/features.parquet"
    files.upload(_write_tiny_features(tmp_path / "features.parquet", N_X + N_Y), features)
    assert load_item_features(features, Dataset.read(bucket_dataset).items).n_items == N_X + N_Y
    cfg = bucket_config(tmp_path, s3_bucket, bucket_dataset, epochs=1, run_name="mm")
    cfg.model.use_text = cfg.model.use_image = True
    cfg.model.features = features
    result = train(cfg)
    load_models(result.run_dir)                      # the run's model.features is the URI: read from the bucket
    files.upload(_write_tiny_features(tmp_path / "other.parquet", N_X + N_Y, seed=1), features)
    with pytest.raises(ConfigError, match=f"expected the item features this model was trained with.*'{features}'"):
        load_models(result.run_dir)


@pytest.mark.slow
def test_ray_train_worker_with_bucket_storage_reports_its_node(tmp_path, cwd, s3_bucket, s3_server, bucket_dataset,
                                                               capsys, monkeypatch, ray_with_this_env):
    import ray
    from mlflow import MlflowClient

    from llm_emf.training.tracked import train_tracked

    monkeypatch.setenv("RAY_TRAIN_V2_ENABLED", "1")
    cfg = bucket_config(tmp_path, s3_bucket, bucket_dataset, epochs=2, num_workers=1, cpus_per_worker=0.5,
                        run_name="ray")
    cfg.tracking.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = train_tracked(cfg)
    out = capsys.readouterr().out
    run_dir = f"{s3_bucket}/runs/ray"
    assert result.checkpoint.startswith(f"{run_dir}/checkpoint_")             # Ray's folder, by its URI
    assert load_state(result.checkpoint)["epoch"] == 2
    assert [h["epoch"] for h in result.history] == [1, 2]
    [worker] = result.extra["workers"]
    assert worker["rank"] == 0 and worker["node_id"] == ray.get_runtime_context().get_node_id()
    # the driver's log shows where rank 0 ran and one line per epoch (workers' own output is not forwarded)
    assert f"train: rank 0/1 on node {worker['node_id']}" in out
    assert "epoch 1/2: train loss" in out and "epoch 2/2: train loss" in out
    saved = files.read_json(f"{run_dir}/results.json")
    assert saved["checkpoint"] == result.checkpoint and saved["workers"][0]["node_id"] == worker["node_id"]
    assert {"history.json", "results.json", "training_curves.png", "test_mrr.png"} <= set(files.listdir(run_dir))
    tags = MlflowClient(tracking_uri=cfg.tracking.uri).get_run(result.extra["mlflow_run_id"]).data.tags
    assert json.loads(tags["train_worker_nodes"])[0]["node_id"] == worker["node_id"]
    assert tags["checkpoint"] == result.checkpoint
