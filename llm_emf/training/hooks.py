"""Per-worker training hooks: ``train(cfg, hooks=[...])`` (in the style of PyTorch Lightning's callbacks).

A hook subclasses :class:`TrainHook` and overrides any of its methods; the defaults do nothing. Each hook runs
inside every training worker: under Ray Train each worker is a separate process that gets its own unpickled
copy, so a hook must be picklable and its class importable there (or registered with
``ray.cloudpickle.register_pickle_by_value``); in local mode (``train.num_workers=0``) the objects passed to
``train`` are called in the caller's process. Epochs and steps are 1-based. An exception raised by a hook fails
that worker, as any training error would (Ray Train's ``FailureConfig`` then restarts the worker group from
the latest checkpoint). tests/faults.py injects its faults through these hooks.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

# Off unless this variable names a TrainHook class as "module:Class": every training worker then imports it
# and adds one instance (built without arguments) to its hooks. The way into training that a command or a
# pipeline job runs, which take no hook objects (a job's runtime env sets it; tests/cluster/test_pipeline_job.py
# stalls training there to kill a node at a known point), as LLM_EMF_ACTOR_HOOK is for feature actors.
HOOK_ENV = "LLM_EMF_TRAIN_HOOK"


@dataclass(frozen=True)
class WorkerContext:
    run_dir: str          # the run folder (train.storage/train.run_name), where resume looks for checkpoints
    rank: int
    world_size: int


class TrainHook:
    def on_train_start(self, ctx: WorkerContext, start_epoch: int) -> None:
        """Once per worker (and again after each restart), after the latest checkpoint, if any, is restored;
        ``start_epoch`` is the number of epochs already done (0 on a fresh run)."""

    def on_batch_start(self, ctx: WorkerContext, epoch: int, step: int) -> None:
        """Before this worker builds training batch ``step`` of ``epoch``."""

    def on_epoch_end(self, ctx: WorkerContext, epoch: int, metrics: dict) -> None:
        """After ``epoch``'s metrics (validation ones on rank 0) and checkpoint are reported."""


def hooks_from_env() -> list["TrainHook"]:
    """The hook named by $LLM_EMF_TRAIN_HOOK (one instance), or none when it is unset or empty."""
    target = os.environ.get(HOOK_ENV, "").strip()
    if not target:
        return []
    module, _, name = target.partition(":")
    return [getattr(importlib.import_module(module), name)()]
