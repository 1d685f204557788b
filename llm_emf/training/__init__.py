"""Training on Ray Train (DDP) or in-process: ``train(cfg) -> TrainResult``."""

from .api import TrainResult, finish, train
from .hooks import TrainHook, WorkerContext
from .loop import shard_indices, train_loop_per_worker

__all__ = ["train", "TrainResult", "TrainHook", "WorkerContext", "finish", "train_loop_per_worker", "shard_indices"]
