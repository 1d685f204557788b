"""The training driver SIGKILLed mid-epoch (local mode: the driver is the training process): rerunning the
same command resumes from the latest checkpoint and ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from llm_emf.training import train

from train_tiny_dataset import tiny_dataset, tiny_train_config

pytestmark = pytest.mark.integration   # two short training subprocesses (the driver is killed), no Ray
TESTS = Path(__file__).resolve().parents[1]

# The same command each time; the kill is injected once per run folder (a marker file), so the first
# process dies while taking batch 2 of epoch 2 and the second runs to the end.
COMMAND = """
import sys, torch
sys.path[:0] = [{tests!r}, {tests!r} + "/training"]
from pathlib import Path
from faults import KillWorkerOnceAt
from train_tiny_dataset import tiny_train_config
from llm_emf.training import train
torch.set_num_threads(1)
train(tiny_train_config(Path({tmp!r}), epochs=3, run_name="killed"), hooks=[KillWorkerOnceAt(epoch=2, step=2, rank=0)])
"""


def as_json(value):
    return json.loads(json.dumps(value, default=str))


def test_rerunning_a_killed_driver_resumes_and_matches_an_uninterrupted_run(tmp_path):
    tiny_dataset().write(tmp_path / "dataset")
    command = [sys.executable, "-c", COMMAND.format(tests=str(TESTS), tmp=str(tmp_path))]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    run = tmp_path / "runs" / "killed"
    assert (run / "injected_kill.txt").read_text() == "SIGKILL of rank 0 at step 2 of epoch 2\n"
    assert not (run / "results.json").exists()
    assert sorted(p.name for p in (run / "checkpoints").glob("checkpoint_*")) == ["checkpoint_000000"]  # epoch 1

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert (run / "injected_kill.txt").read_text().splitlines()[1:] == ["rank 0 restarted after epoch 1"]
    resumed = json.loads((run / "results.json").read_text())
    history = json.loads((run / "history.json").read_text())["history"]

    full = train(tiny_train_config(tmp_path, epochs=3, run_name="full"))
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history == as_json(full.history)
    assert resumed["test"] == as_json(full.summary()["test"])
    assert resumed["best"] == as_json(full.summary()["best"])
