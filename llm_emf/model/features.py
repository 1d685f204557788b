"""Frozen item features (text and image embeddings) aligned to the dataset's ``item_index``.

The feature table (FEATURE_SCHEMA, stage 1) is keyed by ``item_id``; the model addresses items by
``item_index``. Items the table lacks, or rows with ``has_text`` / ``has_image`` false, get a zero vector
and a false flag so the model masks them (method.md: missing features are counted, never faked).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from llm_emf import files
from llm_emf.data.schema import DataError
from llm_emf.features.schema import FEATURE_SCHEMA


@dataclass
class ItemFeatures:
    """Dense per-item feature matrices; row ``i`` belongs to ``item_index`` i."""

    text: torch.Tensor | None       # (n_items, e_text) float32, zero rows where has_text is false
    image: torch.Tensor | None      # (n_items, e_img) float32, zero rows where has_image is false
    has_text: torch.Tensor          # (n_items,) bool
    has_image: torch.Tensor         # (n_items,) bool
    missing_rows: int = 0           # catalog items absent from the feature table (counted, masked)

    @property
    def n_items(self) -> int:
        return int(self.has_text.shape[0])

    def take(self, rows) -> "ItemFeatures":
        """The features of items ``rows`` (item indices), in that order."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return ItemFeatures(pick(self.text), pick(self.image), self.has_text[rows], self.has_image[rows])

    def fingerprint(self) -> str:
        """sha256 of the aligned matrices and flags: what the model reads, not how the Parquet file is laid
        out. A checkpoint records it, so a rewritten table (same width, other vectors) is refused."""
        h = hashlib.sha256()
        for name in ("has_text", "has_image", "text", "image"):
            t = getattr(self, name)
            h.update(name.encode() + (b"-" if t is None else str(tuple(t.shape)).encode()))
            if t is not None:
                h.update(np.ascontiguousarray(t.numpy()).tobytes())
        return h.hexdigest()


def _embedding_matrix(table: pa.Table, column: str, rows: np.ndarray, flags: np.ndarray, n_items: int,
                      path: str | Path) -> torch.Tensor | None:
    """Scatter the list<float32> ``column`` of ``table`` into an ``(n_items, e)`` matrix at ``rows``."""
    col = table.column(column).combine_chunks()
    if flags.sum() == 0:
        return None
    lengths = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False)
    width = int(lengths[flags][0])                                    # the first real row sets the width
    bad = np.flatnonzero(flags & (lengths != width))
    if bad.size:
        raise DataError(path, int(bad[0]) + 1, f"{column} of length {width} (row has_{column.split('_')[0]}=true)",
                        f"length {int(lengths[bad[0]])}")
    out = np.zeros((n_items, width), dtype=np.float32)
    keep = np.flatnonzero(flags)
    offsets = col.offsets.to_numpy()
    values = col.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    # Vectorised gather of the kept rows' lists: every kept row has exactly `width` values.
    idx = offsets[keep][:, None] + np.arange(width)[None, :]          # (n_keep, width)
    out[rows[keep]] = values[idx]
    if not np.isfinite(out).all():
        r = int(np.flatnonzero(~np.isfinite(out[rows[keep]]).all(axis=1))[0])
        raise DataError(path, int(keep[r]) + 1, f"finite {column} values", "NaN or inf")
    return torch.from_numpy(out)


def load_item_features(path: str | Path, items: pa.Table) -> ItemFeatures:
    """Read a FEATURE_SCHEMA Parquet (a local path or an object-store URI) and align it to ``items``
    (ITEM_SCHEMA) through ``item_id``."""
    if not files.is_file(path):
        raise DataError(path, None, "a feature table (run `llm-emf embed` first, or set model.features)",
                        "no such file")
    table = files.read_parquet(path)
    needed = ["item_id", "text_embedding", "image_embedding", "has_text", "has_image"]
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise DataError(path, None, f"columns {FEATURE_SCHEMA.names}", f"missing {missing}")
    n_items = items.num_rows
    item_ids = items.column("item_id").combine_chunks()
    item_index = items.column("item_index").to_numpy()
    feat_ids = table.column("item_id").combine_chunks()
    pos = pc.index_in(feat_ids, value_set=item_ids)                 # feature row -> items row, null if unknown
    if pos.null_count:
        r = int(np.flatnonzero(pc.is_null(pos).to_numpy(zero_copy_only=False))[0])
        raise DataError(path, r + 1, "an item_id present in the dataset's items table", repr(feat_ids[r].as_py()))
    pos = pos.to_numpy(zero_copy_only=False).astype(np.int64)
    rows = item_index[pos]                              # feature row -> item_index
    if len(np.unique(rows)) != len(rows):
        _, first = np.unique(rows, return_index=True)
        dup = int(np.setdiff1d(np.arange(len(rows)), first)[0])
        raise DataError(path, dup + 1, "one row per item_id", f"duplicate item_id {feat_ids[dup].as_py()!r}")
    has_text_rows = table.column("has_text").to_numpy(zero_copy_only=False).astype(bool)
    has_image_rows = table.column("has_image").to_numpy(zero_copy_only=False).astype(bool)
    text = _embedding_matrix(table, "text_embedding", rows, has_text_rows, n_items, path)
    image = _embedding_matrix(table, "image_embedding", rows, has_image_rows, n_items, path)
    has_text = np.zeros(n_items, dtype=bool)
    has_image = np.zeros(n_items, dtype=bool)
    has_text[rows] = has_text_rows
    has_image[rows] = has_image_rows
    return ItemFeatures(text, image, torch.from_numpy(has_text), torch.from_numpy(has_image),
                        missing_rows=n_items - len(rows))
