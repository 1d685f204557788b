"""Quality benchmark: train and test model variants on a prepared dataset over seeds; one table.

    python bench/quality/run.py --dataset runs/fk \
        --features runs/fk_features/features_title_minilm.parquet \
        --variants sasrec,id_only,title_text --seeds 1 \
        model.hidden_size=64 train.epochs=4 train.batch_size=256 train.patience=2

Each (variant, seed) is one in-process ``llm_emf.training.train`` run (checkpoints under
``--storage``). After every run ``<out>.json`` is rewritten (config, command, machine, every run's test
metrics and wall time, mean ± std per variant), so partial results survive; at the end ``<out>.md`` holds
the per-domain tables for both protocols and ``<out>_<metric>.png`` the bar plots. ``--resume`` keeps the
runs already in ``<out>.json`` whose overrides match and runs only the missing ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import aggregate, markdown_table, means  # noqa: E402

# Variant name -> config overrides on top of the common ones ({features} is --features).
VARIANTS = {
    "sasrec": ["model.name=sasrec"],
    "id_only": ["model.use_text=false", "model.use_image=false"],
    "title_text": ["model.use_text=true", "model.use_image=false", "model.features={features}"],
    "title_text_no_xattn": ["model.use_text=true", "model.use_image=false", "model.features={features}",
                            "model.cross_attention=false"],
    # the fusion sweep on the sample (README) found a small, learnable text weight best
    "title_text_learnable": ["model.use_text=true", "model.use_image=false", "model.features={features}",
                             "model.text_weight=0.3", "model.learnable_weights=true"],
    "title_text_late": ["model.use_text=true", "model.use_image=false", "model.features={features}",
                        "model.fusion=late"],
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="prepared dataset folder (data.output)")
    p.add_argument("--features", default="", help="feature table for the text variants")
    p.add_argument("--variants", default="sasrec,id_only,title_text",
                   help=f"comma-separated, from {list(VARIANTS)} or --define'd names")
    p.add_argument("--define", action="append", default=[], metavar="NAME:K=V,K=V",
                   help="an extra variant, e.g. 'title_tw05:model.use_text=true,model.features={features},"
                        "model.text_weight=0.5'")
    p.add_argument("--seeds", default="1", help="comma-separated seeds")
    p.add_argument("--out", default="bench/results/quality", help="output path without extension")
    p.add_argument("--storage", default="runs/quality", help="train.storage for the runs' checkpoints")
    p.add_argument("--resume", action="store_true", help="keep matching finished runs from <out>.json")
    p.add_argument("--no-tracking", action="store_true", help="no MLflow runs (default: a parent run for the "
                   "benchmark with one child per variant and seed, in tracking.uri)")
    p.add_argument("--report-only", action="store_true", help="rewrite <out>.md and the plots from <out>.json")
    p.add_argument("--note", action="append", default=[], help="a sentence for the report (kept in <out>.json)")
    p.add_argument("overrides", nargs="*", help="common config overrides key=value")
    return p.parse_args(argv)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def variant_table(defines: list[str]) -> dict[str, list[str]]:
    table = dict(VARIANTS)
    for d in defines:
        name, sep, body = d.partition(":")
        if not sep or not name or not body:
            raise SystemExit(f"--define: expected NAME:key=value,key=value, found '{d}'")
        table[name] = [kv for kv in body.split(",") if kv]
    return table


def machine() -> dict:
    import ray
    import torch
    return {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "ray": ray.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "cuda": torch.cuda.is_available(), "loadavg_at_start": os.getloadavg()}


def run_overrides(args, variant_overrides: list[str], seed: int) -> list[str]:
    own = [o.replace("{features}", args.features) for o in variant_overrides]
    if any("{features}" in o for o in variant_overrides) and not args.features:
        raise SystemExit("--features: the chosen variants need a feature table")
    return [f"data.output={args.dataset}", *args.overrides, *own, f"seed={seed}"]


def run_one(variant: str, overrides: list[str], storage: str, parent=None) -> dict:
    from llm_emf.config import load_config
    from llm_emf.training import train

    # Same overrides -> same run name, so a rerun resumes from the latest checkpoint. train.epochs is left
    # out of the key (the LR is constant, so the epoch budget does not change what an epoch does): a
    # rerun with more epochs continues a finished run; one with no more epochs than the latest checkpoint
    # holds just tests that checkpoint.
    kept = [o for o in overrides if not o.startswith("train.epochs=")]
    key = hashlib.sha1("\n".join(kept).encode()).hexdigest()[:8]
    cfg = load_config(None, [*overrides, f"train.storage={storage}", f"train.run_name=quality-{variant}-{key}",
                             "train.num_workers=0"])
    marker = Path(storage, cfg.train.run_name, "checkpoints", "latest.json")
    resumed = json.loads(marker.read_text())["metrics"]["epoch"] if marker.is_file() else 0
    start = time.perf_counter()
    tracker = parent.child(f"{variant}-seed{cfg.seed}", cfg, tags={"llm_emf.role": "benchmark_run"}) \
        if parent is not None else None
    if tracker is None:
        result = train(cfg)
    else:           # one MLflow child run per (variant, seed): params, per-epoch metrics, curves, test results
        with tracker:
            result = train(cfg)
            tracker.log_history(result.history)
            tracker.log_results(result.test)
            tracker.log_training_curves(result.history, Path(result.run_dir) / "training_curves.png")
            tracker.log_checkpoint(result.checkpoint)
    wall = time.perf_counter() - start
    return {"variant": variant, "seed": cfg.seed, "overrides": overrides, "wall_s": round(wall, 1),
            "resumed_from_epoch": resumed,
            "epochs_run": len(result.history), "stopped_early": result.extra.get("stopped_early"),
            "best": {d: {"epoch": b["epoch"], "valid_mrr": b["mrr"]} for d, b in result.best.items()},
            "history": result.history, "run_dir": result.run_dir, "test": result.test.to_dict()}


def training_curves_by_variant(runs: list[dict], path: Path) -> Path:
    """Train loss and validation MRR per epoch, one line per variant (mean over its seeds)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for variant in dict.fromkeys(r["variant"] for r in runs):
        histories = [r["history"] for r in runs if r["variant"] == variant]
        n = min(len(h) for h in histories)
        epochs = [h["epoch"] for h in histories[0][:n]]
        for ax, key in zip(axes, ("train_loss", "valid_mrr")):
            values = np.nanmean([[h[i].get(key, np.nan) for i in range(n)] for h in histories], axis=0)
            ax.plot(epochs, values, "o-", label=f"{variant} ({len(histories)} seeds)")
    for ax, title in zip(axes, ("training loss", "validation MRR (mean of the two domains)")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_outputs(out: Path, doc: dict, final: bool) -> None:
    doc["aggregate"] = aggregate(doc["runs"]) if doc["runs"] else {}
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    if not final or not doc["runs"]:
        return
    from llm_emf.tracking.plots import metric_bars
    agg = doc["aggregate"]
    pngs = []
    for metric in ("MRR", "NDCG@10"):
        png = out.parent / f"{out.name}_{metric.replace('@', '')}.png"
        metric_bars(means(agg), png, metric=metric, title=f"test {metric} (mean over seeds)")
        pngs.append(png.name)
    curves = out.parent / f"{out.name}_curves.png"
    training_curves_by_variant(doc["runs"], curves)
    pngs.append(curves.name)
    m = doc["machine"]
    md = [f"# Quality benchmark: {doc['dataset']}", "",
          f"Command: `{doc['command']}`", "",
          f"Machine: {m['cpu_count']} CPUs ({m['torch_threads']} torch threads, CUDA {m['cuda']}), torch "
          f"{m['torch']}, ray {m['ray']}, Python {m['python']}; load average at start {m['loadavg_at_start']}.",
          "", "Test metrics, each domain at its best-validation epoch; mean ± sample std over seeds "
          "(a single seed shows the value only). Wall time includes training, validation and testing.", "",
          *[line for n in doc.get("notes", []) for line in (f"Note: {n}", "")],
          markdown_table(agg), "", "Runs (wall time of this invocation; a resumed run's earlier epochs are not in it):",
          "", "| variant | seed | epochs run | resumed from epoch | best epoch per domain | wall (s) |",
          "|---|---|---|---|---|---|",
          *[f"| {r['variant']} | {r['seed']} | {r['epochs_run']} | {r.get('resumed_from_epoch', 0)} | "
            + ", ".join(f"{d} {b['epoch']}" for d, b in r["best"].items()) + f" | {r['wall_s']:.0f} |"
            for r in doc["runs"]],
          "", *[f"![{p}]({p})" for p in pngs], ""]
    out.with_suffix(".md").write_text("\n".join(md), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    table = variant_table(args.define)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in table]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; known: {list(table)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    if args.report_only:
        doc = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
        doc["notes"] = doc.get("notes", []) + [n for n in args.note if n not in doc.get("notes", [])]
        write_outputs(out, doc, final=True)
        print(markdown_table(doc["aggregate"]))
        return 0
    parent = None
    if not args.no_tracking:     # a parent MLflow run for the benchmark; its children are the runs
        from llm_emf.config import load_config
        from llm_emf.tracking import Tracker
        parent = Tracker.start_parent(load_config(None, [f"data.output={args.dataset}", *args.overrides]),
                                      f"quality-{out.name}", tags={"llm_emf.role": "benchmark"}, log_config=False)
    doc = {"dataset": args.dataset, "features": args.features, "variants": {v: table[v] for v in variants},
           "seeds": seeds, "common_overrides": args.overrides,
           "command": "python bench/quality/run.py " + shlex.join(argv), "machine": machine(), "runs": [],
           "notes": list(args.note)}
    if args.resume and out.with_suffix(".json").is_file():
        doc["runs"] = json.loads(out.with_suffix(".json").read_text(encoding="utf-8")).get("runs", [])
    # `kill` (SIGTERM) becomes an exception, so the MLflow parent run is closed as KILLED, not left RUNNING
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for seed in seeds:
            for variant in variants:
                overrides = run_overrides(args, table[variant], seed)
                if any(r["variant"] == variant and r["overrides"] == overrides for r in doc["runs"]):
                    print(f"[quality] {variant} seed {seed}: kept from {out.with_suffix('.json')}", flush=True)
                    continue
                print(f"[quality] {variant} seed {seed}: {' '.join(overrides)}", flush=True)
                run = run_one(variant, overrides, args.storage, parent)
                doc["runs"] = [r for r in doc["runs"] if not (r["variant"] == variant and r["seed"] == seed)] + [run]
                write_outputs(out, doc, final=False)
                print(f"[quality] {variant} seed {seed}: {run['wall_s']:.0f} s, test "
                      + json.dumps({p: {d: round(ms['MRR'] or 0, 4) for d, ms in dom.items()}
                                    for p, dom in run["test"]["metrics"].items()}), flush=True)
    except BaseException as e:
        if parent is not None:
            parent.end("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    write_outputs(out, doc, final=True)
    if parent is not None:
        for path in sorted(out.parent.glob(f"{out.name}.*")) + sorted(out.parent.glob(f"{out.name}_*.png")):
            parent.log_artifact(path)
        parent.end()
    print(markdown_table(doc["aggregate"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
