"""``llm-emf stats``: users per split, items and interactions per domain, cross-domain users, lengths."""

from __future__ import annotations

import argparse
import json

from llm_emf.data.schema import Dataset
from llm_emf.data.stats import compute_stats, format_stats

SECTIONS = ("data.dataset",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", "-d", metavar="FOLDER", help="prepared dataset folder (default: data.dataset)")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")


def run(cfg, args) -> int:
    ds = Dataset.read(getattr(args, "dataset", None) or cfg.data.dataset)
    stats = compute_stats(ds)
    print(json.dumps(stats, indent=2) if getattr(args, "json", False) else format_stats(stats))
    return 0
