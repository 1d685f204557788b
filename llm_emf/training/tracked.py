"""Training with MLflow tracking around it: what ``llm-emf train`` and the pipeline run.

Params (the flattened config), tags (git commit, dataset fingerprint, seed, protocol), per-epoch metrics
with step = epoch, test results, the training curves and metric bars as PNG, the checkpoint's path (or URI)
and, as tag ``train_worker_nodes``, which Ray node and host ran each Train worker rank.
If the tracking store is unreachable, the Tracker warns once and training goes on; the run folder keeps
``history.json`` and ``results.json`` either way.
"""

from __future__ import annotations

from typing import Sequence

from llm_emf import files
from llm_emf.config import Config

from .api import TrainResult, default_run_name, train


def train_tracked(cfg: Config, callbacks: Sequence = ()) -> TrainResult:
    from llm_emf.tracking import Tracker

    cfg.train.run_name = cfg.train.run_name or default_run_name(cfg)
    # the dataset's fingerprint tag: Tracker reads it from <data.dataset>/dataset.json (tracking.run_info)
    with Tracker(cfg, cfg.train.run_name) as tracker:
        result = train(cfg, callbacks=callbacks)
        run_dir = result.run_dir                    # a local path or a URI: the files layer writes either
        tracker.log_history(result.history)
        tracker.log_results(result.test)
        tracker.log_artifact(files.join(run_dir, "history.json"))
        tracker.log_training_curves(result.history, files.join(run_dir, "training_curves.png"))
        tracker.log_metric_bars({cfg.model.name: result.test}, "MRR", files.join(run_dir, "test_mrr.png"))
        tracker.log_checkpoint(result.checkpoint)
        if result.extra.get("workers"):
            tracker.set_tags({"train_worker_nodes": [{k: w.get(k) for k in ("rank", "node_id", "hostname")}
                                                     for w in result.extra["workers"]]})
        result.extra["mlflow_run_id"] = tracker.run_id if tracker.active else None
        result.extra["tracking_uri"] = tracker.display_uri
    return result
