"""The item catalog the feature jobs read: a prepared dataset's items.parquet, checked, and its domain names."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from llm_emf import files
from llm_emf.data.schema import ITEM_SCHEMA, DataError


def read_catalog(path: str | Path) -> pa.Table:
    """The item table of a prepared dataset (a local path or an object-store URI), checked against ITEM_SCHEMA."""
    path = str(path)
    if not files.is_file(path):
        raise DataError(path, None, "an items.parquet catalog (run `llm-emf prepare` or pass --items)", "no such file")
    try:
        table = files.read_parquet(path)
    except pa.ArrowInvalid as e:
        raise DataError(path, None, "a Parquet file", f"unreadable ({e})") from e
    missing = [f.name for f in ITEM_SCHEMA if f.name not in table.column_names]
    if missing:
        raise DataError(path, None, f"columns {ITEM_SCHEMA.names}", f"missing {missing}")
    table = table.select(ITEM_SCHEMA.names)
    ids = table.column("item_id")
    if ids.null_count:
        row = pc.index(pc.is_null(ids), True).as_py()
        raise DataError(path, row + 1, "a non-null item_id", "null")
    if pc.count_distinct(ids).as_py() != table.num_rows:
        counts = pc.value_counts(ids)
        dup = next(v["values"] for v in counts.to_pylist() if v["counts"] > 1)
        row = pc.index(ids, dup).as_py()
        raise DataError(path, row + 1, "unique item_id values", f"'{dup}' repeated")
    return table.cast(ITEM_SCHEMA)


def domain_names(items_path: str | Path, fallback: tuple[str, str]) -> tuple[str, str]:
    """Domain names from the dataset.json next to the catalog, else from data.domain_x / domain_y."""
    meta = files.join(files.parent(items_path), "dataset.json")
    if files.is_file(meta):
        names = files.read_json(meta).get("domains")
        if isinstance(names, list) and len(names) == 2:
            return str(names[0]), str(names[1])
    return fallback
