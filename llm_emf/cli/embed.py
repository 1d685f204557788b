"""``llm-emf embed``: encode item text (enriched or raw title) and images with frozen encoders."""

from __future__ import annotations

import argparse

from llm_emf import files
from llm_emf.cli.enrich import add_catalog_arguments, catalog_path
from llm_emf.config import Config

SECTIONS = ("seed", "data.dataset", "features.embed", "features.enrich.output",
            "pipeline.ray_address", "pipeline.ray_dashboard")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_catalog_arguments(parser)
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--enriched", help="enriched item table to take text from (default: features.enrich.output "
                                      "when that file exists, else raw titles)")
    g.add_argument("--raw-titles", action="store_true", help="encode raw titles even if an enriched table exists")


def run(cfg: Config, args: argparse.Namespace) -> int:
    from llm_emf.features.embed import run_embed

    enriched = None
    if args.enriched:
        enriched = args.enriched
    elif not args.raw_titles and files.is_file(cfg.features.enrich.output):
        enriched = cfg.features.enrich.output
    summary = run_embed(cfg, catalog_path(cfg, args), enriched)
    print(f"text from: {enriched or 'raw titles'}")
    print(summary.report())
    if args.summary_json:
        files.write_json(args.summary_json, summary.to_dict())
    return 0
