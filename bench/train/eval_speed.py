"""Full-ranking evaluation of all test users: llm-emf's evaluator against a plain per-user loop, same run.

    python -m bench.train.eval_speed --dataset runs/fk --features runs/fk_features/features_title_minilm.parquet

The plain loop scores users in DataLoader batches (windows built per user in Python, as
bench/train/speed.py's plain Dataset) and ranks each target with a full ``argsort``; llm-emf's evaluator
builds batches of users with array operations, scores them in one forward pass and counts the items scored above the target. Both rank
the target among all items of its domain (no exclusion of seen items here) with the same untrained-but-
seeded model, and their MRRs are checked equal before the times are reported (``<out>.json``/``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.utils.data as tud

from bench import command_line
from bench.train.speed import PlainSequences, as_mixed_batch
from llm_emf.config import Config
from llm_emf.data.cold import trained_items
from llm_emf.data.schema import Dataset
from llm_emf.evaluation import evaluate
from llm_emf.model import build_model, load_features_for
from llm_emf.model.batch import sequences_of
from llm_emf.serving.scoring import make_scorer


def plain_mrr(model, dataset: Dataset, split: str, batch_size: int) -> tuple[float, int]:
    """Users in DataLoader batches (windows built per user in Python), scores, a full argsort per user."""
    rows = sequences_of(dataset.split(split))
    users = PlainSequences(rows, dataset.n_x, model.max_len)           # inputs = items[:-1]
    targets = rows.values[rows.ends - 1]                                 # (N,)
    reciprocal = []
    with torch.inference_mode():
        for domain in (0, 1):
            cases = np.flatnonzero((targets >= dataset.n_x) == bool(domain)).tolist()
            loader = tud.DataLoader(tud.Subset(users, cases), batch_size=batch_size)
            for start, batch in zip(range(0, len(cases), batch_size), loader):
                scores = model.score(as_mixed_batch(batch), domain)     # (B, n_D)
                order = torch.argsort(scores, dim=1, descending=True, stable=True)
                local = torch.as_tensor(targets[cases[start:start + batch_size]] - (dataset.n_x if domain else 0))
                rank = (order == local[:, None]).nonzero()[:, 1] + 1     # (B,) 1-based
                reciprocal += (1.0 / rank.double()).tolist()
    return float(np.mean(reciprocal)), len(reciprocal)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--features", default="")
    p.add_argument("--split", default="test", choices=("valid", "test"))
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--eval-batch-size", type=int, default=512)
    p.add_argument("--plain-batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/results/eval_speed")
    args = p.parse_args(argv)
    dataset = Dataset.read(args.dataset)
    cfg = Config()
    cfg.data.dataset, cfg.model.hidden_size, cfg.seed = args.dataset, args.hidden, args.seed
    cfg.eval.exclude_seen, cfg.eval.ties, cfg.train.eval_batch_size = False, "optimistic", args.eval_batch_size
    if args.features:
        cfg.model.use_text, cfg.model.features = True, args.features
    torch.manual_seed(args.seed)
    model = build_model(cfg.model, dataset.n_x, dataset.n_y, load_features_for(cfg.model, dataset.items),
                        trained_items(dataset)).eval()

    evaluate(make_scorer(model, args.eval_batch_size), dataset, "valid", cfg, protocols=("full",))  # warm-up
    load_before = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    mrr_plain, n = plain_mrr(model, dataset, args.split, args.plain_batch_size)
    plain_s, plain_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    result = evaluate(make_scorer(model, args.eval_batch_size), dataset, args.split, cfg, protocols=("full",))
    ours_s, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
    counts = result.counts
    mrr_ours = sum(result.metrics["full"][d]["MRR"] * counts[d] for d in counts) / sum(counts.values())
    assert abs(mrr_ours - mrr_plain) < 1e-6 * max(1.0, mrr_plain) + 1e-9, (mrr_ours, mrr_plain)
    rows = [{"evaluator": f"plain loop (DataLoader batches of {args.plain_batch_size}) + argsort", "wall_s": plain_s,
             "cpu_s": plain_cpu},
            {"evaluator": f"llm-emf evaluate (batches of {args.eval_batch_size})", "wall_s": ours_s,
             "cpu_s": ours_cpu}]
    out = {"command": command_line(__spec__.name, sys.argv[1:]), "dataset": dataset.meta.name, "split": args.split,
           "cases": n, "mrr_checked_equal": mrr_ours, "model": "ID + text" if args.features else "ID only",
           "cpus": os.cpu_count(), "load_average_1min": [load_before, os.getloadavg()[0]], "results": rows,
           "speedup_wall": plain_s / ours_s, "speedup_cpu": plain_cpu / ours_cpu}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"# Full-ranking evaluation of all {args.split} users ({n:,}): {dataset.meta.name}", "",
             f"Command: `{out['command']}`", "",
             f"{os.cpu_count()} CPUs, load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}; {out['model']} "
             f"model, q={args.hidden}; both give MRR {mrr_ours:.6f} (checked equal).", "",
             "| evaluator | wall (s) | CPU (s) | users/s |", "|---|---|---|---|"]
    lines += [f"| {r['evaluator']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {n / r['wall_s']:.0f} |" for r in rows]
    lines += ["", f"Speed-up: {out['speedup_wall']:.1f}x wall, {out['speedup_cpu']:.1f}x CPU.", ""]
    Path(args.out + ".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
