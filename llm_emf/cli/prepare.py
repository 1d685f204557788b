"""``llm-emf prepare``: import data.source (in data.format) into the canonical dataset folder data.dataset."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from llm_emf import files
from llm_emf.data.prepare import notes, prepare_dataset

SECTIONS = ("seed", "data")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="same as data.skip_bad_rows=true: quarantine bad rows instead of stopping")


def summary(stats: dict, meta_extra: dict, output: str | Path, seconds: float,
            synthetic_images: bool = False) -> str:
    x, y = stats["domains"]
    sp = stats["splits"]
    text = (f"Prepared '{stats['name']}' ({stats['source_format']}) in {seconds:.1f} s into {output}: "
            f"{stats['items'][0]:,} {x} and {stats['items'][1]:,} {y} items; "
            f"{sp['train']['sequences']:,} train, {sp['valid']['sequences']:,} valid and {sp['test']['sequences']:,} "
            f"test sequences of {stats['people']:,} people ({sum(sp['train']['interactions']):,} train interactions); "
            f"{stats['quarantined_rows']:,} rows quarantined"
            f"{' (see quarantine.parquet)' if stats['quarantined_rows'] else ''}")
    if stats["missing_split_files"]:
        text += f"; missing split files (0 users): {', '.join(stats['missing_split_files'])}"
    if meta_extra.get("items_without_metadata"):
        text += f"; {meta_extra['items_without_metadata']:,} items have no item-table row (placeholder id, no title)"
    short = meta_extra.get("short_users")
    if short and short["count"]:
        text += f"; {short['count']:,} users with fewer than {short['min_interactions']} interactions left out"
    cold = meta_extra.get("cold_items")
    if cold:
        text += (f"; withheld from training for cold-start: {cold['withheld'][0]:,} {x} and {cold['withheld'][1]:,}"
                 f" {y} items ({sum(cold['train_interactions_removed']):,} training interactions removed; "
                 f"{sum(cold['test_cases_withheld']):,} test cases have a withheld target)")
    n_images = stats["items_with_image"][0] + stats["items_with_image"][1]
    if n_images and synthetic_images:
        text += f"; synthetic images under {files.join(output, 'images')}"
    elif n_images:
        text += f"; {n_images:,} items have an image link"
    return text + f". Fingerprint {stats['fingerprint']}." + "".join(f"\nnote: {n}" for n in notes(stats, meta_extra))


def run(cfg, args) -> int:
    if getattr(args, "skip_bad_rows", False):
        cfg.data.skip_bad_rows = True
    start = time.perf_counter()
    ds, stats = prepare_dataset(cfg)
    print(summary(stats, ds.meta.extra, cfg.data.dataset, time.perf_counter() - start,
                  cfg.data.synthetic_images))
    return 0
