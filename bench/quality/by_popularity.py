"""Where a model wins or loses: test MRR split by how often the target item appears in training.

    python -m bench.quality.by_popularity --runs runs/quality_fk/quality-id_only-4df560cc \
        runs/quality_fk/quality-title_text_learnable-XXXX --out bench/results/quality_fk_by_popularity

For each trained run (its best-validation state per domain) every test case is ranked against all items of
its domain (full protocol, ties pessimistic) and against the run's sampled negatives, and the cases are
grouped by the target's training frequency (``BUCKETS`` in buckets.py). Also reports, per run and domain, the mean
training frequency of the items the model puts in its top 10, which shows how much it leans on popularity,
and the learned fusion weights when the run learns them. Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from bench import command_line
from bench.quality.buckets import BUCKETS  # shared with run.py's bucket table
from llm_emf.data.cold import train_counts
from llm_emf.data.schema import Dataset
from llm_emf.evaluation.evaluator import split_targets
from llm_emf.evaluation.metrics import target_ranks
from llm_emf.serving import load_models


def analyse(run: str, dataset: Dataset, counts: np.ndarray) -> dict:
    cfg, _, models = load_models(run, dataset)
    rows = dataset.split("test")
    targets = split_targets(rows, "test", dataset.n_items)
    out = {"run": run, "model": cfg.model.name, "use_text": cfg.model.use_text, "domains": {}}
    for d, name in enumerate(dataset.meta.domains):
        lo, size = (0, dataset.n_x) if d == 0 else (dataset.n_x, dataset.n_y)
        cases = np.flatnonzero((targets >= dataset.n_x) == bool(d))
        model = models[d]
        with torch.inference_mode():
            scores = torch.cat([model.score(model.build_eval_batch(_inputs(rows, cases[i:i + 512])), d)
                                for i in range(0, len(cases), 512)])            # (cases, size)
        local = torch.as_tensor(targets[cases] - lo)
        ranks = target_ranks(scores.float(), local).numpy()
        top10 = torch.topk(scores, 10, dim=1).indices.numpy() + lo
        freq = counts[targets[cases]]
        by_bucket = {}
        for low, high, label in BUCKETS:
            sel = (freq >= low) & (freq <= high)
            by_bucket[label] = {"cases": int(sel.sum()),
                                "full_MRR": float(np.mean(1.0 / ranks[sel])) if sel.any() else None}
        weights = {k: float(v.detach()) for k, v in model.named_parameters() if v.numel() == 1}  # learned a, b
        out["domains"][name] = {"cases": len(cases), "full_MRR": float(np.mean(1.0 / ranks)),
                                "by_target_frequency": by_bucket,
                                "mean_train_count_of_top10": float(counts[top10].mean()),
                                "mean_train_count_of_targets": float(freq.mean()),
                                "scalar_weights": weights}
    return out


def _inputs(rows, cases):
    import pyarrow as pa

    from llm_emf.model.batch import eval_inputs
    return eval_inputs(rows.take(pa.array(cases)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="run folders (train.storage/run_name)")
    p.add_argument("--dataset", default="", help="default: the dataset of the first run")
    p.add_argument("--out", default="bench/results/quality_by_popularity")
    args = p.parse_args(argv)
    dataset = Dataset.read(args.dataset) if args.dataset else load_models(args.runs[0])[1]
    counts = train_counts(dataset)
    results = [analyse(r, dataset, counts) for r in args.runs]
    doc = {"command": command_line(__spec__.name, sys.argv[1:] if argv is None else argv),
           "dataset": dataset.meta.name, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"# Test MRR (full ranking) by the target's training frequency: {dataset.meta.name}", "",
             f"Command: `{doc['command']}`", ""]
    for name in dataset.meta.domains:
        lines += [f"**{name}**", "", "| run | all | " + " | ".join(f"target seen {b[2]}x" for b in BUCKETS)
                  + " | mean train count of top-10 | learned scalar weights |",
                  "|---|---|" + "---|" * len(BUCKETS) + "---|---|"]
        for r in results:
            dom = r["domains"][name]
            cells = [f"{v['full_MRR']:.4f} ({v['cases']})" if v["full_MRR"] is not None else "- (0)"
                     for v in dom["by_target_frequency"].values()]
            w = ", ".join(f"{k}={v:.3f}" for k, v in dom["scalar_weights"].items()) or "-"
            lines.append(f"| {Path(r['run']).name} | {dom['full_MRR']:.4f} | " + " | ".join(cells)
                         + f" | {dom['mean_train_count_of_top10']:.0f} | {w} |")
        targets_mean = results[0]["domains"][name]["mean_train_count_of_targets"]
        lines += ["", f"Mean training count of the test targets: {targets_mean:.0f}.", ""]
    Path(args.out + ".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
