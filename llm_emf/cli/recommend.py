"""``llm-emf recommend``: top-k next items of one domain for a user, from a trained run or checkpoint."""

from __future__ import annotations

import argparse

import pyarrow.compute as pc

from llm_emf.config import Config, ConfigError
from llm_emf.data.schema import SPLITS, Dataset

SECTIONS = ("data.output",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, help="run folder (train.storage/run_name) or checkpoint folder")
    p.add_argument("--user", required=True, help="user_id as in the dataset")
    p.add_argument("--domain", required=True, help="X, Y, 0, 1 or a domain name (e.g. Food)")
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
    from llm_emf.training import load_models, recommend

    if args.k < 1:
        raise ConfigError(f"-k: expected a positive integer, found {args.k}")
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
