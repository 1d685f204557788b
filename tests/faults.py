"""Fault injection for the reliability tests, through the library's hook points (never library code).

Training (``train(cfg, hooks=[...])``, llm_emf/training/hooks.py), each fault injected once per run folder:
- ``FailOnceAfterEpoch(n)`` raises in every worker after epoch n's checkpoint (marker ``injected_failure.txt``);
- ``KillWorkerOnceAt(epoch, step, rank)`` SIGKILLs that worker's own process as it starts batch ``step`` of
  ``epoch`` (1-based), as an OOM killer or a lost node would: no exception, no cleanup, no final report
  (marker ``injected_kill.txt``; each restarted worker then appends where it resumed). In local mode (rank 0)
  that process is the caller's own: a driver killed mid-epoch (run it in a subprocess).

Ray Train workers are separate processes that cannot import this module (it is imported from the tests'
folder, which is not on their path), so its classes are pickled by value.

Feature and batch-recommendation actors: ``actor_hook_env(marker)`` is the environment that makes the first
actor call (of a job started with it) create ``marker`` and exit its process, as a segfault or the OOM killer
would; later calls do nothing (llm_emf.features.actors.fault_point calls $LLM_EMF_ACTOR_HOOK).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import ray.cloudpickle

from llm_emf import files
from llm_emf.features.actors import ACTOR_HOOK
from llm_emf.training import TrainHook, WorkerContext

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

TESTS = Path(__file__).resolve().parent
EXIT_MARKER = "LLM_EMF_TEST_ACTOR_EXIT_MARKER"


class FailOnceAfterEpoch(TrainHook):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, ctx: WorkerContext, epoch: int, metrics: dict) -> None:
        marker = files.join(ctx.run_dir, "injected_failure.txt")       # the run folder may be a bucket's
        if epoch == self.epoch and not files.exists(marker):
            files.write_text(marker, f"injected failure after epoch {epoch}\n")
            raise RuntimeError(f"injected failure after epoch {epoch} (test of FailureConfig recovery)")


class KillWorkerOnceAt(TrainHook):
    def __init__(self, epoch: int, step: int, rank: int):
        self.epoch, self.step, self.rank = epoch, step, rank

    def on_train_start(self, ctx: WorkerContext, start_epoch: int) -> None:
        marker = Path(ctx.run_dir) / "injected_kill.txt"
        if marker.exists():
            with marker.open("a") as out:
                out.write(f"rank {ctx.rank} restarted after epoch {start_epoch}\n")

    def on_batch_start(self, ctx: WorkerContext, epoch: int, step: int) -> None:
        marker = Path(ctx.run_dir) / "injected_kill.txt"
        if (epoch, step, ctx.rank) == (self.epoch, self.step, self.rank) and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"SIGKILL of rank {ctx.rank} at step {step} of epoch {epoch}\n")
            os.kill(os.getpid(), signal.SIGKILL)


def exit_actor_once() -> None:
    """The actor hook: the first call that creates the marker file named by $LLM_EMF_TEST_ACTOR_EXIT_MARKER
    exits its own process."""
    try:
        os.close(os.open(os.environ[EXIT_MARKER], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(1)


def actor_hook_env(marker: Path) -> dict[str, str]:
    """Environment variables for a job (a subprocess) whose first actor call exits its process. Its actors
    import this module by name, so the tests' folder goes on their PYTHONPATH."""
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    return {ACTOR_HOOK: f"{__name__}:exit_actor_once", EXIT_MARKER: str(marker), "PYTHONPATH": path}
