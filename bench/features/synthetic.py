"""A synthetic catalog for the stage-1 benchmarks: real titles (cycled, made unique), a pool of synthetic
images shared by many items, and a few items without an image."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from llm_emf.data.schema import ITEM_SCHEMA

DATA = Path("/work/shared/data/llmcdsr_food_kitchen")


def load_titles() -> list[tuple[int, str]]:
    titles = []
    for domain, name in ((0, "items_A.tsv.gz"), (1, "items_B.tsv.gz")):
        with gzip.open(DATA / name, "rt", encoding="utf-8") as f:
            next(f)
            titles += [(domain, line.rstrip("\n").split("\t", 2)[2]) for line in f]
    return titles


def write_catalog(folder: Path, n_items: int, n_images: int = 256, image_size: int = 96, seed: int = 0) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = []
    for k in range(n_images):
        path = folder / f"img{k:04d}.png"
        if not path.exists():
            Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)).save(path)
        images.append(str(path))
    titles = load_titles()
    idx = np.arange(n_items)
    picks = [titles[i % len(titles)] for i in idx]
    uris = [None if i % 97 == 0 else images[i % n_images] for i in idx]  # ~1% items without an image
    table = pa.table({
        "item_index": pa.array(idx, pa.int32()),
        "item_id": pa.array([f"SYN{i:07d}" for i in idx]),
        "domain": pa.array([d for d, _ in picks], pa.int8()),
        "title": pa.array([f"{t} #{i // len(titles)}" for i, (_, t) in zip(idx, picks)]),
        "image_uri": pa.array(uris, pa.string()),
        "attributes": pa.nulls(n_items, pa.string()),
    }).cast(ITEM_SCHEMA)
    path = folder / "items.parquet"
    pq.write_table(table, path, row_group_size=8192)
    return path
