"""Pieces both stage-1 jobs share: reading the catalog, content hashes, the re-run cache, per-batch part
files merged into one Parquet output with a failed-rows side table, and the end-of-job summary."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import warnings
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


def parts_folder(output: Path) -> Path:
    """Where a running job keeps its finished batches, one Parquet file each, until they are merged."""
    return output.with_name(output.name + ".parts")


def _part_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []


def _read_parts(folder: Path, schema: pa.Schema) -> list[pa.Table]:
    """The finished batches a killed run left behind. A part that cannot be read as ``schema`` (truncated,
    overwritten, another layout) is renamed ``*.corrupt`` with a warning: its items are simply redone."""
    tables = []
    for part in _part_files(folder):
        try:
            tables.append(pq.read_table(part).select(schema.names).cast(schema))
        except (pa.ArrowException, OSError, KeyError, ValueError) as e:
            warnings.warn(f"{part}: unreadable part file ignored, its items will be recomputed ({e})",
                          RuntimeWarning, stacklevel=3)
            part.rename(part.with_name(part.name + ".corrupt"))
    return tables


def _first_per_key(table: pa.Table, key_column: str) -> pa.Table:
    """One row per key, the first one (a run killed between publishing and removing its parts repeats rows)."""
    keys = table.column(key_column)
    if pc.count_distinct(keys).as_py() == table.num_rows:
        return table
    seen: set = set()
    return table.filter(pa.array([not (k in seen or seen.add(k)) for k in keys.to_pylist()]))


def split_cached(keys: pa.Array, output: Path, key_column: str, schema: pa.Schema,
                 extra: pa.Schema | None = None) -> tuple[pa.Array, pa.Table]:
    """Which rows still need work: a boolean mask over ``keys``, and the reusable rows of earlier runs.

    Earlier runs are the published ``output`` and the part files of a run that was killed before it could
    publish (``parts_folder(output)``). A row is reusable when it holds one of ``keys`` without an error
    (failed rows are retried). ``extra`` columns (see ``write_stream``) are read from part files and are null
    for rows of the published output.
    """
    full = pa.schema(list(schema) + list(extra or []))
    tables = []
    if output.is_file():
        old = pq.read_table(output)
        if not set(schema.names) - set(old.column_names):  # else an older layout: recompute everything
            old = old.select(schema.names).cast(schema)
            for f in extra or []:
                old = old.append_column(f, pa.nulls(old.num_rows, f.type))
            tables.append(old)
    tables += _read_parts(parts_folder(output), full)
    if not tables:
        return pa.array([True] * len(keys)), full.empty_table()
    old = pa.concat_tables(tables)
    if "error" in old.column_names:
        old = old.filter(pc.is_null(old.column("error")))
    old = _first_per_key(old.filter(pc.is_in(old.column(key_column), value_set=keys)), key_column)
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
    unit: str = "items"            # what total/done count, for the report

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
        lines = [f"{self.job}: {self.total} {self.unit}: {self.done} done, {self.skipped_cached} skipped (cached), "
                 f"{self.failed} failed; {self.items_per_s:.1f} {self.unit}/s over {self.seconds:.1f} s",
                 f"  output: {self.output}"]
        if extra:
            lines.append(f"  {extra}")
        if self.failed_output:
            lines.append(f"  failed / problem rows: {self.failed_output}")
        return "\n".join(lines)


def failed_path(output: Path) -> Path:
    return output.with_name(output.stem + ".failed.parquet")


def write_durably(table: pa.Table, path: Path) -> None:
    """Write, flush to disk, then rename: ``path`` is either absent or a whole file, even after a SIGKILL or
    a power cut."""
    tmp = path.with_name("." + path.name + ".tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)


def write_part(table: pa.Table, folder: Path, number: int) -> Path:
    """One finished batch as ``part-NNNNNN.parquet``; the job's only per-batch checkpoint."""
    path = folder / f"part-{number:06d}.parquet"
    write_durably(table, path)
    return path


def write_stream(batches: Iterable[pa.Table], cached: pa.Table, schema: pa.Schema, output: Path,
                 summary: JobSummary, is_failed: Callable[[pa.Table], pa.Array] | None, total: int,
                 extra: pa.Schema | None = None, before_publish: Callable[[], None] | None = None) -> None:
    """Checkpoint each new batch as a part file, then publish cached rows + new rows as one ``output``.

    Each batch is written (atomically, fsynced) to ``parts_folder(output)`` as soon as it arrives, so the work
    survives a hard kill of this process (SIGKILL, the OOM killer): ``split_cached`` reads the parts on the
    next run, which then processes only the rest. At the end the cached rows and this run's parts, in that
    order, are merged into ``output`` (atomically, via ``output.partial``) and the part folder is removed. If
    producing a batch raises (a failed Ray Data job, Ctrl-C), the batches finished so far are published the
    same way before the error propagates. Failed rows (``is_failed``) also go to ``failed_path(output)``.
    ``extra`` columns of a batch are kept in the part files only (for a job's own side tables), not in
    ``output``; ``before_publish`` runs just before the merge (a job writes its own side tables there, so they
    are never older than ``output``). Memory stays bounded by ``cached`` plus one batch.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    folder = parts_folder(output)
    folder.mkdir(exist_ok=True)
    for stale in folder.glob(".*.tmp"):  # half-written by a killed run, never renamed into place
        stale.unlink()
    part_schema = pa.schema(list(schema) + list(extra or []))
    # continue the numbering of a killed run's parts (and of set-aside corrupt ones): names never collide
    number = max((int(m.group(1)) for p in folder.iterdir() if (m := re.match(r"part-(\d+)\.", p.name))), default=0)
    new_parts: list[Path] = []
    side = failed_path(output)
    side_writer = None
    interrupted: BaseException | None = None
    start = time.perf_counter()
    with tqdm(total=total, desc=summary.job, unit="item", disable=None, mininterval=5) as bar:
        iterator = iter(batches)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                break
            except BaseException as e:  # the computation failed or was interrupted: keep what is finished
                interrupted = e
                break
            batch = batch.select(part_schema.names).cast(part_schema)
            number += 1
            new_parts.append(write_part(batch, folder, number))
            summary.done += batch.num_rows
            bar.update(batch.num_rows)
            if is_failed is not None:
                failed = batch.filter(is_failed(batch)).select(schema.names)
                if failed.num_rows:
                    summary.failed += failed.num_rows
                    side_writer = side_writer or pq.ParquetWriter(side.with_name(side.name + ".partial"), schema)
                    side_writer.write_table(failed)
    summary.seconds = time.perf_counter() - start
    if before_publish is not None:
        before_publish()
    _publish(cached.select(schema.names), new_parts, schema, output)
    if side_writer is not None:
        side_writer.close()
        os.replace(side.with_name(side.name + ".partial"), side)
        summary.failed_output = str(side)
    else:
        side.unlink(missing_ok=True)  # a stale side table from an earlier run would mislead
    summary.output = str(output)
    if interrupted is not None:
        raise interrupted


def _publish(cached: pa.Table, parts: list[Path], schema: pa.Schema, output: Path) -> None:
    """Merge into ``output`` atomically; only then drop the parts (a kill in between repeats rows, which
    ``split_cached`` drops)."""
    tmp = output.with_name(output.name + ".partial")
    with pq.ParquetWriter(tmp, schema) as writer:
        for offset in range(0, cached.num_rows, 65536):
            writer.write_table(cached.slice(offset, 65536))
        for part in parts:
            writer.write_table(pq.read_table(part).select(schema.names).cast(schema))
    os.replace(tmp, output)
    shutil.rmtree(parts_folder(output), ignore_errors=True)


def table_blocks(table: pa.Table, rows_per_block: int) -> list[pa.Table]:
    """Slice a table into blocks so Ray Data can stream and parallelise over them."""
    rows_per_block = max(1, rows_per_block)
    return [table.slice(i, rows_per_block) for i in range(0, table.num_rows, rows_per_block)] or [table]
