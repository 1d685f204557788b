"""Training with MLflow tracking around it: what ``llm-emf train`` and the pipeline run.

Params (the flattened config), tags (git commit, dataset fingerprint, seed, protocol), per-epoch metrics
with step = epoch, test results, the training curves and metric bars as PNG, and the checkpoint's path.
If the tracking store is unreachable, the Tracker warns once and training goes on; the run folder keeps
``history.json`` and ``results.json`` either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from llm_emf.config import Config

from .api import TrainResult, default_run_name, train


def train_tracked(cfg: Config, callbacks: Sequence = ()) -> TrainResult:
    from llm_emf.tracking import Tracker

    cfg.train.run_name = cfg.train.run_name or default_run_name(cfg)
    # the dataset's fingerprint tag: Tracker reads it from <data.output>/dataset.json (tracking.run_info)
    with Tracker(cfg, cfg.train.run_name) as tracker:
        result = train(cfg, callbacks=callbacks)
        run_dir = Path(result.run_dir)
        tracker.log_history(result.history)
        tracker.log_results(result.test)
        tracker.log_artifact(run_dir / "history.json")
        tracker.log_training_curves(result.history, run_dir / "training_curves.png")
        tracker.log_metric_bars({cfg.model.name: result.test}, "MRR", run_dir / "test_mrr.png")
        tracker.log_checkpoint(result.checkpoint)
        result.extra["mlflow_run_id"] = tracker.run_id if tracker.active else None
        result.extra["tracking_uri"] = tracker.display_uri
    return result
