"""Training on Ray Train (DDP) or in-process: ``train(cfg) -> TrainResult``."""

from .api import TrainResult, finish, train
from .hooks import TrainHook, WorkerContext
from .loop import shard_indices, train_loop_per_worker
from .restore import find_checkpoint, load_models, load_scorer, recommend

__all__ = ["train", "TrainResult", "TrainHook", "WorkerContext", "finish", "train_loop_per_worker", "shard_indices",
           "find_checkpoint", "load_models", "load_scorer", "recommend"]
