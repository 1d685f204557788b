"""Bounded-memory streaming check: ``embed`` (or ``enrich``) over a synthetic catalog with the tiny models.

Samples the resident memory of the driver and every Ray worker every 0.5 s and records the peaks, then
checks that the output has one row per item. Writes bench/results/stream_memory.json.

    python -m bench.features.stream_memory --items 100000
    python -m bench.features.stream_memory --job enrich --items 100000   # backend none: Ray Data + Parquet only

``bench.features.scaling`` runs it for 10k / 100k / 1M items and tabulates the results.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq

from bench import command_line
from bench.features.synthetic import write_catalog
from llm_emf.config import load_config
from llm_emf.features.embed import run_embed
from llm_emf.features.enrich import run_enrich


class RssSampler(threading.Thread):
    """Peak RSS of this process and of the whole process tree of the Ray session (raylet, workers)."""

    def __init__(self, interval_s: float = 0.5):
        super().__init__(daemon=True)
        self.interval_s, self.stop_flag = interval_s, threading.Event()
        self.peak_driver = self.peak_total = self.peak_workers = 0

    def run(self) -> None:
        me = psutil.Process()
        while not self.stop_flag.is_set():
            driver = me.memory_info().rss
            workers = 0
            for p in psutil.process_iter(["name", "cmdline", "memory_info"]):
                cmd = " ".join(p.info["cmdline"] or [])
                if p.pid != me.pid and p.info["memory_info"] and ("ray::" in cmd or "ray/" in cmd or "raylet" in cmd):
                    workers += p.info["memory_info"].rss
            self.peak_driver = max(self.peak_driver, driver)
            self.peak_workers = max(self.peak_workers, workers)
            self.peak_total = max(self.peak_total, driver + workers)
            self.stop_flag.wait(self.interval_s)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--job", choices=("embed", "enrich"), default="embed",
                   help="embed: tiny CLIP text + image towers; enrich: backend none (prompt text, no LLM)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--work", default="runs/bench/stream_memory")
    p.add_argument("--out", default="bench/results/stream_memory.json")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    work = Path(args.work)
    catalog = write_catalog(work / "catalog", args.items)
    output = work / f"{args.job}.parquet"
    output.unlink(missing_ok=True)
    cfg = load_config(None, [f"features.embed.output={output}", "features.embed.clip_model=tiny-clip-64",
                             "features.embed.text_backend=clip", f"features.embed.batch_size={args.batch_size}",
                             f"features.enrich.output={output}", "features.enrich.backend=none",
                             f"features.enrich.batch_size={args.batch_size}"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=1 << 30)
    rss_before = psutil.Process().memory_info().rss  # imports + Ray client: the floor the job adds to
    sampler = RssSampler()
    sampler.start()
    start = time.perf_counter()
    summary = run_embed(cfg, catalog) if args.job == "embed" else run_enrich(cfg, catalog, ("Food", "Kitchen"))
    wall = time.perf_counter() - start
    sampler.stop_flag.set()
    sampler.join()
    ray.shutdown()
    rows = pq.read_metadata(output).num_rows
    result = {
        "command": command_line(__spec__.name, sys.argv[1:]), "job": args.job,
        "items": args.items, "output_rows": rows, "rows_match": rows == args.items,
        "batch_size": args.batch_size, "object_store_memory_bytes": 1 << 30, "wall_s": round(wall, 1),
        "items_per_s": round(args.items / wall, 1),
        "rss_driver_before_job_mib": round(rss_before / 2**20, 1),
        "peak_rss_driver_mib": round(sampler.peak_driver / 2**20, 1),
        "peak_rss_ray_processes_mib": round(sampler.peak_workers / 2**20, 1),
        "peak_rss_total_mib": round(sampler.peak_total / 2**20, 1),
        "output_bytes": output.stat().st_size, "summary": summary.to_dict(),
        "machine": f"{psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM (shared)",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))
    if rows != args.items:
        raise SystemExit(f"output has {rows} rows, expected {args.items}")


if __name__ == "__main__":
    main()
