"""Pieces both stage-1 jobs share: reading the catalog, content hashes, the re-run cache, streaming
Parquet output with a failed-rows side table, and the end-of-job summary."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from llm_emf.data.schema import ITEM_SCHEMA, DataError


def read_catalog(path: str | Path) -> pa.Table:
    """The item table of a prepared dataset, checked against ITEM_SCHEMA."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "an items.parquet catalog (run `llm-emf prepare` or pass --items)", "no such file")
    try:
        table = pq.read_table(path)
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
    meta = Path(items_path).with_name("dataset.json")
    if meta.is_file():
        names = json.loads(meta.read_text(encoding="utf-8")).get("domains")
        if isinstance(names, list) and len(names) == 2:
            return str(names[0]), str(names[1])
    return fallback


def stable_hash(*parts: object) -> str:
    """A 16-hex content hash; the separator keeps ("ab", "c") and ("a", "bc") apart."""
    h = hashlib.sha256()
    for p in parts:
        h.update(("\x00" if p is None else "\x01" + str(p)).encode())
        h.update(b"\x1f")
    return h.hexdigest()[:16]


def split_cached(keys: pa.Array, output: Path, key_column: str, schema: pa.Schema) -> tuple[pa.Array, pa.Table]:
    """Which rows still need work: a boolean mask over ``keys``, and the reusable rows of the old output.

    A row is reusable when the previous output holds the same key without an error (failed rows are retried).
    """
    if not output.is_file():
        return pa.array([True] * len(keys)), schema.empty_table()
    old = pq.read_table(output)
    if set(schema.names) - set(old.column_names):
        return pa.array([True] * len(keys)), schema.empty_table()  # an older layout: recompute everything
    old = old.select(schema.names).cast(schema)
    if "error" in old.column_names:
        old = old.filter(pc.is_null(old.column("error")))
    old = old.filter(pc.is_in(old.column(key_column), value_set=keys))
    todo = pc.invert(pc.is_in(keys, value_set=old.column(key_column)))
    return todo, old


@dataclass
class JobSummary:
    job: str
    total: int = 0
    done: int = 0
    skipped_cached: int = 0
    failed: int = 0
    seconds: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    output: str = ""
    failed_output: str = ""

    @property
    def items_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + int(n)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["items_per_s"] = round(self.items_per_s, 2)
        return d

    def report(self) -> str:
        extra = ", ".join(f"{k} {v}" for k, v in sorted(self.counters.items()))
        lines = [f"{self.job}: {self.total} items: {self.done} done, {self.skipped_cached} skipped (cached), "
                 f"{self.failed} failed; {self.items_per_s:.1f} items/s over {self.seconds:.1f} s",
                 f"  output: {self.output}"]
        if extra:
            lines.append(f"  {extra}")
        if self.failed_output:
            lines.append(f"  failed / problem rows: {self.failed_output}")
        return "\n".join(lines)


def failed_path(output: Path) -> Path:
    return output.with_name(output.stem + ".failed.parquet")


def write_stream(batches: Iterable[pa.Table], cached: pa.Table, schema: pa.Schema, output: Path,
                 summary: JobSummary, is_failed: Callable[[pa.Table], pa.Array] | None, total: int) -> None:
    """Write cached rows then each new batch to ``output`` (atomically), failed rows also to a side table.

    Batches are consumed one at a time, so memory stays bounded by a few batches, not the catalog. If producing
    a batch raises (a failed Ray Data job, Ctrl-C), the batches finished so far are still published to
    ``output`` before the error propagates, so a rerun only processes the rest. A hard kill (SIGKILL, OOM) of
    this process leaves only ``output.partial`` (no Parquet footer, never read) and the previous ``output``.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".partial")
    side = failed_path(output)
    side_writer = None
    interrupted: BaseException | None = None
    start = time.perf_counter()
    with pq.ParquetWriter(tmp, schema) as writer, \
            tqdm(total=total, desc=summary.job, unit="item", disable=None, mininterval=5) as bar:
        for offset in range(0, cached.num_rows, 65536):
            writer.write_table(cached.slice(offset, 65536))
        iterator = iter(batches)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                break
            except BaseException as e:  # the computation failed or was interrupted: keep what is finished
                interrupted = e
                break
            batch = batch.select(schema.names).cast(schema)
            writer.write_table(batch)
            summary.done += batch.num_rows
            bar.update(batch.num_rows)
            if is_failed is not None:
                failed = batch.filter(is_failed(batch))
                if failed.num_rows:
                    summary.failed += failed.num_rows
                    side_writer = side_writer or pq.ParquetWriter(side.with_name(side.name + ".partial"), schema)
                    side_writer.write_table(failed)
    summary.seconds = time.perf_counter() - start
    os.replace(tmp, output)
    if side_writer is not None:
        side_writer.close()
        os.replace(side.with_name(side.name + ".partial"), side)
        summary.failed_output = str(side)
    else:
        side.unlink(missing_ok=True)  # a stale side table from an earlier run would mislead
    summary.output = str(output)
    if interrupted is not None:
        raise interrupted


def table_blocks(table: pa.Table, rows_per_block: int) -> list[pa.Table]:
    """Slice a table into blocks so Ray Data can stream and parallelise over them."""
    rows_per_block = max(1, rows_per_block)
    return [table.slice(i, rows_per_block) for i in range(0, table.num_rows, rows_per_block)] or [table]
