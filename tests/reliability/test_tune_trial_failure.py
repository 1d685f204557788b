"""A sweep trial that raises is retried tune.max_retries times, then reported; the sweep goes on without it."""

from __future__ import annotations

import pytest
import torch

from llm_emf.config import load_config

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.slow,     # a Ray Tune trial that dies
              pytest.mark.skipif(torch.cuda.is_available(), reason="the failing trial asks for CUDA on a CPU host")]


@pytest.fixture(scope="module")
def sample_dataset(tmp_path_factory):
    from llm_emf.data.prepare import prepare_dataset

    out = tmp_path_factory.mktemp("sample")
    prepare_dataset(load_config(None, ["data.source=sample", f"data.dataset={out}"]))
    return out


def test_failing_trial_is_retried_then_reported_and_the_sweep_continues(sample_dataset, local_ray, tmp_path):
    from mlflow.tracking import MlflowClient

    from llm_emf.tuning.sweep import run_sweep

    space = tmp_path / "gpu.yaml"
    # train.use_gpu=true is a valid config value, but LocalSession raises ConfigError without CUDA: a trial
    # that fails at run time, every time.
    space.write_text("train.use_gpu: {grid: [false, true]}\n")
    cfg = load_config(None, [
        f"data.dataset={sample_dataset}", f"tune.space={space}", f"tune.storage={tmp_path / 'tune'}",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "model.hidden_size=16", "train.epochs=1",
        "train.batch_size=64", "eval.n_negatives=49", "eval.protocol=sampled", "train.select_protocol=sampled",
        "tune.cpus_per_trial=0.5", "tune.num_samples=1", "tune.max_concurrent_trials=1", "tune.max_retries=2",
        "seed=3"])
    logged: list[str] = []
    res = run_sweep(cfg, log=lambda *a: logged.append(" ".join(map(str, a))))

    assert res.n_trials == 2
    assert res.best_params == {"train.use_gpu": False}          # the sweep finished the healthy trial
    assert len(res.failed_trials) == 1 and "expected a CUDA device" in res.failed_trials[0]
    assert any("trial failed after 2 retries" in line and "use_gpu" in line for line in logged)

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("llm-emf")
    children = [r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    failed = [r for r in children if r.info.status == "FAILED"]
    assert len(failed) == 1 + 2                                   # the first attempt and 2 retries
    assert all("expected a CUDA device" in r.data.tags["failure"] for r in failed)
    assert [r.info.status for r in children if r not in failed] == ["FINISHED"]
