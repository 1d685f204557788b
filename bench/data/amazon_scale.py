"""Time and peak memory of ``data.format=amazon`` on a synthetic two-domain dump of N reviews (2023 schema).

    python -m bench.data.amazon_scale --reviews 200000              # ~1 min on a busy 2-core machine
    python -m bench.data.amazon_scale --reviews 10000000            # the target size: wants free cores, ~10 GB disk

Writes ``<Food|Kitchen>.jsonl.gz`` and ``meta_<...>.jsonl.gz`` (N/2 reviews each, review text included, as
in the real dumps) under --work, then runs the import + the recipe (5-core, users in both domains, per-domain
hold-out) and writes the prepared dataset in a fresh child process, whose peak resident memory
(``VmHWM``) is reported beside that of a child that only imports the library. Results:
``<out>.json`` and ``<out>.md`` with the command.

The same generator made the bundled demo slices (``--write-only``; llm_emf/sample_data/amazon_*_demo/SOURCE.md).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench import command_line

WORDS = {  # per domain: adjectives, nouns, brands
    0: (["Organic", "Dark", "Salted", "Spicy", "Roasted", "Sweet", "Smoked", "Crunchy", "Wild", "Golden"],
        ["Chocolate Bar", "Green Tea", "Coffee Beans", "Almonds", "Honey", "Olive Oil", "Pasta", "Granola", "Salsa"],
        ["Cocoa & Co", "Hill Farms", "Bean There", "Nutty Ltd"]),
    1: (["Stainless", "Nonstick", "Bamboo", "Cast Iron", "Ceramic", "Glass", "Silicone", "Copper", "Compact"],
        ["Skillet", "Cutting Board", "Chef Knife", "Whisk", "Mixing Bowl", "Spatula", "Saucepan", "Measuring Cups"],
        ["Blade Works", "Pan Handlers", "Woody", "Steel & Sons"]),
}
FILLER = ("great fine works as described would buy again arrived quickly tastes good sturdy light easy to clean "
          "a bit pricey nice gift").split()
START_MS = 1_546_300_800_000      # 2019-01-01
SPAN_MS = 3 * 365 * 86_400_000


def review_line(schema: str, user: str, item: str, ms: int, text: str) -> str:
    if schema == "2018":
        return json.dumps({"overall": 5.0, "verified": True, "reviewerID": user, "asin": item,
                           "reviewText": text, "summary": "Five stars", "unixReviewTime": ms // 1000})
    return json.dumps({"rating": 5.0, "title": "Five stars", "text": text, "images": [], "asin": item,
                       "parent_asin": item, "user_id": user, "timestamp": ms, "helpful_vote": 0,
                       "verified_purchase": True})


def meta_line(schema: str, domain: int, item: str, rng: np.random.Generator) -> str:
    adjectives, nouns, brands = WORDS[domain]
    title = f"{adjectives[rng.integers(len(adjectives))]} {nouns[rng.integers(len(nouns))]}"
    brand = brands[rng.integers(len(brands))]
    description = [f"{title} by {brand} &amp; friends.", "<b>Ships</b> in recyclable packaging."]
    category = ["Grocery &amp; Gourmet Food" if domain == 0 else "Home &amp; Kitchen", nouns[rng.integers(len(nouns))]]
    features = [f"{rng.integers(2, 20)} oz", adjectives[rng.integers(len(adjectives))].lower()]
    has_image = rng.random() < 0.8
    if schema == "2018":
        return json.dumps({"asin": item, "title": title, "brand": brand, "category": category, "feature": features,
                           "description": description,
                           "imageURL": [f"https://example.com/img/{item}_500.jpg"] if has_image else [],
                           "imageURLHighRes": [f"https://example.com/img/{item}_1500.jpg"] if has_image else []})
    images = [{"thumb": f"https://example.com/img/{item}_75.jpg", "large": f"https://example.com/img/{item}_500.jpg",
               "hi_res": f"https://example.com/img/{item}_1500.jpg", "variant": "MAIN"}] if has_image else []
    return json.dumps({"main_category": category[0], "title": title, "store": brand, "categories": category,
                       "features": features, "description": description, "images": images, "parent_asin": item})


def write_synthetic(folder: Path, schema: str, reviews: int, seed: int, names=("Food", "Kitchen"),
                    users: int | None = None, items: int | None = None, no_meta_every: int = 13) -> None:
    """N/2 reviews per domain from one user pool (heavy-tailed activity, popular items), times spread over 3 years.
    Every ``no_meta_every``-th item of a domain gets no metadata row."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n_users = users or max(reviews // 10, 20)
    n_items = items or max(reviews // 40, 20)
    activity = rng.pareto(1.5, n_users) + 1                      # heavy users review more, in both domains
    suffix = ".json.gz" if schema == "2018" else ".jsonl.gz"
    for domain, name in enumerate(names):
        taste = activity * rng.uniform(0.2, 1.0, n_users)
        user = rng.choice(n_users, size=reviews // 2, p=taste / taste.sum())
        popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
        item = rng.choice(n_items, size=reviews // 2, p=popularity / popularity.sum())
        ms = START_MS + rng.integers(0, SPAN_MS, reviews // 2)
        letter = "FK"[domain] if names == ("Food", "Kitchen") else "XY"[domain]
        review_file = f"{name}_5{suffix}" if schema == "2018" else f"{name}{suffix}"
        with gzip.open(folder / review_file, "wt", encoding="utf-8", compresslevel=1) as fh:
            for start in range(0, len(user), 50_000):
                block = []
                for u, i, t in zip(user[start:start + 50_000].tolist(), item[start:start + 50_000].tolist(),
                                   ms[start:start + 50_000].tolist()):
                    words = " ".join(FILLER[(t >> k) % len(FILLER)] for k in range(3, 30, 2))
                    block.append(review_line(schema, f"U{u:07d}", f"B{letter}{i:07d}", t, words))
                fh.write("\n".join(block) + "\n")
        with gzip.open(folder / f"meta_{name}{suffix}", "wt", encoding="utf-8", compresslevel=1) as fh:
            fh.write("".join(meta_line(schema, domain, f"B{letter}{i:07d}", rng) + "\n"
                             for i in range(n_items) if (i + 1) % no_meta_every))


PREPARE = """
import json, sys, time
t0 = time.perf_counter()
from llm_emf.config import load_config
from llm_emf.data.prepare import prepare_dataset
baseline = sys.argv[1:] == ["--baseline"]      # the library imported, nothing read
t1 = time.perf_counter()
if not baseline:
    ds, stats = prepare_dataset(load_config(None, sys.argv[1:]))
t2 = time.perf_counter()
# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so it would report the parent's
# peak (the generator's arrays) when that is larger; VmHWM belongs to this program's own address space.
hwm_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
out = {"import_s": t1 - t0, "prepare_s": t2 - t1, "peak_rss_mib": hwm_kib / 1024}
if not baseline:
    out.update(recipe=ds.meta.extra["recipe"], n_items=list(ds.meta.n_items), sequences=ds.sequences.num_rows)
print(json.dumps(out))
"""


def child(*overrides: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PREPARE, *overrides], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reviews", type=int, default=200_000, help="reviews in all (half per domain)")
    p.add_argument("--schema", choices=("2018", "2023"), default="2023")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--users", type=int, default=None, help="user pool (default reviews/10)")
    p.add_argument("--items", type=int, default=None, help="items per domain (default reviews/40)")
    p.add_argument("--batch-rows", type=int, default=100_000)
    p.add_argument("--work", default="runs/bench_amazon", help="where the dump and the prepared dataset go")
    p.add_argument("--write-only", action="store_true", help="write the dump to --work and stop")
    p.add_argument("--out", default="bench/results/amazon_scale")
    args = p.parse_args()
    dump = Path(args.work) if args.write_only else Path(args.work) / f"dump_{args.schema}_{args.reviews}"
    t0 = time.perf_counter()
    reused = not args.write_only and dump.is_dir()      # a dump from an earlier run of the same size
    if not reused:
        write_synthetic(dump, args.schema, args.reviews, args.seed, users=args.users, items=args.items)
    generate_s = None if reused else round(time.perf_counter() - t0, 1)
    if args.write_only:
        print(f"wrote {dump} in {generate_s}s")
        return
    load_start = os.getloadavg()[0]
    baseline = child("--baseline")
    run = child("data.format=amazon", f"data.source={dump}", f"data.dataset={Path(args.work) / 'prepared'}",
                f"data.amazon.batch_rows={args.batch_rows}")
    size = sum(f.stat().st_size for f in dump.iterdir())
    result = {"command": command_line(__spec__.name, sys.argv[1:]), "reviews": args.reviews, "schema": args.schema,
              "dump_mib_gzip": round(size / 2 ** 20, 1), "generate_s": generate_s, "dump_reused": reused,
              "prepare_s": round(run["prepare_s"], 1), "reviews_per_s": round(args.reviews / run["prepare_s"]),
              "peak_rss_mib": round(run["peak_rss_mib"]), "library_only_rss_mib": round(baseline["peak_rss_mib"]),
              "n_items": run["n_items"], "sequences": run["sequences"], "recipe": run["recipe"],
              "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "python": platform.python_version(),
                          "platform": platform.platform()}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(
        f"# amazon import at {args.reviews:,} reviews ({args.schema} schema)\n\n`{result['command']}`\n\n"
        "| reviews | gzip dump MiB | prepare s | reviews/s | peak RSS MiB | library alone MiB | users | items X/Y |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {args.reviews:,} | {result['dump_mib_gzip']} | {result['prepare_s']} | {result['reviews_per_s']:,} | "
        f"{result['peak_rss_mib']} | {result['library_only_rss_mib']} | {run['recipe']['split']['users']:,} | "
        f"{run['n_items'][0]:,} / {run['n_items'][1]:,} |\n\n"
        f"Machine: {os.cpu_count()} CPUs, 1-minute load average {load_start:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end (above {os.cpu_count()}: other jobs shared the cores, so the time "
        "is an upper bound).\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
