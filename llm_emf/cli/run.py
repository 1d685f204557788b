"""``llm-emf run``: the whole pipeline (prepare -> enrich -> embed -> train -> evaluate) on a local or joined Ray.

Stages are content-addressed under pipeline.storage: a rerun with the same settings skips finished
stages; a changed setting reruns that stage and those after it.
"""

from __future__ import annotations

import argparse
import time

from llm_emf.config import Config

SECTIONS = ()   # the whole tree

# What a run on the bundled sample prints last: the same pipeline on a whole catalog. The times are estimates
# from measured rates on 2 free CPU cores (bench/results/demo_time.md says which): enrichment at ~4 items/s,
# training at ~100 s per Food-Kitchen epoch.
FULL_CATALOG_OVERRIDES = ("data.source=DIR", "features.enrich.limit=0", "data.synthetic_images=false",
                          "features.embed.use_images=false", "model.use_image=false", "eval.n_negatives=999",
                          "pipeline.storage=runs/full")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stages", help="comma-separated subset, e.g. prepare,train (same as pipeline.stages=[...])")


def full_catalog_lines(cfg: Config, config_file: str | None) -> list[str]:
    """After a run on the bundled sample: the command for a whole catalog and roughly how long it takes;
    nothing after a run on other data."""
    if cfg.data.source != "sample":
        return []
    config = f" --config {config_file}" if config_file else ""
    return [f"full catalog (~3 h on 2 CPU cores, 2-3 h of it LLM enrichment; features.enrich.backend=none, titles "
            f"only: ~25 min): llm-emf run{config} {' '.join(FULL_CATALOG_OVERRIDES)}",
            "  DIR: the LLMCDSR Food-Kitchen release (36k items; ../shared/data/llmcdsr_food_kitchen beside this "
            "checkout), or your own data with its data.format (docs/data.md)"]


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
    for line in full_catalog_lines(cfg, getattr(args, "config", None)):
        print(line)
    return 0
