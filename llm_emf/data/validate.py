"""Checks of the canonical invariants, for prepared folders (format ``canonical``) and every importer's output.

Rows are 1-based row numbers of sequences.parquet / items.parquet.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .schema import SPLITS, DataError, Dataset
from .textio import BadRows


def check_items(ds: Dataset, file: str) -> None:
    """item_index dense 0..n-1, X items first, counts matching dataset.json, unique item ids: always fatal."""
    bad = BadRows(skip=False)
    index = ds.items.column("item_index").to_numpy()
    domain = ds.items.column("domain").to_numpy()
    n_x, n_y = ds.meta.n_items
    wrong = np.flatnonzero(index != np.arange(len(index)))
    if wrong.size:
        bad.report(file, int(wrong[0]) + 1, f"item_index {wrong[0]} (dense, in order)", f"{index[wrong[0]]}")
    expected_domain = (np.arange(len(index)) >= n_x).astype(domain.dtype)
    if len(index) != n_x + n_y:
        bad.report(file, None, f"{n_x} + {n_y} items (dataset.json n_items)", f"{len(index)} rows")
    wrong = np.flatnonzero(domain != expected_domain)
    if wrong.size:
        bad.report(file, int(wrong[0]) + 1, f"domain {expected_domain[wrong[0]]} (X items first, n_x={n_x})",
                   f"domain {domain[wrong[0]]}")
    ids = ds.items.column("item_id")
    if pc.count_distinct(ids).as_py() != len(ids):
        counts = pc.value_counts(ids)
        dup = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
        row = ids.to_pylist().index(dup)
        bad.report(file, ids.to_pylist().index(dup, row + 1) + 1, "each item_id once", f"{dup!r} again")


def _rows(table: pa.Table, columns: tuple[str, ...], chunk: int = 20_000):
    """The rows of ``columns`` as Python tuples, ``chunk`` rows converted at a time: the whole table as
    Python lists costs ~80 bytes per item (2 GB for a 10M-review import)."""
    for batch in table.select(list(columns)).to_batches(max_chunksize=chunk):
        yield from zip(*(column.to_pylist() for column in batch.columns))


def check_sequences(ds: Dataset, file: str, bad: BadRows) -> pa.Table:
    """Returns the sequences without the bad rows (each reported to ``bad``)."""
    n = ds.n_items
    seqs = ds.sequences
    keep = np.ones(seqs.num_rows, dtype=bool)
    seen: set[tuple[str, str]] = set()
    for row, (user, split, items, stamps) in enumerate(_rows(seqs, ("user_id", "split", "items", "timestamps"))):
        problem = None
        if user is None or items is None or None in items or (stamps is not None and None in stamps):
            problem = ("non-null user_id, items and item/timestamp values", "null")   # hand-made canonical files
        elif split not in SPLITS:
            problem = (f"split in {SPLITS}", repr(split))
        elif (user, split) in seen:
            problem = ("one sequence per (user_id, split)", f"{user!r} {split} again")
        elif len(items) < (2 if split != "train" else 1):
            problem = ("at least 2 items in valid/test (history + target), 1 in train", f"{len(items)}")
        elif min(items) < 0 or max(items) >= n:
            problem = (f"item_index in [0, {n})", f"{min(items) if min(items) < 0 else max(items)}")
        elif stamps is not None and len(stamps) != len(items):
            problem = (f"{len(items)} timestamps (one per item)", f"{len(stamps)}")
        elif stamps is not None and any(b < a for a, b in zip(stamps, stamps[1:])):
            at = next(i for i, (a, b) in enumerate(zip(stamps, stamps[1:])) if b < a)
            problem = ("non-decreasing timestamps", f"{stamps[at + 1]} after {stamps[at]} at position {at + 2}")
        if problem:
            bad.report(file, row + 1, *problem, f"{user},{split},{items}")
            keep[row] = False
        else:
            seen.add((user, split))
    return seqs if keep.all() else seqs.filter(pa.array(keep))


def check_dataset(ds: Dataset, where: str, bad: BadRows) -> Dataset:
    check_items(ds, f"{where}/items.parquet")
    ds.sequences = check_sequences(ds, f"{where}/sequences.parquet", bad)
    return ds


def check_both_domains(ds: Dataset, where: str) -> None:
    """Each domain keeps items and at least one sequence holding one of them: a cross-domain dataset reduced to
    one domain (every review of a file quarantined, a recipe that empties a domain) is a DataError naming the
    domain, never a one-domain dataset that trains and evaluates with exit 0."""
    flat = pc.list_flatten(ds.sequences.column("items")).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(ds.sequences.column("items")).to_numpy(zero_copy_only=False)
    for d, name in enumerate(ds.meta.domains):
        in_d = flat >= ds.n_x if d else flat < ds.n_x
        n_items, n_rows = ds.meta.n_items[d], int(np.unique(parents[in_d]).size)
        if n_items and n_rows:
            continue
        found = f"domain {name!r} ({'XY'[d]}) with {n_items:,} items and {n_rows:,} sequences holding one"
        quarantine = ds.quarantine
        if quarantine is not None and quarantine.num_rows:
            rows = quarantine.to_pylist()
            expected = [r["reason"].split(", found ", 1)[0] for r in rows]   # grouped by what was expected
            common = Counter(expected).most_common(1)[0][0]
            first = rows[expected.index(common)]
            found += (f"; {len(rows):,} rows were quarantined (not written: nothing was prepared), "
                      f"{expected.count(common):,} of them for: {common} "
                      f"(first: {first['file']}, line {first['line']}: {first['reason'][len(common) + 2:]})")
        raise DataError(where, None, f"items and sequences in both domains ({ds.meta.domains[0]}, "
                        f"{ds.meta.domains[1]})", found)
