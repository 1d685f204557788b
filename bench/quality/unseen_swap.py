"""Re-score trained runs with another rule for their cold items, without retraining.

``model.unseen_id`` = neighbor, zero and mean have no trained weights, so a finished run can be evaluated
under each (``llm_emf.serving.load_models(..., unseen_id=...)``); this isolates the rule from
training noise: same weights, same candidates, only the cold items' ID part changes.

    python -m bench.quality.unseen_swap --runs runs/quality_cold/quality-text_unseen_zero-6f32c3c3 \\
        --rules as_trained,neighbor:1,neighbor:5,neighbor:20,zero,mean --out bench/results/cold_fk_unseen_swap

Writes ``<out>.json`` (every run x rule's test EvalResult) and ``<out>.md`` (cold and warm targets per
protocol and domain, with the command).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from bench import command_line
from bench.quality.by_target import target_kind_markdown, target_kind_table
from llm_emf.data.schema import Dataset
from llm_emf.evaluation.evaluator import evaluate
from llm_emf.serving import load_models, make_scorer


def parse_rule(rule: str) -> tuple[str | None, int | None]:
    """``as_trained`` -> (None, None); ``neighbor:5`` -> ("neighbor", 5); ``zero`` -> ("zero", None)."""
    if rule == "as_trained":
        return None, None
    name, _, k = rule.partition(":")
    return name, int(k) if k else None


def score_run(run: str, rule: str, dataset: Dataset | None, features: str | None, split: str) -> dict:
    unseen_id, neighbors = parse_rule(rule)
    cfg, dataset, models = load_models(run, dataset, features, unseen_id=unseen_id, unseen_neighbors=neighbors)
    scorers = {d: make_scorer(m, cfg.train.eval_batch_size) for d, m in models.items()}
    result = evaluate(lambda rows, domain: scorers[domain](rows, domain), dataset, split, cfg)
    return {"variant": f"{Path(run).name} [{rule if rule != 'as_trained' else cfg.model.unseen_id}]",
            "run": run, "rule": rule, "trained_with": cfg.model.unseen_id, "test": result.to_dict()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", required=True, help="run or checkpoint folders")
    p.add_argument("--rules", default="as_trained,neighbor:1,zero,mean",
                   help="comma-separated: as_trained, neighbor[:k], zero, mean")
    p.add_argument("--dataset", default=None, help="dataset folder (default: each run's data.dataset)")
    p.add_argument("--features", default=None, help="feature table (default: each run's model.features)")
    p.add_argument("--split", default="test", choices=("valid", "test"))
    p.add_argument("--out", default="bench/results/unseen_swap")
    args = p.parse_args(argv)
    dataset = Dataset.read(args.dataset) if args.dataset else None
    records = []
    for run in args.runs:
        for rule in args.rules.split(","):
            start = time.perf_counter()
            records.append(score_run(run, rule, dataset, args.features, args.split))
            print(f"[unseen_swap] {records[-1]['variant']}: {time.perf_counter() - start:.0f} s", flush=True)
    command = command_line(__spec__.name, sys.argv[1:] if argv is None else argv)
    doc = {"command": command, "split": args.split, "machine": {"cpus": os.cpu_count(),
           "python": platform.python_version()}, "runs": records}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    table = target_kind_markdown(target_kind_table(records)).replace("Mean over seeds.", "One run each.")
    out.with_suffix(".md").write_text(
        f"# Cold-item rules on trained runs ({args.split} split)\n\nCommand: `{command}`\n\n"
        "Each row is one trained run re-scored with the rule in brackets (as_trained: the run's own rule); "
        "warm targets move only because cold items are candidates too.\n\n" + table + "\n", encoding="utf-8")
    print(f"[unseen_swap] wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
