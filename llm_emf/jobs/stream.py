"""``write_stream``: checkpoint each batch of a job as a part file, then publish cached + new rows as one table."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from llm_emf import files

from . import parts
from .output import JobOutput

# The column model actors add to say where a batch was computed (llm_emf.features.actors): counted, never stored.
NODE_COLUMN = "ray_node_id"
from .summary import JobSummary

# What stops a job's computation early: its finished batches are published, then the error is raised again.
# Anything else (GeneratorExit, a task's cancellation) is not caught.
STOPPED = (Exception, KeyboardInterrupt, SystemExit)


def table_blocks(table: pa.Table, rows_per_block: int) -> list[pa.Table]:
    """Slice a table into blocks so Ray Data can stream and parallelise over them."""
    rows_per_block = max(1, rows_per_block)
    return [table.slice(i, rows_per_block) for i in range(0, table.num_rows, rows_per_block)] or [table]


def write_stream(batches: Iterable[pa.Table], cached: pa.Table, out: JobOutput, summary: JobSummary, total: int,
                 before_publish: Callable[[], None] | None = None) -> None:
    """Checkpoint each new batch as a part file, then publish cached rows + new rows as one ``out.path``.

    Each batch is written (atomically, fsynced) to ``out.parts`` as soon as it arrives, so the work survives a
    hard kill of this process (SIGKILL, the OOM killer): ``split_cached`` reads the parts on the next run, which
    then processes only the rest. At the end the cached rows and this run's parts, in that order, are merged
    into ``out.path`` (whole or absent: ``llm_emf.files.parquet_writer``) and the part folder is removed. If
    producing a batch raises (a failed Ray Data job, Ctrl-C), the batches finished so far are published the
    same way before the error propagates. Failed rows (``out.is_failed``) also go to ``out.failed``.
    ``before_publish`` runs just before the merge (a job writes its own side tables there, so they are never
    older than the output). ``total`` is the number of rows expected, for the progress bar. Memory stays
    bounded by ``cached`` plus one batch.
    """
    files.makedirs(files.parent(out.path))
    failed = _FailedRows(out)
    start = time.perf_counter()
    new_parts, stopped = _checkpoint(batches, out, summary, failed, total, start)
    summary.seconds = time.perf_counter() - start
    if before_publish is not None:
        before_publish()
    _publish(cached.select(out.schema.names), new_parts, out)
    failed_output = failed.publish()
    if failed_output:
        summary.failed_output = failed_output
    summary.output = str(out.path)
    if stopped is not None:
        raise stopped


def _checkpoint(batches: Iterable[pa.Table], out: JobOutput, summary: JobSummary, failed: "_FailedRows",
                total: int, start: float) -> tuple[list[str], BaseException | None]:
    """Write each batch as a part file until ``batches`` ends or stops early; the new parts and what stopped it.
    ``start``: the job's clock (perf_counter), for ``summary.first_batch_s``."""
    number = parts.open_parts(out.parts)
    new_parts: list[str] = []
    with tqdm(total=total, desc=summary.job, unit="item", disable=None, mininterval=5) as bar:
        iterator = iter(batches)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return new_parts, None
            except STOPPED as e:  # the computation failed or was interrupted: keep what is finished
                return new_parts, e
            _count_nodes(batch, summary)
            batch = batch.select(out.part_schema.names).cast(out.part_schema)
            number += 1
            if not new_parts:
                summary.first_batch_s = time.perf_counter() - start
            new_parts.append(parts.write_part(batch, out.parts, number))
            summary.done += batch.num_rows
            bar.update(batch.num_rows)
            summary.failed += failed.add(batch)


def _count_nodes(batch: pa.Table, summary: JobSummary) -> None:
    """Rows per Ray node, from the column the model actors add (features.actors.NODE_COLUMN)."""
    if NODE_COLUMN not in batch.column_names:
        return
    for entry in pc.value_counts(batch.column(NODE_COLUMN)).to_pylist():
        node = entry["values"] or "unknown"
        summary.nodes[node] = summary.nodes.get(node, 0) + entry["counts"]


class _FailedRows:
    """The rows ``out.is_failed`` marks, streamed to a side-table writer and published whole at the end."""

    def __init__(self, out: JobOutput):
        self.out = out
        self._file = contextlib.ExitStack()
        self.writer: pq.ParquetWriter | None = None

    def add(self, batch: pa.Table) -> int:
        if self.out.is_failed is None:
            return 0
        rows = batch.filter(self.out.is_failed(batch)).select(self.out.schema.names)
        if rows.num_rows:
            if self.writer is None:
                self.writer = self._file.enter_context(files.parquet_writer(self.out.failed, self.out.schema))
            self.writer.write_table(rows)
        return rows.num_rows

    def publish(self) -> str:
        """The side table's path, or "" when no row failed (a stale one from an earlier run would mislead: it
        is removed)."""
        if self.writer is None:
            files.remove(self.out.failed)
            return ""
        self._file.close()                      # closes the writer and publishes the file
        return self.out.failed


def _publish(cached: pa.Table, new_parts: list[str], out: JobOutput) -> None:
    """Merge into ``out.path`` whole-or-absent; only then drop the parts (a kill in between repeats rows,
    which ``split_cached`` drops)."""
    with files.parquet_writer(out.path, out.schema) as writer:
        for offset in range(0, cached.num_rows, 65536):
            writer.write_table(cached.slice(offset, 65536))
        for part in new_parts:
            writer.write_table(files.read_parquet(part).select(out.schema.names).cast(out.schema))
    files.remove_tree(out.parts)
