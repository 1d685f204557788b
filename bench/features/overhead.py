"""Ray Data overhead of the stage-1 jobs: the Ray pipeline vs a plain Python loop over the same model and
the same batches, for LLM enrichment (tokens/s) and CLIP embedding (items/s).

Both paths include model loading (the Ray path loads inside its actor); the plain loop also reports its
steady-state rate without loading. Writes bench/results/overhead.{json,md}.

    python bench/features/overhead.py --enrich-items 16 --embed-items 4000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import write_catalog  # noqa: E402

from llm_emf.config import load_config  # noqa: E402
from llm_emf.features.embed import run_embed  # noqa: E402
from llm_emf.features.encoders import FeatureEncoder, clip_image_size  # noqa: E402
from llm_emf.features.enrich import prompt_table, run_enrich  # noqa: E402
from llm_emf.features.generation import TransformersEnricher  # noqa: E402
from llm_emf.features.images import ImageLoader  # noqa: E402
from llm_emf.features.model_source import resolve_model  # noqa: E402

DOMAINS = ("Food", "Kitchen")


def bench_enrich(catalog: Path, work: Path, args) -> dict:
    cfg = load_config(None, [f"features.enrich.output={work / 'enriched.parquet'}", f"features.enrich.model={args.model}",
                             f"features.enrich.batch_size={args.enrich_batch}",
                             f"features.enrich.max_new_tokens={args.max_new_tokens}",
                             f"features.enrich.limit={args.enrich_items}"])
    ec = cfg.features.enrich
    model_dir = str(resolve_model(ec.model))  # convert/verify the cache outside both timings
    (work / "enriched.parquet").unlink(missing_ok=True)
    start = time.perf_counter()
    summary = run_enrich(cfg, catalog, DOMAINS)
    ray_wall = time.perf_counter() - start

    prompts = prompt_table(pq.read_table(catalog).slice(0, args.enrich_items), cfg, DOMAINS).column("prompt").to_pylist()
    start = time.perf_counter()
    enricher = TransformersEnricher(model_dir, ec.max_new_tokens, ec.temperature, cfg.seed)
    loaded = time.perf_counter()
    tokens = 0
    for i in range(0, len(prompts), ec.batch_size):
        _, n = enricher.generate(prompts[i:i + ec.batch_size])
        tokens += sum(n)
    end = time.perf_counter()
    ray_tokens = summary.counters["new_tokens"]
    return {"model": ec.model, "items": len(prompts), "batch_size": ec.batch_size, "max_new_tokens": ec.max_new_tokens,
            "ray": {"wall_s": round(ray_wall, 2), "new_tokens": ray_tokens, "tokens_per_s": round(ray_tokens / ray_wall, 1)},
            "plain": {"wall_s": round(end - start, 2), "load_s": round(loaded - start, 2), "new_tokens": tokens,
                      "tokens_per_s": round(tokens / (end - start), 1),
                      "tokens_per_s_excl_load": round(tokens / (end - loaded), 1)}}


def bench_embed(catalog: Path, work: Path, args) -> dict:
    cfg = load_config(None, [f"features.embed.output={work / 'features.parquet'}", "features.embed.clip_model=tiny-clip-64",
                             "features.embed.text_backend=clip", f"features.embed.batch_size={args.embed_batch}"])
    ec = cfg.features.embed
    (work / "features.parquet").unlink(missing_ok=True)
    start = time.perf_counter()
    run_embed(cfg, catalog)
    ray_wall = time.perf_counter() - start

    table = pq.read_table(catalog).rename_columns(["item_index", "item_id", "domain", "text", "image_uri", "attributes"])
    start = time.perf_counter()
    encoder = FeatureEncoder("clip", ec.clip_model, "", True, cfg.seed)
    loader = ImageLoader(clip_image_size(ec.clip_model))
    loaded = time.perf_counter()
    for batch in table.to_batches(max_chunksize=ec.batch_size):
        cols = {k: batch.column(k).to_numpy(zero_copy_only=False) for k in ("item_id", "domain", "text", "image_uri")}
        cols["prompt_version"] = cols["content_hash"] = cols["item_id"]
        encoder(loader(cols))
    end = time.perf_counter()
    n = table.num_rows
    return {"model": "open_clip tiny-clip-64 (random init), text+image", "items": n, "batch_size": ec.batch_size,
            "ray": {"wall_s": round(ray_wall, 2), "items_per_s": round(n / ray_wall, 1)},
            "plain": {"wall_s": round(end - start, 2), "load_s": round(loaded - start, 2),
                      "items_per_s": round(n / (end - start), 1), "items_per_s_excl_load": round(n / (end - loaded), 1)}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded:qwen2.5-coder-0.5b-instruct")
    p.add_argument("--enrich-items", type=int, default=16)
    p.add_argument("--enrich-batch", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--embed-items", type=int, default=4000)
    p.add_argument("--embed-batch", type=int, default=128)
    p.add_argument("--work", default="runs/bench/overhead")
    p.add_argument("--out", default="bench/results/overhead")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    work = Path(args.work)
    catalog = write_catalog(work / "catalog", max(args.embed_items, args.enrich_items))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    result = {"command": "python " + " ".join(sys.argv), "torch_threads": torch.get_num_threads(),
              "device": "cuda" if torch.cuda.is_available() else "cpu",
              "enrich": bench_enrich(catalog, work, args), "embed": bench_embed(catalog, work, args)}
    ray.shutdown()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    e, m = result["enrich"], result["embed"]
    md = ["# Ray Data overhead of the stage-1 jobs", "", f"Command: `{result['command']}` (device: {result['device']})", "",
          "| job | items | Ray pipeline | plain loop (incl. load) | plain loop (excl. load) |", "|---|---|---|---|---|",
          f"| enrich ({e['model']}, batch {e['batch_size']}, {e['max_new_tokens']} new tokens) | {e['items']} | "
          f"{e['ray']['tokens_per_s']} tok/s ({e['ray']['wall_s']} s) | {e['plain']['tokens_per_s']} tok/s "
          f"({e['plain']['wall_s']} s) | {e['plain']['tokens_per_s_excl_load']} tok/s |",
          f"| embed ({m['model']}, batch {m['batch_size']}) | {m['items']} | {m['ray']['items_per_s']} items/s "
          f"({m['ray']['wall_s']} s) | {m['plain']['items_per_s']} items/s ({m['plain']['wall_s']} s) | "
          f"{m['plain']['items_per_s_excl_load']} items/s |", ""]
    out.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")
    print("\n".join(md))


if __name__ == "__main__":
    main()
