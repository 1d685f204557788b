"""``llm-emf prepare``: import data.source (in data.format) into the canonical dataset folder data.output."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from llm_emf.config import save_config
from llm_emf.data.importers import import_dataset
from llm_emf.data.stats import compute_stats
from llm_emf.data.synthetic_images import add_synthetic_images

SECTIONS = ("seed", "data")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="same as data.skip_bad_rows=true: quarantine bad rows instead of stopping")


def summary(stats: dict, meta_extra: dict, output: Path, seconds: float) -> str:
    x, y = stats["domains"]
    sp = stats["splits"]
    text = (f"Prepared '{stats['name']}' ({stats['source_format']}) in {seconds:.1f} s into {output}: "
            f"{stats['items'][0]:,} {x} and {stats['items'][1]:,} {y} items; "
            f"{sp['train']['users']:,} train, {sp['valid']['users']:,} valid and {sp['test']['users']:,} test "
            f"sequences ({sum(sp['train']['interactions']):,} train interactions); "
            f"{stats['quarantined_rows']:,} rows quarantined"
            f"{' (see quarantine.parquet)' if stats['quarantined_rows'] else ''}")
    if stats["missing_split_files"]:
        text += f"; missing split files (0 users): {', '.join(stats['missing_split_files'])}"
    if meta_extra.get("items_without_metadata"):
        text += f"; {meta_extra['items_without_metadata']:,} items have no item-table row (placeholder id, no title)"
    short = meta_extra.get("short_users")
    if short and short["count"]:
        text += f"; {short['count']:,} users with fewer than {short['min_interactions']} interactions left out"
    if stats["items_with_image"][0] + stats["items_with_image"][1]:
        text += f"; synthetic images under {output / 'images'}"
    return text + f". Fingerprint {stats['fingerprint']}."


def run(cfg, args) -> int:
    if getattr(args, "skip_bad_rows", False):
        cfg.data.skip_bad_rows = True
    start = time.perf_counter()
    ds = import_dataset(cfg.data)
    output = Path(cfg.data.output)
    if cfg.data.synthetic_images:
        add_synthetic_images(ds, output, cfg.data.image_size, cfg.seed)
    ds.write(output)
    save_config(cfg, output / "config.yaml")
    print(summary(compute_stats(ds), ds.meta.extra, output, time.perf_counter() - start))
    return 0
