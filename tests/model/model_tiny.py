"""Tiny models and feature tables for the model tests (written here, no stage-1 run needed)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from llm_emf.config import Config
from llm_emf.features.schema import FEATURE_SCHEMA
from llm_emf.model.features import ItemFeatures

N_X, N_Y = 7, 9


def tiny_config(**model) -> Config:
    cfg = Config()
    m = cfg.model
    m.hidden_size, m.n_heads, m.n_blocks, m.max_len, m.dropout = 16, 2, 2, 6, 0.0
    for k, v in model.items():
        setattr(m, k, v)
    cfg.validate()
    return cfg


def random_features(n_items: int = N_X + N_Y, e_text: int = 5, e_img: int = 4, seed: int = 0,
                    missing_text=(2, 10), missing_image=(0, 3, 12)) -> ItemFeatures:
    g = torch.Generator().manual_seed(seed)
    text = torch.nn.functional.normalize(torch.randn(n_items, e_text, generator=g), dim=-1)
    image = torch.nn.functional.normalize(torch.randn(n_items, e_img, generator=g), dim=-1)
    has_text = torch.ones(n_items, dtype=torch.bool)
    has_image = torch.ones(n_items, dtype=torch.bool)
    has_text[list(missing_text)] = False
    has_image[list(missing_image)] = False
    text[~has_text] = 0
    image[~has_image] = 0
    return ItemFeatures(text, image, has_text, has_image)


def write_feature_table(path, item_ids, text: np.ndarray, image: np.ndarray, has_text, has_image, domains=None):
    n = len(item_ids)
    table = pa.table({
        "item_id": pa.array(item_ids, pa.string()),
        "domain": pa.array(domains if domains is not None else [0] * n, pa.int8()),
        "text_embedding": pa.array([list(map(float, r)) for r in text], pa.list_(pa.float32())),
        "image_embedding": pa.array([list(map(float, r)) for r in image], pa.list_(pa.float32())),
        "has_text": pa.array(has_text, pa.bool_()),
        "has_image": pa.array(has_image, pa.bool_()),
        "text_truncated": pa.array([False] * n),
        "text_model": pa.array(["test"] * n),
        "image_model": pa.array(["test"] * n),
        "prompt_version": pa.array(["v0"] * n),
        "content_hash": pa.array([f"h{i}" for i in range(n)]),
    }, schema=FEATURE_SCHEMA)
    pq.write_table(table, path)
    return path
