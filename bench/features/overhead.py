"""Ray Data overhead of the stage-1 jobs: the Ray pipeline vs a plain Python loop over the same model and
the same batches, for LLM enrichment (tokens/s) and CLIP embedding (items/s).

Both paths include model loading (the Ray path loads inside its actor, in a fresh process). The start-up of
the Ray path (Ray Data planning, actor process, imports, model load, first batch) is a fixed cost, so the
comparison that matters for a catalog is the steady state: the Ray path's rate after its first batch came
back (from the time each part file is written) against the plain loop's rate without loading. The libraries
both paths use are imported before either is timed. Writes bench/results/overhead.{json,md}; ``--only``
reruns one job and keeps the other's last result.

    python -m bench.features.overhead --enrich-items 512 --enrich-batch 16 --embed-items 100000
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

from bench import command_line
from bench.features.synthetic import write_catalog
from llm_emf.config import load_config
from llm_emf.features.embed import run_embed
from llm_emf.features.encoders import FeatureEncoder, clip_image_size
from llm_emf.features.enrich import prompt_table, run_enrich
from llm_emf.features.generation import TransformersEnricher
from llm_emf.features.images import ImageLoader
from llm_emf.features.model_source import resolve_model
from llm_emf.jobs import parts

DOMAINS = ("Food", "Kitchen")


MIN_STEADY_BATCHES = 5


class PartClock:
    """Times each part file the Ray path writes (one per batch that came back), by wrapping ``write_part``."""

    def __init__(self):
        self.marks: list[tuple[float, int]] = []
        self._write = parts.write_part

    def __enter__(self):
        def timed(table, folder, number):
            path = self._write(table, folder, number)
            self.marks.append((time.perf_counter(), table.num_rows))
            return path
        parts.write_part = timed
        return self

    def __exit__(self, *exc):
        parts.write_part = self._write

    def steady(self, units_per_row: float = 1.0) -> dict:
        """Rate after the first batch: rows (times ``units_per_row``) of batches 2..n over their time span; None
        for fewer than MIN_STEADY_BATCHES batches (a short job's blocks can all arrive at once)."""
        if len(self.marks) < MIN_STEADY_BATCHES:
            return {"batches": len(self.marks), "rate": None}
        (t0, _), rest = self.marks[0], self.marks[1:]
        rows = sum(n for _, n in rest)
        return {"batches": len(self.marks), "rate": round(rows * units_per_row / (rest[-1][0] - t0), 1)}

    def timeline(self, start: float) -> list[list]:
        """[seconds since ``start``, rows] per part written."""
        return [[round(t - start, 2), n] for t, n in self.marks]


def bench_enrich(catalog: Path, work: Path, args) -> dict:
    cfg = load_config(None, [f"features.enrich.output={work / 'enriched.parquet'}", f"features.enrich.model={args.model}",
                             f"features.enrich.batch_size={args.enrich_batch}",
                             f"features.enrich.max_new_tokens={args.max_new_tokens}",
                             f"features.enrich.limit={args.enrich_items}"])
    ec = cfg.features.enrich
    model_dir = str(resolve_model(ec.model))  # convert/verify the cache outside both timings
    (work / "enriched.parquet").unlink(missing_ok=True)
    ray_start = time.perf_counter()
    with PartClock() as clock:
        summary = run_enrich(cfg, catalog, DOMAINS)
    ray_wall = time.perf_counter() - ray_start

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
    steady = clock.steady(ray_tokens / summary.done)   # tokens per item, averaged over the job
    return {"model": ec.model, "items": len(prompts), "batch_size": ec.batch_size, "max_new_tokens": ec.max_new_tokens,
            "ray": {"wall_s": round(ray_wall, 2), "new_tokens": ray_tokens, "tokens_per_s": round(ray_tokens / ray_wall, 1),
                    "first_batch_s": round(summary.first_batch_s, 2), "batches": steady["batches"],
                    "tokens_per_s_steady": steady["rate"], "parts": clock.timeline(ray_start)},
            "plain": {"wall_s": round(end - start, 2), "load_s": round(loaded - start, 2), "new_tokens": tokens,
                      "tokens_per_s": round(tokens / (end - start), 1),
                      "tokens_per_s_excl_load": round(tokens / (end - loaded), 1)}}


def bench_embed(catalog: Path, work: Path, args) -> dict:
    cfg = load_config(None, [f"features.embed.output={work / 'features.parquet'}", "features.embed.clip_model=tiny-clip-64",
                             "features.embed.text_backend=clip", f"features.embed.batch_size={args.embed_batch}"])
    ec = cfg.features.embed
    (work / "features.parquet").unlink(missing_ok=True)
    ray_start = time.perf_counter()
    with PartClock() as clock:
        summary = run_embed(cfg, catalog)
    ray_wall = time.perf_counter() - ray_start
    steady = clock.steady()

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
            "ray": {"wall_s": round(ray_wall, 2), "items_per_s": round(n / ray_wall, 1),
                    "first_batch_s": round(summary.first_batch_s, 2), "batches": steady["batches"],
                    "items_per_s_steady": steady["rate"], "parts": clock.timeline(ray_start)},
            "plain": {"wall_s": round(end - start, 2), "load_s": round(loaded - start, 2),
                      "items_per_s": round(n / (end - start), 1), "items_per_s_excl_load": round(n / (end - loaded), 1)}}


def table_rows(result: dict) -> list[str]:
    rows = []
    for job, unit in (("enrich", "tok/s"), ("embed", "items/s")):
        r = result.get(job)
        if not r:
            continue
        key = "tokens_per_s" if job == "enrich" else "items_per_s"
        what = (f"{r['model']}, batch {r['batch_size']}, {r['max_new_tokens']} new tokens" if job == "enrich"
                else f"{r['model']}, batch {r['batch_size']}")
        ray, plain = r["ray"], r["plain"]
        steady, base = ray.get(f"{key}_steady"), plain[f"{key}_excl_load"]
        ratio = f"{steady / base:.2f}" if steady else "n/a"
        rows.append(f"| {job} ({what}) | {r['items']} | {ray[key]} {unit} ({ray['wall_s']} s) | "
                    f"{ray.get('first_batch_s', 'n/a')} s | {steady or 'n/a'} {unit} | {plain[key]} {unit} "
                    f"({plain['wall_s']} s) | {base} {unit} | {ratio} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded:qwen2.5-coder-0.5b-instruct")
    p.add_argument("--enrich-items", type=int, default=512)
    p.add_argument("--enrich-batch", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--embed-items", type=int, default=100_000)
    p.add_argument("--embed-batch", type=int, default=128)
    p.add_argument("--only", choices=("enrich", "embed"), help="run one of the two jobs (the other keeps its last result)")
    p.add_argument("--work", default="runs/bench/overhead")
    p.add_argument("--out", default="bench/results/overhead")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import open_clip  # noqa: F401  (imported before either path is timed: both pay it once)
    import ray
    import transformers  # noqa: F401

    out = Path(args.out)
    previous = json.loads(out.with_suffix(".json").read_text()) if args.only and out.with_suffix(".json").is_file() else {}
    work = Path(args.work)
    catalog = write_catalog(work / "catalog", max(args.embed_items, args.enrich_items))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    command = command_line(__spec__.name, sys.argv[1:])
    result = {"torch_threads": torch.get_num_threads(), "device": "cuda" if torch.cuda.is_available() else "cpu"}
    for job, bench in (("enrich", bench_enrich), ("embed", bench_embed)):
        if args.only in (None, job):
            load_before = os.getloadavg()[0]
            result[job] = dict(bench(catalog, work, args), command=command,
                               load_average=[round(load_before, 2), round(os.getloadavg()[0], 2)])
        elif job in previous:
            result[job] = previous[job]
    ray.shutdown()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    md = ["# Ray Data overhead of the stage-1 jobs", "",
          f"Device: {result['device']}, {result['torch_threads']} torch threads in the driver. \"Steady\" is the Ray "
          "path's rate after its first batch came back; the ratio is steady Ray over the plain loop without loading "
          "(above 1: Ray is faster).", "",
          "| job | items | Ray (incl. start-up) | Ray first batch | Ray steady | plain loop (incl. load) | "
          "plain loop (excl. load) | steady ratio |", "|---|---|---|---|---|---|---|---|",
          *table_rows(result), "", "Commands and load average (before, after):", ""]
    md += [f"- {job}: `{result[job]['command']}`, load {result[job].get('load_average')}" for job in ("enrich", "embed")
           if job in result]
    out.with_suffix(".md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))


if __name__ == "__main__":
    main()
