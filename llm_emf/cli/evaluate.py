"""``llm-emf evaluate``: score a trained run (or a baseline) on test and valid under both protocols,
print the per-domain table and write the results as JSON. The run, the dataset and the output may be local
paths or object-store URIs (``s3://...``)."""

from __future__ import annotations

import argparse
import json

from llm_emf import files
from llm_emf.config import Config, ConfigError
from llm_emf.data.schema import Dataset
from llm_emf.evaluation import PopularityScorer, evaluate, protocols_from_config

SECTIONS = ("seed", "data.dataset", "eval", "train.eval_batch_size")
BASELINES = {"popularity": PopularityScorer}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", help="trained run folder or checkpoint to evaluate")
    p.add_argument("--baseline", choices=sorted(BASELINES), help="evaluate a non-learned baseline instead of a run")
    p.add_argument("--dataset", help="prepared dataset folder (default: data.dataset)")
    p.add_argument("--splits", default="test,valid", help="comma-separated splits to evaluate (default: test,valid)")


def _load_model_scorer(run: str, dataset: Dataset, cfg: Config):
    if not files.exists(run):
        raise ConfigError(f"--run: expected a run folder or checkpoint, found no such path '{run}'")
    from llm_emf.serving import load_scorer
    return load_scorer(run, dataset, cfg)


def _default_output(args: argparse.Namespace, cfg: Config) -> str:
    if cfg.eval.output:
        return cfg.eval.output
    if args.run:
        run = args.run
        return files.join(run if files.is_dir(run) else files.parent(run), "evaluation.json")
    return files.join(files.parent(cfg.data.dataset), "eval", f"{args.baseline}.json")


def run(cfg: Config, args: argparse.Namespace) -> int:
    if bool(args.run) == bool(args.baseline):
        raise ConfigError("llm-emf evaluate: give exactly one of --run PATH or --baseline NAME")
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    bad = [s for s in splits if s not in ("valid", "test")]
    if bad or not splits:
        raise ConfigError(f"--splits: expected a comma-separated subset of valid,test, found '{args.splits}'")
    protocols = protocols_from_config(cfg)
    if "sampled" in protocols and len(splits) > 1 and cfg.eval.negatives_file \
            and "{split}" not in cfg.eval.negatives_file:
        raise ConfigError(f"eval.negatives_file: evaluating {len(splits)} splits needs a {{split}} placeholder "
                          f"in the path, found '{cfg.eval.negatives_file}'")
    if args.dataset:
        cfg.data.dataset = args.dataset     # negatives default to living next to the dataset that is evaluated
    elif args.run and cfg.data.dataset == Config().data.dataset:
        # No dataset named: evaluate on the one the run was trained on (recorded in its checkpoint).
        from llm_emf.checkpoints import load_checkpoint_config
        from llm_emf.serving import find_checkpoint
        cfg.data.dataset = load_checkpoint_config(find_checkpoint(args.run)).data.dataset
    dataset = Dataset.read(cfg.data.dataset)
    if args.baseline:
        scorer, name = BASELINES[args.baseline](dataset), args.baseline
    else:
        scorer, name = _load_model_scorer(args.run, dataset, cfg), str(args.run)

    results = {}
    for split in splits:
        result = evaluate(scorer, dataset, split, cfg, protocols, scorer_name=name)
        print(result.format_table(f"{name}: {split} split of {dataset.meta.name} "
                                  f"(ties {cfg.eval.ties}, seed {cfg.seed})"))
        print()
        results[split] = result.to_dict()
    out = _default_output(args, cfg)
    files.write_text(out, json.dumps({"scorer": name, "dataset": dataset.meta.name, "splits": results}, indent=2)
                     + "\n")
    print(f"results written to {out}")
    return 0
