"""``llm-emf run``: the whole pipeline (prepare -> enrich -> embed -> train -> evaluate) on a local or joined Ray.

Stages are content-addressed under pipeline.storage: a rerun with the same settings skips finished
stages; a changed setting reruns that stage and those after it.
"""

from __future__ import annotations

import argparse
import time

from llm_emf.config import Config

SECTIONS = ()   # the whole tree


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stages", help="comma-separated subset, e.g. prepare,train (same as pipeline.stages=[...])")


def run(cfg: Config, args: argparse.Namespace) -> int:
    from llm_emf.pipeline.workflow import run_pipeline
    from llm_emf.config.redact import redact_uri
    from llm_emf.tracking.uri import is_http, pipeline_tracking_uri

    if args.stages:
        cfg.pipeline.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
        cfg.validate()
    start = time.time()
    summaries = run_pipeline(cfg)
    skipped = [name for name, s in summaries.items() if s.get("skipped")]
    print(f"\npipeline finished in {time.time() - start:.0f} s; stages skipped (already done): "
          f"{', '.join(skipped) or 'none'}; outputs under {cfg.pipeline.storage}")
    if cfg.tracking.enabled:
        uri = pipeline_tracking_uri(cfg)   # without tracking.uri: <pipeline.storage>/mlflow.db
        if is_http(uri):
            print(f"compare runs in MLflow: {redact_uri(uri)}")
        else:
            print(f"compare runs in MLflow: llm-emf ui tracking.uri={redact_uri(uri)}")
    return 0
