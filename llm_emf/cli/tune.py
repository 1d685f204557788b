"""``llm-emf tune --space tune_spaces/<name>.yaml``: a Ray Tune sweep (ASHA + Optuna), tracked in MLflow."""

from __future__ import annotations

import argparse

from llm_emf.config import Config

SECTIONS = ("seed", "data.dataset", "model", "train", "eval", "tune", "tracking", "pipeline.ray_address",
           "pipeline.ray_dashboard")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", help="search-space YAML (same as tune.space=...)")


def run(cfg: Config, args: argparse.Namespace) -> int:
    from llm_emf.tuning.space import load_space
    from llm_emf.tuning.sweep import run_sweep

    if args.space:
        cfg.tune.space = args.space
    load_space(cfg.tune.space)          # a bad file fails here, before Ray starts
    res = run_sweep(cfg)
    print(f"\nsweep {res.name}: {res.n_trials} trials ({res.n_stopped_early} stopped early by ASHA); state in {res.path}")
    print("best parameters:")
    for key, value in res.best_params.items():
        print(f"  {key} = {value}")
    print(f"best config written to {res.best_config_path} (use it with --config)")
    test = {k: v for k, v in res.best_metrics.items() if k.startswith("test/")}
    if test:
        print("best trial's test metrics (each domain at its best validation epoch):")
        for key in sorted(test):
            print(f"  {key:32s} {test[key]:.4f}")
    return 0
