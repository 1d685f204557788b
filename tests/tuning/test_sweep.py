"""Ray Tune sweeps on the bundled sample: 4 trials, ASHA stopping, MLflow parent/children, resume (the CLI's
errors that need no sweep: test_tune_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llm_emf.config import load_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def sample_dataset(tmp_path_factory):
    from llm_emf.data.prepare import prepare_dataset

    out = tmp_path_factory.mktemp("sample")
    prepare_dataset(load_config(None, ["data.source=sample", f"data.dataset={out}"]))
    return out


def _cfg(dataset, tmp_path, space, *extra):
    return load_config(None, [
        f"data.dataset={dataset}", f"tune.space={space}", f"tune.storage={tmp_path / 'tune'}",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "model.hidden_size=16", "train.epochs=3",
        "train.batch_size=64", "eval.n_negatives=49", "eval.protocol=sampled", "train.select_protocol=sampled",
        "tune.cpus_per_trial=0.5", "seed=3", *extra])


def _runs(tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("llm-emf")
    return client, client.search_runs([exp.experiment_id])


def test_four_trial_sweep_tracks_parent_and_children(sample_dataset, local_ray, tmp_path):
    from llm_emf.tuning.sweep import run_sweep

    root = Path(__file__).resolve().parents[2]
    res = run_sweep(_cfg(sample_dataset, tmp_path, root / "tune_spaces/attention.yaml", "tune.num_samples=4",
                         "train.epochs=2"), log=lambda *_: None)
    assert res.n_trials == 4
    best = yaml.safe_load(Path(res.best_config_path).read_text())
    assert best["model"]["n_heads"] == res.best_params["model.n_heads"]
    assert load_config(res.best_config_path).model.n_blocks == res.best_params["model.n_blocks"]

    client, runs = _runs(tmp_path)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == res.parent_run_id]
    assert len(parents) == 1 and parents[0].info.run_id == res.parent_run_id
    assert len(children) == 4
    for child in children:
        assert child.data.params["model.n_heads"] in {"1", "2", "4"}
        assert child.data.metrics["train_loss"] > 0
        assert "config.yaml" in {a.path for a in client.list_artifacts(child.info.run_id)}
        assert child.info.status in ("FINISHED", "KILLED")
    best_children = [c for c in children if c.data.tags.get("best_trial") == "true"]
    assert len(best_children) == 1
    assert parents[0].data.tags["best_run_id"] == best_children[0].info.run_id


def test_asha_stops_a_trial_that_cannot_learn(sample_dataset, local_ray, tmp_path):
    """lr=0 never improves on its first validation; run after a learning trial, ASHA must cut it at rung 1."""
    from llm_emf.tuning.sweep import run_sweep

    space = tmp_path / "lr.yaml"
    space.write_text("train.lr: {grid: [0.01, 0.0]}\n")      # in this order, one trial at a time
    res = run_sweep(_cfg(sample_dataset, tmp_path, space, "tune.num_samples=2", "tune.max_concurrent_trials=1",
                         "tune.grace_period=1", "train.epochs=4", "model.dropout=0.0"), log=lambda *_: None)
    _, runs = _runs(tmp_path)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    lrs = [r.data.params["train.lr"] for r in children]
    assert sorted(lrs) == ["0.0", "0.0", "0.01", "0.01"]
    stopped = [r for r in children if r.data.tags.get("stopped_early") == "true"]
    assert stopped, "ASHA stopped no trial"
    assert all(r.data.params["train.lr"] == "0.0" for r in stopped)
    assert res.best_params["train.lr"] == 0.01


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(sample_dataset, local_ray, tmp_path):
    """Ctrl-C while the second trial runs: the sweep stops with its state saved and says so; the same call
    resumes it into the same MLflow parent, keeps the finished trial and continues the interrupted one."""
    import os
    import signal

    from ray.tune import Callback

    from llm_emf.tuning.sweep import SweepInterrupted, run_sweep

    class CtrlC(Callback):
        def __init__(self, marker):
            self.completed = set()
            self.marker = marker

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.completed.add(trial.trial_id)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            # Once only (a file, not memory: Tuner.restore brings back a pickled copy of this callback).
            if self.completed and trial.trial_id not in self.completed and not self.marker.exists():
                self.marker.write_text(trial.trial_id)
                os.kill(os.getpid(), signal.SIGINT)   # what Ctrl-C sends; Tune's handler takes it

    root = Path(__file__).resolve().parents[2]
    cfg = _cfg(sample_dataset, tmp_path, root / "tune_spaces/optim.yaml", "tune.num_samples=3",
               "tune.max_concurrent_trials=1", "tune.name=resumable", "train.epochs=2")
    with pytest.raises(SweepInterrupted, match="1 of 3 trials finished.*same command"):
        run_sweep(cfg, log=lambda *_: None, callbacks=[CtrlC(tmp_path / "interrupted")])
    interrupted = (tmp_path / "interrupted").read_text()
    _, runs = _runs(tmp_path)
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "KILLED"
    done_before = {r.data.tags["trial_id"] for r in runs if r.info.status == "FINISHED" and "trial_id" in r.data.tags}
    assert len(done_before) == 1 and interrupted not in done_before
    assert not (tmp_path / "tune/resumable/best_config.yaml").exists()

    res = run_sweep(cfg, log=lambda *_: None)
    assert res.n_trials == 3 and res.parent_run_id == parent.info.run_id
    _, runs = _runs(tmp_path)
    assert [r.info.status for r in runs if "mlflow.parentRunId" not in r.data.tags] == ["FINISHED"]
    per_trial: dict[str, list[str]] = {}
    for r in runs:
        if "trial_id" in r.data.tags:
            assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
            per_trial.setdefault(r.data.tags["trial_id"], []).append(r.info.status)
    assert len(per_trial) == 3 and interrupted in per_trial
    for trial_id in done_before:
        assert per_trial[trial_id] == ["FINISHED"], f"finished trial {trial_id} was run again"
    assert len(per_trial[interrupted]) == 1, "the resumed trial opened a second MLflow run"
    assert per_trial[interrupted][0] in ("FINISHED", "KILLED")   # KILLED: ASHA stopped it after resuming
