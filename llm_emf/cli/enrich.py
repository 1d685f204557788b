"""``llm-emf enrich``: LLM-enrich every catalog item (title + domain -> key terms, summary, interests)."""

from __future__ import annotations

import argparse

from llm_emf import files
from llm_emf.config import Config

SECTIONS = ("seed", "data.dataset", "data.domain_x", "data.domain_y", "features.enrich", "pipeline.ray_address",
            "pipeline.ray_dashboard")


def add_catalog_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--dataset", help="prepared dataset folder (default: data.dataset); its items.parquet is read")
    g.add_argument("--items", help="an items.parquet catalog (ITEM_SCHEMA) to read instead")
    parser.add_argument("--summary-json", help="also write the job summary (counts, throughput) to this file")


def catalog_path(cfg: Config, args: argparse.Namespace) -> str:
    """The catalog to read: ``--items``, else ``<--dataset or data.dataset>/items.parquet`` (path or URI)."""
    if getattr(args, "items", None):
        return args.items
    return files.join(getattr(args, "dataset", None) or cfg.data.dataset, "items.parquet")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_catalog_arguments(parser)


def run(cfg: Config, args: argparse.Namespace) -> int:
    from llm_emf.features.enrich import run_enrich
    from llm_emf.features.catalog import domain_names

    items = catalog_path(cfg, args)
    summary = run_enrich(cfg, items, domain_names(items, (cfg.data.domain_x or "X", cfg.data.domain_y or "Y")))
    print(summary.report())
    if args.summary_json:
        files.write_json(args.summary_json, summary.to_dict())
    return 0
