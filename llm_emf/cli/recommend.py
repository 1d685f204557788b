"""``llm-emf recommend``: top-k next items of one domain for a user, from a trained run or checkpoint;
with ``--all``, the top-k of both domains for every user of a split, written to Parquet by a Ray Data job."""

from __future__ import annotations

import argparse

import pyarrow.compute as pc

from llm_emf.config import Config, ConfigError
from llm_emf.data.schema import SPLITS, Dataset

SECTIONS = ("data.dataset", "pipeline.ray_dashboard")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder (train.storage/run_name) or checkpoint folder; a local "
                   "path or an s3:// / gs:// URI")
    p.add_argument("--user", help="user_id as in the dataset")
    p.add_argument("--domain", help="X, Y, 0, 1 or a domain name (e.g. Food)")
    p.add_argument("--all", action="store_true", help="every user of --split, both domains, to --output (Parquet; "
                   "a Ray Data job, resumable: a rerun computes only the users it had not finished)")
    p.add_argument("--split", default="test", choices=SPLITS, help="with --all: whose users (default test)")
    p.add_argument("--output", help="with --all: Parquet file (default <run>/recommendations_<split>.parquet)")
    p.add_argument("--batch-size", type=int, default=256, help="with --all: users per model call (default 256)")
    p.add_argument("--concurrency", type=int, default=1, help="with --all: model actors (default 1)")
    p.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    p.add_argument("--include-seen", action="store_true", help="allow items already in the user's history")
    p.add_argument("--dataset", help="prepared dataset folder (default: the one the run was trained on); a grown "
                   "catalog works too: items added since training are ranked from their text/image vectors")
    p.add_argument("--features", help="feature table covering --dataset's items (default: the run's model.features)")


def parse_domain(text: str, names: tuple[str, str]) -> int:
    lookup = {"x": 0, "0": 0, "y": 1, "1": 1, names[0].lower(): 0, names[1].lower(): 1}
    if text.lower() not in lookup:
        raise ConfigError(f"--domain: expected X, Y, 0, 1, {names[0]} or {names[1]}, found '{text}'")
    return lookup[text.lower()]


def user_history(dataset: Dataset, user: str) -> list[int]:
    """The user's most complete sequence: test, else valid, else train (valid/test include the history)."""
    rows = dataset.sequences.filter(pc.equal(dataset.sequences.column("user_id"), user))
    if rows.num_rows == 0:
        raise ConfigError(f"--user: expected a user_id of dataset '{dataset.meta.name}', found '{user}'")
    by_split = dict(zip(rows.column("split").to_pylist(), rows.column("items").to_pylist()))
    return next(by_split[s] for s in reversed(SPLITS) if s in by_split)


def run(cfg: Config, args: argparse.Namespace) -> int:
    from llm_emf.serving import load_models, recommend

    if args.k < 1:
        raise ConfigError(f"-k: expected a positive integer, found {args.k}")
    if args.all:
        return _run_all(cfg, args)
    if not args.user or not args.domain:
        raise ConfigError("recommend: expected --user and --domain (one user), or --all (every user of a split)")
    dataset = Dataset.read(args.dataset) if args.dataset else None
    _, dataset, models = load_models(args.run, dataset, args.features)
    domain = parse_domain(args.domain, dataset.meta.domains)
    history = user_history(dataset, args.user)
    top = recommend(models, history, domain, args.k, exclude_seen=not args.include_seen)
    ids = dataset.items.column("item_id").to_pylist()
    titles = dataset.items.column("title").to_pylist()
    print(f"top {len(top)} {dataset.meta.domains[domain]} items for user {args.user} "
          f"(history of {len(history)} items{'' if args.include_seen else ', seen items excluded'}):")
    for rank, (item, score) in enumerate(top, 1):
        title = f"  {titles[item]}" if titles[item] else ""
        print(f"{rank:>3}. {ids[item]:<12} {score:>9.4f}{title}")
    return 0


def _run_all(cfg: Config, args: argparse.Namespace) -> int:
    from llm_emf import files
    from llm_emf.serving.batch import recommend_all

    if args.batch_size < 1 or args.concurrency < 1:
        raise ConfigError(f"--batch-size and --concurrency: expected positive integers, found {args.batch_size} "
                          f"and {args.concurrency}")
    output = args.output or files.join(args.run, f"recommendations_{args.split}.parquet")   # a path or a URI
    summary = recommend_all(args.run, output, args.split, args.k, args.dataset, args.features,
                            exclude_seen=not args.include_seen, batch_size=args.batch_size,
                            concurrency=args.concurrency, dashboard=cfg.pipeline.ray_dashboard)
    print(summary.report())
    return 0
