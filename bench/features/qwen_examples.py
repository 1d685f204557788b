"""Enrich a few real Food/Kitchen titles with the embedded Qwen2.5-Coder-0.5B-Instruct through the Ray job
and write the examples to bench/results/qwen_enrich_examples.md (a quality spot check, not a benchmark).

    python -m bench.features.qwen_examples --n 8
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench import command_line
from llm_emf.config import load_config
from llm_emf.data.schema import ITEM_SCHEMA
from llm_emf.features.enrich import run_enrich

DATA = Path("/work/shared/data/llmcdsr_food_kitchen")


def real_items(n: int) -> pa.Table:
    rows = []
    for domain, name in ((0, "items_A.tsv.gz"), (1, "items_B.tsv.gz")):
        with gzip.open(DATA / name, "rt", encoding="utf-8") as f:
            next(f)
            for k, line in enumerate(f):
                if k % 997 == 0:  # spread over the table rather than the first (all baby formula) rows
                    _, asin, title = line.rstrip("\n").split("\t", 2)
                    rows.append(dict(item_index=len(rows), item_id=asin, domain=domain, title=title,
                                     image_uri=None, attributes=None))
                if sum(r["domain"] == domain for r in rows) == n // 2:
                    break
    return pa.Table.from_pylist(rows, schema=ITEM_SCHEMA)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--work", default="runs/bench/qwen_examples")
    p.add_argument("--out", default="bench/results/qwen_enrich_examples.md")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    pq.write_table(real_items(args.n), work / "items.parquet")
    cfg = load_config(None, [f"features.enrich.output={work / 'enriched.parquet'}", "features.enrich.batch_size=8",
                             "features.enrich.max_new_tokens=64"])
    start = time.perf_counter()
    summary = run_enrich(cfg, work / "items.parquet", ("Food", "Kitchen"))
    wall = time.perf_counter() - start
    rows = pq.read_table(work / "enriched.parquet").to_pylist()
    lines = [f"# Enrichment examples: {cfg.features.enrich.model}", "",
             f"Command: `{command_line(__spec__.name, sys.argv[1:])}`  ",
             f"{summary.done} items, {summary.failed} failed, {summary.counters.get('new_tokens', 0)} new tokens, "
             f"{wall:.1f} s wall (includes model load); max_new_tokens={cfg.features.enrich.max_new_tokens}, greedy.", ""]
    for r in rows:
        lines += [f"## {r['item_id']} ({['Food', 'Kitchen'][r['domain']]})", f"**Title:** {r['title']}", "",
                  "```", (r["enrichment"] or f"ERROR: {r['error']}"), "```", ""]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print(json.dumps(summary.to_dict(), indent=2))


if __name__ == "__main__":
    main()
