"""``llm-emf enrich``: the LLM enrichment job on Ray Data (method.md stage 1).

catalog rows -> prompt (versioned template) -> generate (vllm | transformers | none) -> clean
(reasoning stripped, capped by max_new_tokens) -> ENRICHED_SCHEMA Parquet, exactly one row per item.
Rows whose cache_key is already in the output without an error are copied, not recomputed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_emf.config import Config, ConfigError
from llm_emf.features.actors import NODE_COLUMN, map_batches_on_actors
from llm_emf.features.catalog import read_catalog
from llm_emf.features.generation import TransformersEnricher, strip_reasoning
from llm_emf.features.prompts import load_template
from llm_emf.features.schema import ENRICHED_SCHEMA
from llm_emf.hashing import stable_hash
from llm_emf.jobs import JobOutput, JobSummary, split_cached, table_blocks, write_stream
from llm_emf.ray_local import ensure_ray


def generation_params(cfg: Config) -> str:
    ec = cfg.features.enrich
    if ec.backend == "none":
        return "none"
    return f"backend={ec.backend};max_new_tokens={ec.max_new_tokens};temperature={ec.temperature};seed={cfg.seed}"


def prompt_table(catalog: pa.Table, cfg: Config, domains: tuple[str, str]) -> pa.Table:
    """item_id, domain, title, prompt, has_title, cache_key for every catalog row."""
    ec = cfg.features.enrich
    template = load_template(ec.prompt)
    model = ec.model if ec.backend != "none" else "none"
    params = generation_params(cfg)
    ids, doms, titles = (catalog.column(c).to_pylist() for c in ("item_id", "domain", "title"))
    prompts, has_title, keys = [], [], []
    for item_id, dom, title in zip(ids, doms, titles):
        prompt, ok = template.render(title, domains[dom] if dom in (0, 1) else str(dom))
        prompts.append(prompt)
        has_title.append(ok)
        keys.append(stable_hash(item_id, title, dom, template.version, model, params))
    return pa.table({"item_id": ids, "domain": pa.array(doms, pa.int8()), "title": pa.array(titles, pa.string()),
                     "prompt": prompts, "has_title": has_title, "cache_key": keys})


def _finish(prompt_version: str, model: str, backend: str):
    """Generated rows -> ENRICHED_SCHEMA columns (plus n_new_tokens for throughput)."""
    def finish(batch: dict[str, np.ndarray]) -> pa.Table:
        n = len(batch["item_id"])
        titles = [t if isinstance(t, str) else None for t in batch["title"]]
        # Ray may turn an all-None column into NaNs between stages: only a string is an error
        errors = [e if isinstance(e, str) and e else None for e in batch.get("error", [None] * n)]
        raw = list(batch["enrichment"]) if "enrichment" in batch else [None] * n
        enrichment, text = [], []
        for title, gen, err in zip(titles, raw, errors):
            gen = None if (err is not None or backend == "none") else strip_reasoning(str(gen or ""))
            enrichment.append(gen)
            # the encoder sees title + enrichment; a failed row still has its title
            text.append(" ".join(p for p in ((title or "").strip(), gen or "") if p) or None)
        columns = {"item_id": batch["item_id"], "domain": batch["domain"], "title": titles, "enrichment": enrichment,
                   "text": text, "prompt_version": [prompt_version] * n, "llm_model": [model] * n,
                   "cache_key": batch["cache_key"], "error": errors}
        # typed Arrow output: an all-None numpy column would otherwise lose its string type
        table = pa.table({f.name: pa.array(list(columns[f.name]), f.type) for f in ENRICHED_SCHEMA})
        table = table.append_column("n_new_tokens", pa.array(batch.get("n_new_tokens", np.zeros(n, dtype=np.int64)),
                                                             pa.int64()))
        if NODE_COLUMN in batch:                  # where the generation actor ran (counted, not stored)
            table = table.append_column(NODE_COLUMN, pa.array(list(batch[NODE_COLUMN]), pa.string()))
        return table
    return finish


def run_enrich(cfg: Config, items_path: str | Path, domains: tuple[str, str],
               enricher_cls: type = TransformersEnricher) -> JobSummary:
    """Run the job; ``enricher_cls`` lets callers swap the generation actor (same constructor and call)."""
    import ray
    import torch

    ec = cfg.features.enrich
    catalog = read_catalog(items_path)
    if ec.limit:
        catalog = catalog.slice(0, ec.limit)
    rows = prompt_table(catalog, cfg, domains)
    out = JobOutput(ec.output, ENRICHED_SCHEMA, "cache_key", is_failed=lambda t: pc.is_valid(t.column("error")))
    todo_mask, cached = split_cached(rows.column("cache_key"), out)
    todo = rows.filter(todo_mask)
    summary = JobSummary("enrich", total=rows.num_rows, skipped_cached=cached.num_rows)
    summary.count("no_title", pc.sum(pc.invert(todo.column("has_title"))).as_py() or 0)
    model = ec.model if ec.backend != "none" else "none"
    version = load_template(ec.prompt).version
    tokens = [0]

    def batches():
        if todo.num_rows == 0:
            return
        ensure_ray(cfg.pipeline.ray_address, dashboard=cfg.pipeline.ray_dashboard)
        ds = ray.data.from_arrow(table_blocks(todo, ec.batch_size * 4))
        if ec.backend == "transformers":
            from llm_emf.features.model_source import resolve_model
            # converted once, here, not once per actor (`make install` has done it for the demo's model)
            model_dir = str(resolve_model(ec.model, log=print))
            ds = map_batches_on_actors(ds, enricher_cls, fn_constructor_kwargs=dict(
                model_dir=model_dir, max_new_tokens=ec.max_new_tokens, temperature=ec.temperature, seed=cfg.seed),
                batch_size=ec.batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=ec.concurrency),
                num_gpus=1 if torch.cuda.is_available() else 0, threads=ec.threads, actors=ec.concurrency)
        elif ec.backend == "vllm":
            from llm_emf.features.model_source import resolve_model
            from llm_emf.features.vllm_backend import vllm_enrich
            ds = vllm_enrich(ds, str(resolve_model(ec.model, log=print)), engine_kwargs=ec.engine_kwargs,
                             concurrency=ec.concurrency, batch_size=ec.batch_size,
                             max_new_tokens=ec.max_new_tokens, temperature=ec.temperature, seed=cfg.seed)
        elif ec.backend != "none":
            raise ConfigError(f"features.enrich.backend: expected vllm, transformers or none, found '{ec.backend}'")
        ds = ds.map_batches(_finish(version, model, ec.backend), batch_format="numpy")
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            tokens[0] += pc.sum(batch.column("n_new_tokens")).as_py() or 0
            yield batch

    write_stream(batches(), cached, out, summary, total=todo.num_rows)
    summary.count("new_tokens", tokens[0])
    return summary
