"""The end-to-end workflow: prepare -> enrich -> embed -> train -> evaluate (-> tune), as content-addressed stages.

Each stage points the config at its own output folder under ``pipeline.storage`` and at its upstream
stages' folders, then calls the same library function the single-step command calls.
"""

from __future__ import annotations

import copy
import json
import os

from llm_emf import files
from llm_emf.config import Config, save_config
from llm_emf.pipeline.stages import Stage, StageContext, run_stages
from llm_emf.storage import Storage, alive_nodes, check_for_cluster
from llm_emf.ray_local import ensure_ray, job_working_dir
from llm_emf.tracking.uri import explicit_tracking_uri, pipeline_tracking_uri

# Keys that name where things go (not what they contain) never enter a stage key.
_PATHS = ("data.dataset", "features.enrich.output", "features.embed.output", "model.features", "train.storage",
          "train.run_name", "eval.output", "eval.negatives_file", "tune.storage", "tune.name")


def _stage_cfg(cfg: Config, ctx: StageContext) -> Config:
    """A copy of ``cfg`` with every path pointing into this run's stage folders."""
    c = copy.deepcopy(cfg)
    out = ctx.outputs
    if "prepare" in out:
        c.data.dataset = out["prepare"]
    if "enrich" in out:
        c.features.enrich.output = f"{out['enrich']}/enriched.parquet"
    if "embed" in out:
        c.features.embed.output = f"{out['embed']}/features.parquet"
        c.model.features = c.features.embed.output
    if "train" in out:
        c.train.storage = f"{out['train']}/ray"
        c.train.run_name = f"train-{ctx.keys['train']}"
    if "evaluate" in out:
        c.eval.output = f"{out['evaluate']}/results.json"
    if "tune" in out:
        c.tune.storage = f"{out['tune']}/ray"
        c.tune.name = f"tune-{ctx.keys['tune']}"
    return c


def _prepare(cfg: Config, ctx: StageContext) -> dict:
    from llm_emf.data.prepare import notes, prepare_dataset

    c = _stage_cfg(cfg, ctx)
    ds, stats = prepare_dataset(c)
    for line in notes(stats, ds.meta.extra):      # what changed counts without being a bad row
        print(line)
    return {"items": list(ds.meta.n_items), "fingerprint": ds.meta.fingerprint,
            "quarantined_rows": ds.meta.quarantined_rows}


def _enrich(cfg: Config, ctx: StageContext) -> dict:
    from llm_emf.features.enrich import run_enrich
    from llm_emf.data.schema import Dataset

    c = _stage_cfg(cfg, ctx)
    ds = Dataset.read(c.data.dataset)
    summary = run_enrich(c, files.join(c.data.dataset, "items.parquet"), ds.meta.domains)
    save_config(c, files.join(ctx.output("enrich"), "config.yaml"))
    return summary.to_dict()


def _embed(cfg: Config, ctx: StageContext) -> dict:
    from llm_emf.features.embed import run_embed

    c = _stage_cfg(cfg, ctx)
    enriched = c.features.enrich.output if "enrich" in ctx.outputs else None
    summary = run_embed(c, files.join(c.data.dataset, "items.parquet"), enriched)
    save_config(c, files.join(ctx.output("embed"), "config.yaml"))
    return summary.to_dict()


def _paths(*values: str) -> list[str]:
    """The values that name files (a URI or an existing local path), not a name (a prompt, a hub model)."""
    return [v for v in values if v and (files.is_remote(v) or os.path.exists(os.path.expanduser(v)))]


def _source_files(cfg: Config) -> list[str]:
    from llm_emf.data.importers import sample_path

    source = str(sample_path()) if cfg.data.source == "sample" else cfg.data.source
    return _paths(source, cfg.data.items)


def _enrich_files(cfg: Config) -> list[str]:
    return _paths(cfg.features.enrich.prompt, cfg.features.enrich.model)


def _embed_files(cfg: Config) -> list[str]:
    return _paths(cfg.features.embed.clip_model, cfg.features.embed.clip_pretrained)


def build_stages(cfg: Config) -> list[Stage]:
    wanted = cfg.pipeline.stages
    features = cfg.model.use_text or cfg.model.use_image
    all_stages = [
        Stage("prepare", reads=("data", "seed"), ignores=_PATHS, run=_prepare, code=("data",), inputs=_source_files),
        Stage("enrich", reads=("features.enrich",), upstream=("prepare",), ignores=_PATHS, run=_enrich,
              code=("features",), inputs=_enrich_files),
        Stage("embed", reads=("features.embed", "seed"), upstream=("prepare", "enrich"), ignores=_PATHS, run=_embed,
              code=("features",), inputs=_embed_files),
    ]
    from llm_emf.pipeline import training_stages

    all_stages += training_stages.stages(features, _PATHS, _stage_cfg)
    by_name = {s.name: s for s in all_stages}
    chosen = [by_name[name] for name in wanted]
    # A stage's upstream must be in the plan (its outputs are read); add missing ones in order.
    needed: list[str] = []
    for st in chosen:
        for u in st.upstream:
            if u not in needed and u not in wanted:
                needed.append(u)
    order = [s.name for s in all_stages]
    names = sorted(set(wanted) | set(needed), key=order.index)
    return [by_name[n] for n in names]


def run_pipeline(cfg: Config, log=print) -> dict[str, dict]:
    """Run the configured stages on the current Ray cluster (joined, or a local one started with its dashboard).

    Without tracking.uri or MLFLOW_TRACKING_URI, MLflow records go to ``<pipeline.storage>/mlflow.db``
    (``pipeline_tracking_uri``: refused where that store would not outlive the job or not be shared).
    """
    ensure_ray(cfg.pipeline.ray_address, dashboard=cfg.pipeline.ray_dashboard)
    storage = Storage(cfg.pipeline.storage)
    nodes = alive_nodes()
    if cfg.tracking.enabled and not explicit_tracking_uri(cfg):
        cfg = copy.deepcopy(cfg)
        cfg.tracking.uri = pipeline_tracking_uri(cfg, nodes, job_working_dir())
    check_for_cluster(cfg.pipeline.storage, nodes)
    summaries = run_stages(cfg, build_stages(cfg), storage, log=log)
    storage.write_json(storage.path("last_run.json"), {"stages": summaries})
    return summaries


def dumps(summaries: dict) -> str:
    return json.dumps(summaries, indent=2, default=str)
