"""Ray Train V2: 2-worker DDP (gloo) on a small local Ray, and recovery from a worker failure."""

import os
from pathlib import Path

import pytest

from llm_emf.checkpoints import load_state
from llm_emf.training import train

from faults import FailOnceAfterEpoch
from train_tiny_dataset import tiny_train_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_worker_ddp_trains_reports_and_recovers_from_a_worker_failure(tmp_path, dataset_dir, local_ray):
    cfg = tiny_train_config(tmp_path, epochs=2, num_workers=2, cpus_per_worker=0.5, max_failures=1,
                            run_name="ddp")
    result = train(cfg, hooks=[FailOnceAfterEpoch(1)])
    # the injected crash happened after epoch 1 and Ray restarted the worker group from that checkpoint
    assert (Path(result.run_dir) / "injected_failure.txt").exists()
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.history[0]["world_size"] == 2
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]
    assert Path(result.checkpoint).is_relative_to(tmp_path / "runs" / "ddp")
    state = load_state(result.checkpoint)
    assert state["epoch"] == 2
    assert set(result.test.metrics["full"]) == {"Food", "Kitchen"}
    assert (Path(result.run_dir) / "results.json").is_file()


def test_driver_restart_with_the_same_run_name_resumes(tmp_path, dataset_dir, local_ray):
    first = train(tiny_train_config(tmp_path, epochs=1, num_workers=1, cpus_per_worker=0.5, run_name="again"))
    assert [h["epoch"] for h in first.history] == [1]
    # a different lr would give a different epoch 1 if it were retrained instead of restored
    second = train(tiny_train_config(tmp_path, epochs=2, num_workers=1, cpus_per_worker=0.5, run_name="again",
                                     lr=2e-2))
    assert [h["epoch"] for h in second.history] == [1, 2]
    assert second.history[0] == first.history[0]


class _Joined(Exception):
    pass


def test_ray_training_joins_ray_through_ensure_ray(tmp_path, dataset_dir, monkeypatch):
    # `llm-emf train train.num_workers=N` must honour pipeline.ray_address and the dashboard setting like every
    # other command, not let the trainer start a default local Ray by itself.
    seen = {}

    def fake_ensure_ray(address="", dashboard=True, **_):
        seen.update(address=address, dashboard=dashboard)
        raise _Joined

    monkeypatch.setattr("llm_emf.training.api.ensure_ray", fake_ensure_ray)
    cfg = tiny_train_config(tmp_path, epochs=1, num_workers=2, run_name="joins")
    cfg.pipeline.ray_address, cfg.pipeline.ray_dashboard = "ray://head.example:10001", False
    with pytest.raises(_Joined):
        train(cfg)
    assert seen == {"address": "ray://head.example:10001", "dashboard": False}
