"""Quality benchmark: train and test model variants on a prepared dataset over seeds; one report.

Convergence protocol (every run trains until early stopping; differences tested over the test cases):

    python -m bench.quality.run --dataset runs/fk --features runs/fk/features.parquet \
        --variants popularity,sasrec,id_only,text,text_only --seeds 1,2,3 --converge \
        --out bench/results/quality_fk_converged --storage runs/quality_conv --resume \
        model.hidden_size=64 train.epochs=40 train.patience=3 train.batch_size=256 train.bf16=true

Each (variant, seed) is one in-process ``llm_emf.training.train`` run (checkpoints under ``--storage``);
``popularity`` trains nothing and scores items by their training count. After every run ``<out>.json`` is
rewritten (config, command, machine, every run's test metrics, per-case test ranks and wall time, mean ± std
per variant, paired bootstrap differences from ``--reference``, MRR by the target's training count), so
partial results survive; at the end ``<out>.md`` holds the tables and ``<out>_<metric>.png`` the bar plots.
``--resume`` keeps the runs already in ``<out>.json`` whose overrides match and runs only the missing ones.
``--converge`` exits with status 1 when a trained run used up train.epochs without stopping early.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path

from bench import command_line
from bench.quality.buckets import bucket_table
from bench.quality.by_target import target_kind_table
from bench.quality.cases import check_case_order, ranks_of, targets_by_domain
from bench.quality.paired import paired_differences
from bench.quality.report import dumps, markdown_report, unconverged
from bench.quality.table import aggregate, markdown_table, means

# Variant name -> config overrides on top of the common ones ({features} is --features).
VARIANTS = {
    "popularity": [],           # not trained: items ranked by training count (UNTRAINED)
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
    "text": ["model.use_text=true", "model.use_image=false", "model.features={features}"],
    "text_only": ["model.use_id=false", "model.use_text=true", "model.use_image=false", "model.features={features}"],
}
UNTRAINED = {"popularity"}      # scored by a baseline scorer, seed-independent, listed per seed (cheap)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="prepared dataset folder (data.dataset)")
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
    p.add_argument("--converge", action="store_true", help="exit with status 1 (after writing the report) when "
                   "a trained run hit train.epochs without stopping early")
    p.add_argument("--negatives-seed", type=int, default=None, metavar="N",
                   help="add eval.negatives_seed=N to the common overrides (default: the config's value)")
    p.add_argument("--reference", default="id_only", help="variant the paired differences are taken from")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="B", help="bootstrap resamples of the cases")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap's numpy Generator")
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


def negatives_seed_override(seed: int) -> str:
    """``eval.negatives_seed=N`` if the config has that key, else SystemExit (older llm_emf)."""
    from llm_emf.config import load_config
    override = f"eval.negatives_seed={seed}"
    try:
        load_config(None, [override])
    except Exception as e:      # ConfigError for an unknown key or a bad value
        raise SystemExit(f"--negatives-seed: the config does not accept {override} ({e}); "
                         "this llm_emf has no eval.negatives_seed key") from e
    return override


def run_overrides(args, variant_overrides: list[str], seed: int) -> list[str]:
    own = [o.replace("{features}", args.features) for o in variant_overrides]
    if any("{features}" in o for o in variant_overrides) and not args.features:
        raise SystemExit("--features: the chosen variants need a feature table")
    return [f"data.dataset={args.dataset}", *args.overrides, *own, f"seed={seed}"]


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
            "history": result.history, "run_dir": result.run_dir, "test": result.test.to_dict(),
            "max_epochs": cfg.train.epochs, "ranks": ranks_of(result.test)}


def run_untrained(variant: str, overrides: list[str], parent=None) -> dict:
    """The popularity baseline under the same config (so the same negatives file) as the trained runs."""
    from llm_emf.config import load_config
    from llm_emf.data.schema import Dataset
    from llm_emf.evaluation import PopularityScorer, evaluate

    cfg = load_config(None, overrides)
    start = time.perf_counter()
    dataset = Dataset.read(cfg.data.dataset)
    test = evaluate(PopularityScorer(dataset), dataset, "test", cfg, protocols=("sampled", "full"),
                    scorer_name=variant)
    wall = time.perf_counter() - start
    if parent is not None:
        with parent.child(f"{variant}-seed{cfg.seed}", cfg, tags={"llm_emf.role": "benchmark_run"}) as tracker:
            tracker.log_results(test)
    return {"variant": variant, "seed": cfg.seed, "overrides": overrides, "wall_s": round(wall, 1),
            "resumed_from_epoch": 0, "epochs_run": 0, "stopped_early": None, "trained": False, "best": {},
            "history": [], "run_dir": None, "test": test.to_dict(), "ranks": ranks_of(test)}


def training_curves_by_variant(runs: list[dict], path: Path) -> Path:
    """Train loss and validation MRR per epoch, one line per variant (mean over its seeds)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = [r for r in runs if r["history"]]           # untrained baselines have no curves
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


def analyse(doc: dict, reference: str, n_boot: int, boot_seed: int) -> None:
    """Fill the derived entries of ``doc``: aggregate (mean ± std), paired (bootstrap differences from
    ``reference``) and by_popularity (MRR by the target's training count; needs ``target_train_counts``)."""
    runs = doc["runs"]
    doc["aggregate"] = aggregate(runs) if runs else {}
    doc["paired"] = paired_differences(runs, reference, n_boot=n_boot, seed=boot_seed)
    counts = doc.get("target_train_counts")
    doc["by_popularity"] = bucket_table(runs, counts) if counts else {}
    doc["by_target"] = target_kind_table(runs)


def write_outputs(out: Path, doc: dict, final: bool, analysis: dict) -> None:
    """``analysis``: the keyword arguments of :func:`analyse` other than ``doc``."""
    analyse(doc, **analysis)
    out.with_suffix(".json").write_text(dumps(doc) + "\n", encoding="utf-8")
    if not final or not doc["runs"]:
        return
    from llm_emf.tracking.plots import metric_bars
    pngs = []
    for metric in ("MRR", "NDCG@10"):
        png = out.parent / f"{out.name}_{metric.replace('@', '')}.png"
        metric_bars(means(doc["aggregate"]), png, metric=metric, title=f"test {metric} (mean over seeds)")
        pngs.append(png.name)
    if any(r["history"] for r in doc["runs"]):
        curves = out.parent / f"{out.name}_curves.png"
        training_curves_by_variant(doc["runs"], curves)
        pngs.append(curves.name)
    out.with_suffix(".md").write_text(markdown_report(doc, pngs), encoding="utf-8")


def converge_status(args, doc: dict) -> int:
    """0, or 1 with a message when ``--converge`` is on and a trained run did not stop early."""
    late = unconverged(doc["runs"])
    if late:
        print(f"[quality] warning: {len(late)} trained runs hit train.epochs without stopping early: "
              + ", ".join(f"{r['variant']} seed {r['seed']}" for r in late), flush=True)
    return 1 if args.converge and late else 0


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
    analysis = {"reference": args.reference, "n_boot": args.bootstrap, "boot_seed": args.bootstrap_seed}

    if args.report_only:
        doc = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
        doc["notes"] = doc.get("notes", []) + [n for n in args.note if n not in doc.get("notes", [])]
        write_outputs(out, doc, final=True, analysis=analysis)
        print(markdown_table(doc["aggregate"]))
        return converge_status(args, doc)
    if args.negatives_seed is not None:
        args.overrides = [*args.overrides, negatives_seed_override(args.negatives_seed)]
    targets, target_counts = targets_by_domain(args.dataset)
    parent = None
    if not args.no_tracking:     # a parent MLflow run for the benchmark; its children are the runs
        from llm_emf.config import load_config
        from llm_emf.tracking import Tracker
        parent = Tracker.start_parent(load_config(None, [f"data.dataset={args.dataset}", *args.overrides]),
                                      f"quality-{out.name}", tags={"llm_emf.role": "benchmark"}, log_config=False)
    doc = {"dataset": args.dataset, "features": args.features, "variants": {v: table[v] for v in variants},
           "seeds": seeds, "common_overrides": args.overrides,
           "command": command_line(__spec__.name, argv), "machine": machine(), "runs": [],
           "notes": list(args.note), "targets": targets, "target_train_counts": target_counts}
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
                run = run_untrained(variant, overrides, parent) if variant in UNTRAINED else \
                    run_one(variant, overrides, args.storage, parent)
                check_case_order(run, targets)
                doc["runs"] = [r for r in doc["runs"] if not (r["variant"] == variant and r["seed"] == seed)] + [run]
                write_outputs(out, doc, final=False, analysis=analysis)
                print(f"[quality] {variant} seed {seed}: {run['wall_s']:.0f} s, "
                      f"{run['epochs_run']} epochs (stopped early: {run['stopped_early']}), test "
                      + json.dumps({p: {d: round(ms['MRR'] or 0, 4) for d, ms in dom.items()}
                                    for p, dom in run["test"]["metrics"].items()}), flush=True)
    except BaseException as e:
        if parent is not None:
            parent.end("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    write_outputs(out, doc, final=True, analysis=analysis)
    if parent is not None:
        for path in sorted(out.parent.glob(f"{out.name}.*")) + sorted(out.parent.glob(f"{out.name}_*.png")):
            parent.log_artifact(path)
        parent.end()
    print(markdown_table(doc["aggregate"]))
    return converge_status(args, doc)


if __name__ == "__main__":
    raise SystemExit(main())
