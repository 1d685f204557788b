"""Tracker against a real sqlite MLflow store, read back with MlflowClient."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from llm_emf.config import flatten_config
from llm_emf.tracking import Tracker, TrackingWarning
from llm_emf.tracking.run_info import PARAM_VALUE_LIMIT

pytestmark = pytest.mark.integration
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _download(client, run_id, path, dst):
    return Path(client.download_artifacts(run_id, path, str(dst)))


def test_run_records_params_tags_metrics_and_artifacts(make_cfg, history, tmp_path):
    cfg = make_cfg("seed=7", "eval.protocol=sampled", "model.n_heads=2", "tracking.experiment=records")
    results = {"sampled": {"X": {"MRR": 0.31, "NDCG@10": 0.4}, "Y": {"MRR": 0.22}}, "best_epoch": 3}
    with Tracker(cfg, "full-run", dataset_fingerprint="fp-123") as tr:
        tr.log_history(history)
        tr.log_results(results, prefix="test/")
        tr.log_training_curves(history, tmp_path / "local" / "curves.png")
        tr.log_metric_bars({"a": results, "b": {"sampled": {"X": {"MRR": 0.2}}}}, metric="MRR")
        tr.log_checkpoint(tmp_path / "ckpt" / "epoch_3.pt")
    assert tr.error is None

    client = MlflowClient(tracking_uri=tr.uri)
    run = client.get_run(tr.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "full-run"
    assert client.get_experiment(run.info.experiment_id).name == "records"

    params = run.data.params
    assert len(params) == len(flatten_config(cfg))
    assert params["model.n_heads"] == "2" and params["seed"] == "7" and params["eval.ks"] == "[1, 5, 10]"
    assert params["tracking.experiment"] == "records"

    tags = run.data.tags
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    assert tags["git_commit"] == (head.stdout.strip() if head.returncode == 0 else "unknown")
    assert tags["dataset_fingerprint"] == "fp-123"
    assert (tags["seed"], tags["protocol"], tags["llm_emf_version"]) == ("7", "sampled", "0.1.0")
    assert tags["checkpoint"] == str((tmp_path / "ckpt" / "epoch_3.pt").resolve())

    mrr_x = client.get_metric_history(tr.run_id, "valid/X/MRR")
    assert [(m.step, round(m.value, 9)) for m in sorted(mrr_x, key=lambda m: m.step)] == [(1, 0.1), (2, 0.2), (3, 0.3)]
    loss = client.get_metric_history(tr.run_id, "train_loss")
    assert sorted((m.step, round(m.value, 6)) for m in loss) == [(1, 1.0), (2, 0.5), (3, 0.333333)]
    assert "epoch" not in run.data.metrics
    assert run.data.metrics["valid/Y/NDCG_at_10"] == pytest.approx(0.3)      # '@' is not allowed by MLflow
    assert run.data.metrics["test/sampled/X/MRR"] == pytest.approx(0.31)
    assert run.data.metrics["test/best_epoch"] == 3

    names = {a.path for a in client.list_artifacts(tr.run_id)}
    assert {"config.yaml", "results.json", "plots"} <= names
    logged_cfg = yaml.safe_load(_download(client, tr.run_id, "config.yaml", tmp_path).read_text())
    assert logged_cfg["model"]["n_heads"] == 2 and logged_cfg["seed"] == 7
    assert json.loads(_download(client, tr.run_id, "results.json", tmp_path).read_text()) == results
    plots = sorted(a.path for a in client.list_artifacts(tr.run_id, "plots"))
    assert plots == ["plots/MRR_bars.png", "plots/curves.png"]
    for p in plots:
        data = _download(client, tr.run_id, p, tmp_path).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    assert (tmp_path / "local" / "curves.png").read_bytes().startswith(PNG_MAGIC)   # local copy kept too


def test_checkpoint_upload_and_long_param_values(make_cfg, tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"weights")
    with Tracker(make_cfg("tracking.log_checkpoints=true"), "ckpt", log_config=False) as tr:
        tr.log_params({"long": "x" * 10_000, "short": "ok"})
        tr.log_checkpoint(ckpt)
        tr.log_checkpoint("s3://bucket/run/ckpt")   # a URI is recorded as-is, never uploaded
    client = MlflowClient(tracking_uri=tr.uri)
    run = client.get_run(tr.run_id)
    assert len(run.data.params) == 2 and run.data.params["short"] == "ok"
    long = run.data.params["long"]
    assert len(long) == PARAM_VALUE_LIMIT and "truncated from 10000 chars" in long and long.startswith("xxxx")
    assert run.data.tags["checkpoint"] == "s3://bucket/run/ckpt"
    assert [a.path for a in client.list_artifacts(tr.run_id, "checkpoint")] == ["checkpoint/model.safetensors"]


def test_resuming_a_run_appends_metrics_without_relogging_params(make_cfg):
    with Tracker(make_cfg("train.epochs=2"), "resumable") as first:
        first.log_history([{"epoch": 1, "loss": 0.9}, {"epoch": 2, "loss": 0.8}])
    client = MlflowClient(tracking_uri=first.uri)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackingWarning)      # a changed param value would warn
        with Tracker(make_cfg("train.epochs=3"), run_id=first.run_id) as again:
            assert client.get_run(first.run_id).info.status == "RUNNING"
            again.log_history([{"epoch": 3, "loss": 0.7}])
    assert client.get_run(first.run_id).info.status == "FINISHED"
    assert again.run_id == first.run_id and client.get_run(first.run_id).data.params["train.epochs"] == "2"
    assert sorted(m.step for m in client.get_metric_history(first.run_id, "loss")) == [1, 2, 3]


def test_exception_in_block_marks_run_failed_and_propagates(make_cfg):
    with pytest.raises(RuntimeError, match="boom"):
        with Tracker(make_cfg(), "crash", log_config=False) as tr:
            raise RuntimeError("boom")
    run = MlflowClient(tracking_uri=tr.uri).get_run(tr.run_id)
    assert run.info.status == "FAILED" and run.data.tags["failure"] == "RuntimeError: boom"


def test_sweep_parent_with_three_children_tags_the_best(make_cfg):
    cfg = make_cfg("tracking.experiment=sweep")
    parent = Tracker.start_parent(cfg, "sweep-1")
    child_ids = []
    for i, mrr in enumerate([0.2, 0.5, 0.3]):
        with parent.child(f"trial_{i}", cfg=make_cfg("tracking.experiment=sweep", f"train.lr={0.01 * (i + 1)}")) as ch:
            ch.log_metrics({"valid": {"X": {"mrr": mrr}}}, step=1)
        child_ids.append(ch.run_id)
    # a run that never reported the metric is not a candidate
    with parent.child("trial_crashed", log_config=False):
        pass

    assert parent.tag_best_child("valid/X/mrr", mode="max") == child_ids[1]
    client = MlflowClient(tracking_uri=parent.uri)
    assert client.get_run(parent.run_id).data.tags["best_run_id"] == child_ids[1]
    children = {r.info.run_id: r for r in parent.child_runs()}
    assert set(children) == {*child_ids, next(iter(set(children) - set(child_ids)))} and len(children) == 4
    assert all(r.data.tags["mlflow.parentRunId"] == parent.run_id for r in children.values())
    assert [children[c].data.tags.get("best_trial") for c in child_ids] == [None, "true", None]
    assert children[child_ids[2]].data.params["train.lr"] == "0.03"

    # re-selecting by another criterion moves the tag instead of leaving two "best" children
    assert parent.tag_best_child("valid/X/mrr", mode="min") == child_ids[0]
    tags = [client.get_run(c).data.tags.get("best_trial") for c in child_ids]
    assert tags == ["true", "false", None]
    parent_tags = client.get_run(parent.run_id).data.tags
    assert (parent_tags["best_run_id"], parent_tags["best_value"]) == (child_ids[0], "0.2")
    assert parent_tags["llm_emf.role"] == "sweep" and children[child_ids[0]].data.tags["llm_emf.role"] == "trial"
    parent.end()
    assert client.get_run(parent.run_id).info.status == "FINISHED"
    with pytest.raises(ValueError, match="'max' or 'min'"):
        parent.tag_best_child("valid/X/mrr", mode="best")


def test_children_from_concurrent_processes_share_one_store(make_cfg, tmp_path):
    """Tune trials are separate processes: each opens its own client on the same sqlite store."""
    cfg = make_cfg("tracking.experiment=procs")
    parent = Tracker.start_parent(cfg, "proc-sweep", log_config=False)
    script = (
        "import sys\n"
        "from llm_emf.config import load_config\n"
        "from llm_emf.tracking import Tracker\n"
        "uri, parent, i = sys.argv[1:]\n"
        "cfg = load_config(overrides=['tracking.experiment=procs'])\n"
        "with Tracker(cfg, f'trial_{i}', uri=uri, parent_run_id=parent) as tr:\n"
        "    tr.log_history([{'epoch': e, 'valid/X/mrr': int(i) * 0.1 + e * 0.01} for e in (1, 2)])\n"
        "assert tr.error is None, tr.error\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, parent.uri, parent.run_id, str(i)], cwd=tmp_path,
                              stderr=subprocess.PIPE, text=True) for i in (1, 2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    best_id = parent.tag_best_child("valid/X/mrr")
    children = {r.info.run_name: r for r in parent.child_runs()}
    assert sorted(children) == ["trial_1", "trial_2"]
    assert best_id == children["trial_2"].info.run_id
    history = MlflowClient(tracking_uri=parent.uri).get_metric_history(best_id, "valid/X/mrr")
    assert sorted((m.step, round(m.value, 9)) for m in history) == [(1, 0.21), (2, 0.22)]
    parent.end()


def test_unreachable_server_warns_once_and_training_goes_on(make_cfg, history, tmp_path):
    cfg = make_cfg("tracking.uri=http://127.0.0.1:9", "tracking.timeout_s=2")
    finished_epochs = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Tracker(cfg, "offline") as tr:
            for row in history:                         # the "training loop" keeps going
                tr.log_metrics(row, step=row["epoch"])
                finished_epochs.append(row["epoch"])
            tr.log_history(history)
            tr.log_results({"X": {"MRR": 0.1}})
            tr.log_training_curves(history, tmp_path / "curves.png")
            tr.log_checkpoint(tmp_path / "ckpt.pt")
        with Tracker(cfg, "offline-2") as again:          # a second run in the same process: no new warning
            again.log_metrics({"loss": 1.0})
        parent = Tracker.start_parent(cfg, "offline-sweep")
        assert parent.tag_best_child("loss") is None and parent.child_runs() == []
    ours = [w for w in caught if issubclass(w.category, TrackingWarning)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    message = str(ours[0].message)
    assert "http://127.0.0.1:9" in message and "Training goes on" in message
    assert finished_epochs == [1, 2, 3]
    assert not tr.active and tr.run_id is None and "no answer" in tr.error
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG_MAGIC)   # local plot still written


def test_store_failure_mid_run_warns_once_then_no_ops(make_cfg, monkeypatch):
    with Tracker(make_cfg(), "flaky", log_config=False) as tr:
        calls = []

        def broken_log_batch(*args, **kwargs):
            calls.append(1)
            raise OSError("disk full")

        monkeypatch.setattr(tr._client, "log_batch", broken_log_batch)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tr.log_metrics({"loss": 1.0}, step=1)
            tr.log_metrics({"loss": 0.5}, step=2)
            tr.log_params({"a": 1})
            tr.log_results({"X": {"MRR": 0.1}})
    assert len(calls) == 1
    ours = [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]
    assert len(ours) == 1 and "disk full" in ours[0] and tr.uri in ours[0]
    assert tr.error == "OSError: disk full" and not tr.active


def test_unwritable_store_warns_instead_of_raising(make_cfg, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.warns(TrackingWarning, match="a_file"):
        tr = Tracker(make_cfg(f"tracking.uri=sqlite:///{blocker}/sub/mlflow.db"), "x").start()
    assert not tr.active and tr.error


def test_disabled_tracking_does_nothing(make_cfg, tmp_path, history):
    db = tmp_path / "never.db"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Tracker(make_cfg("tracking.enabled=false", f"tracking.uri=sqlite:///{db}"), "off") as tr:
            tr.log_history(history)
            tr.log_results({"X": 1.0})
    assert not db.exists() and tr.run_id is None and tr.error is None
