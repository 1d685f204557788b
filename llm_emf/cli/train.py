"""``llm-emf train``: train LLM-EMF (or the SASRec baseline) on a prepared dataset (data.dataset) and test it."""

from __future__ import annotations

import argparse

from llm_emf.config import Config

SECTIONS = ("seed", "data.dataset", "model", "train", "eval")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="print only the results path")


def run(cfg: Config, args: argparse.Namespace) -> int:
    # imported late: torch and Ray are slow to import
    from llm_emf.training import train
    from llm_emf.training.tracked import train_tracked

    result = train_tracked(cfg) if cfg.tracking.enabled else train(cfg)
    if args.quiet:
        print(result.results_path)
        return 0
    for domain, best in result.best.items():
        print(f"{domain}: best validation MRR ({cfg.train.select_protocol}) {best['mrr']:.4f} at epoch {best['epoch']}")
    print(result.test.format_table(f"test split at each domain's best validation epoch ({cfg.model.name})"))
    print(f"run folder: {result.run_dir}\nresults:    {result.results_path}\ncheckpoint: {result.checkpoint}")
    return 0
