"""A tiny hand-made two-domain dataset with hand-computed popularity ranks (see test_eval_end_to_end.py).

X = items 0..3, Y = items 4..6. Training counts: 0:4, 1:2, 2:1, 3:0 | 4:2, 5:1, 6:1.
"""

from __future__ import annotations

import pyarrow as pa

from llm_emf.data.schema import ITEM_SCHEMA, SEQUENCE_SCHEMA, Dataset, DatasetMeta

N_X, N_Y = 4, 3
SEQUENCES = [
    ("u1", "train", [0, 4, 1, 0]),
    ("u2", "train", [0, 5, 2]),
    ("u3", "train", [1, 4, 0]),
    ("u4", "train", [6]),
    ("u1", "valid", [0, 4, 1]),
    ("u2", "valid", [0, 5]),
    ("u1", "test", [0, 4, 1, 0, 3]),    # X target 3 (count 0)
    ("u2", "test", [0, 5, 2, 1]),       # X target 1 (count 2)
    ("u3", "test", [1, 4, 0, 6]),       # Y target 6 (count 1, tied with item 5)
    ("u4", "test", [5, 4]),             # Y target 4 (count 2)
    ("u5", "test", [2, 2]),             # X target 2 (count 1), also in its own history
]


def make_dataset(sequences=SEQUENCES, n_x=N_X, n_y=N_Y) -> Dataset:
    items = pa.table({"item_index": list(range(n_x + n_y)),
                      "item_id": [f"i{i}" for i in range(n_x + n_y)],
                      "domain": [0] * n_x + [1] * n_y,
                      "title": [None] * (n_x + n_y), "image_uri": [None] * (n_x + n_y),
                      "attributes": [None] * (n_x + n_y)}, schema=ITEM_SCHEMA)
    seqs = pa.table({"user_id": [s[0] for s in sequences], "split": [s[1] for s in sequences],
                     "items": [s[2] for s in sequences], "timestamps": [None] * len(sequences)},
                    schema=SEQUENCE_SCHEMA)
    return Dataset(items, seqs, DatasetMeta(name="tiny", domains=("Food", "Kitchen"), n_items=(n_x, n_y)))

