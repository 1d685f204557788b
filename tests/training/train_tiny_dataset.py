"""A tiny, learnable cross-domain dataset written as a prepared folder, and a small training config."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from llm_emf.config import Config
from llm_emf.data.schema import ITEM_SCHEMA, SEQUENCE_SCHEMA, Dataset, DatasetMeta

N_X, N_Y = 12, 15


def tiny_dataset(n_users: int = 120, seed: int = 0) -> Dataset:
    """Users walk a fixed item cycle per domain (i -> i+1) and switch domain with probability 0.3.

    The pattern is learnable, so training must lower the loss; valid/test keep the same walk, with the
    last item as the target.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        pos = [int(rng.integers(N_X)), int(rng.integers(N_Y))]
        d = int(rng.integers(2))
        seq = []
        for _ in range(int(rng.integers(4, 12))):
            seq.append(pos[d] if d == 0 else N_X + pos[d])
            pos[d] = (pos[d] + 1) % (N_X if d == 0 else N_Y)
            if rng.random() < 0.3:
                d = 1 - d
        split = "train" if u < n_users * 2 // 3 else ("valid" if u % 2 else "test")
        rows.append({"user_id": f"u{u}", "split": split, "items": seq, "timestamps": None})
    n = N_X + N_Y
    items = pa.table({"item_index": pa.array(range(n), pa.int32()), "item_id": [f"i{i}" for i in range(n)],
                      "domain": pa.array([0] * N_X + [1] * N_Y, pa.int8()),
                      "title": [f"item {i}" for i in range(n)], "image_uri": [None] * n,
                      "attributes": [None] * n}, schema=ITEM_SCHEMA)
    sequences = pa.Table.from_pylist(rows, schema=SEQUENCE_SCHEMA)
    meta = DatasetMeta(name="tiny", domains=("Food", "Kitchen"), n_items=(N_X, N_Y), source="synthetic")
    return Dataset(items, sequences, meta)


def tiny_train_config(tmp_path, **train) -> Config:
    cfg = Config()
    cfg.data.dataset = str(tmp_path / "dataset")
    m = cfg.model
    m.hidden_size, m.n_heads, m.n_blocks, m.max_len, m.dropout = 16, 1, 1, 8, 0.1
    t = cfg.train
    t.epochs, t.batch_size, t.lr, t.patience, t.storage, t.eval_batch_size = 3, 16, 5e-3, 10, str(tmp_path / "runs"), 64
    for k, v in train.items():
        setattr(t, k, v)
    cfg.eval.n_negatives = 5
    cfg.seed = 7
    return cfg
