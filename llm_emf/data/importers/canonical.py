"""The ``canonical`` importer: an already prepared folder, re-checked like any other input.

``Dataset.read`` trusts folders this package wrote; here every file may be hand-made or damaged, so an
unreadable file, a missing, repeated or mistyped column, a null where the schema forbids one in the item
table, and a malformed ``dataset.json`` are DataErrors naming the file (and the row, where one row is to
blame). Sequence rows keep their nulls here: ``validate.check_sequences`` reports or quarantines them with
their row numbers, like any other bad sequence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ...config.data import DataConfig
from ..schema import ITEM_SCHEMA, QUARANTINE_SCHEMA, SEQUENCE_SCHEMA, DataError, Dataset, DatasetMeta
from ..textio import BadRows
from .domains import DomainNames, resolve_names

REQUIRED_FILES = ("items.parquet", "sequences.parquet", "dataset.json")


def read_parquet(path: Path) -> pa.Table:
    """A whole Parquet file; unreadable, or a column name given twice (which pyarrow cannot select by): DataError."""
    try:
        names = pq.read_schema(path).names
        twice = sorted({c for c in names if names.count(c) > 1})
        if twice:
            raise DataError(path, None, "each column name once", f"{names} ({', '.join(twice)} repeated)")
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        first_line = str(e).splitlines()[0] if str(e) else ""
        raise DataError(path, None, "a readable Parquet file", f"{type(e).__name__}: {first_line}") from None


def read_table(path: Path, schema: pa.Schema) -> pa.Table:
    """The columns of ``schema`` from ``path`` (others dropped), each cast to its type (nulls kept, checked later)."""
    table = read_parquet(path)
    names = table.column_names
    missing = [f.name for f in schema if f.name not in names]
    if missing:
        raise DataError(path, None, f"columns {schema.names}", f"{names} (missing {missing})")
    columns = [cast_column(path, table.column(f.name), f) for f in schema]
    return pa.Table.from_arrays(columns, schema=pa.schema([f.with_nullable(True) for f in schema]))


def cast_column(path: Path, column: pa.ChunkedArray, field: pa.Field) -> pa.ChunkedArray:
    """``column`` as ``field.type``; a failure names the first row whose value does not fit."""
    expected = f"column {field.name!r} of type {field.type}"
    try:
        return column.cast(field.type)
    except (pa.ArrowException, ValueError, OverflowError) as e:
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    try:
        column.slice(0, 0).cast(field.type)
    except (pa.ArrowException, ValueError, OverflowError):
        raise DataError(path, None, expected, f"type {column.type} ({reason})") from None
    for row in range(len(column)):      # the types convert, one value does not: find it for the message
        try:
            column.slice(row, 1).cast(field.type)
        except (pa.ArrowException, ValueError, OverflowError):
            value = repr(column[row].as_py())[:80]
            raise DataError(path, row + 1, expected, f"{value} ({column.type})") from None
    raise DataError(path, None, expected, f"type {column.type} ({reason})")


def read_meta(path: Path) -> DatasetMeta:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, getattr(e, "lineno", None), "a readable JSON file", f"{type(e).__name__}: {e}") from None
    if not isinstance(data, dict):
        raise DataError(path, None, "a JSON object", type(data).__name__)
    domains, n_items = data.get("domains"), data.get("n_items")
    if not (isinstance(domains, list) and len(domains) == 2 and all(isinstance(d, str) and d for d in domains)):
        raise DataError(path, None, '"domains": two domain names', repr(domains))
    if not (isinstance(n_items, list) and len(n_items) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in n_items)):
        raise DataError(path, None, '"n_items": two item counts (integers >= 0)', repr(n_items))
    if not isinstance(data.get("name"), str):
        raise DataError(path, None, '"name": a string', repr(data.get("name")))
    known = set(DatasetMeta.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise DataError(path, None, f"keys among {sorted(known)}", f"unknown {unknown}")
    try:
        return DatasetMeta.from_json(json.dumps(data))
    except (TypeError, ValueError) as e:
        raise DataError(path, None, "dataset.json fields of the right types", str(e)) from None


def without_nulls(path: Path, table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` cast to ``schema``; a null in a non-nullable column is fatal (e.g. items: the index every
    sequence points into)."""
    for f in schema:
        column = table.column(f.name)
        if not f.nullable and column.null_count:
            row = pc.index(pc.is_null(column), True).as_py()
            raise DataError(path, row + 1, f"a non-null {f.name}", "null")
    return table.cast(schema)


def import_canonical(folder: Path, cfg: DataConfig, bad: BadRows) -> Dataset:
    """An already prepared folder; its rows are re-checked like any other input (import_dataset)."""
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            raise DataError(folder / name, None, "a prepared dataset file (run `llm-emf prepare` first)",
                            "no such file")
    items = without_nulls(folder / "items.parquet", read_table(folder / "items.parquet", ITEM_SCHEMA), ITEM_SCHEMA)
    sequences = read_table(folder / "sequences.parquet", SEQUENCE_SCHEMA)
    meta = read_meta(folder / "dataset.json")
    # domain names: the config's when set (domains.py), else dataset.json's, with the origin it recorded
    said = meta.extra.get("domain_names") if isinstance(meta.extra, dict) else None
    names = resolve_names(cfg, DomainNames(meta.domains, said if isinstance(said, str) else "dataset.json"))
    meta.domains = names.names
    if isinstance(meta.extra, dict):
        meta.extra["domain_names"] = names.origin
    qpath = folder / "quarantine.parquet"
    if qpath.is_file():       # keep what the first import quarantined
        bad.rows.extend(without_nulls(qpath, read_table(qpath, QUARANTINE_SCHEMA), QUARANTINE_SCHEMA).to_pylist())
    return Dataset(items, sequences, meta)
