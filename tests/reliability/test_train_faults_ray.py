"""Training faults under Ray Train (2-worker DDP on a small local Ray): a worker process SIGKILLed mid-epoch
and a corrupt latest checkpoint both end exactly where an uninterrupted run with the same seed ends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llm_emf.checkpoints import STATE_FILE
from llm_emf.training import train

from faults import KillWorkerOnceAt
from train_tiny_dataset import tiny_dataset, tiny_train_config

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.slow]     # Ray processes killed


def ray_config(folder: Path, **train_fields):
    fields = dict(epochs=3, num_workers=2, cpus_per_worker=0.5, max_failures=1) | train_fields
    return tiny_train_config(folder, **fields)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray_faults")
    tiny_dataset().write(folder / "dataset")
    return folder


@pytest.fixture(scope="module")
def uninterrupted(workdir, local_ray):
    return train(ray_config(workdir, run_name="uninterrupted"))


def assert_same_run(result, reference) -> None:
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert result.history == reference.history                 # train_loss and every validation metric
    assert result.best == reference.best
    assert result.test.metrics == reference.test.metrics


def test_worker_process_killed_mid_epoch_resumes_from_the_latest_checkpoint(workdir, uninterrupted):
    # rank 1 is SIGKILLed while taking batch 2 of epoch 2 (each rank has 3 batches per epoch here)
    killed = train(ray_config(workdir, run_name="killed"), hooks=[KillWorkerOnceAt(epoch=2, step=2, rank=1)])
    notes = (Path(killed.run_dir) / "injected_kill.txt").read_text().splitlines()
    assert notes[0] == "SIGKILL of rank 1 at step 2 of epoch 2"
    # Ray Train (FailureConfig max_failures=1) restarted both workers from epoch 1's checkpoint, not from scratch
    assert sorted(notes[1:]) == ["rank 0 restarted after epoch 1", "rank 1 restarted after epoch 1"]
    assert killed.history[0]["world_size"] == 2
    assert_same_run(killed, uninterrupted)


def test_corrupt_latest_ray_checkpoint_falls_back_to_the_previous_one(workdir, uninterrupted):
    train(ray_config(workdir, epochs=2, run_name="hurt"))                        # stopped after epoch 2
    run = workdir / "runs" / "hurt"
    checkpoints = sorted(p for p in run.glob("checkpoint_*") if p.is_dir())
    assert len(checkpoints) == 2                                                  # num_to_keep=2
    state = checkpoints[-1] / STATE_FILE                                          # epoch 2's state, half-written
    os.truncate(state, state.stat().st_size // 2)
    resumed = train(ray_config(workdir, run_name="hurt"))                        # same name, epochs=3
    note = (run / f"{checkpoints[-1].name}.corrupt.txt").read_text()
    assert f"checkpoint {checkpoints[-1].name} is corrupt" in note and "truncated or corrupted" in note
    assert f"resuming from the previous checkpoint {checkpoints[0].name}" in note
    assert_same_run(resumed, uninterrupted)
