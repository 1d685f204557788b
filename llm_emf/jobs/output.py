"""What a job writes: :class:`JobOutput`, and the files beside its output (part files, failed rows)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa


def parts_folder(output: Path) -> Path:
    """Where a running job keeps its finished batches, one Parquet file each, until they are merged."""
    return output.with_name(output.name + ".parts")


def failed_path(output: Path) -> Path:
    """The side table of the rows a job marked failed (retried on the next run)."""
    return output.with_name(output.stem + ".failed.parquet")


@dataclass(frozen=True)
class JobOutput:
    """The table a job writes and what its re-run cache needs to know of it.

    ``key`` is the column that says which input a row answers (a content hash, a request): a rerun skips the
    keys already there without an error. ``extra`` columns are kept in the part files only, beside ``schema``
    (for a job's own side tables), never in ``path``. Rows ``is_failed`` marks also go to ``failed_path``.
    """

    path: Path
    schema: pa.Schema
    key: str
    extra: pa.Schema | None = None
    is_failed: Callable[[pa.Table], pa.Array] | None = None

    @property
    def part_schema(self) -> pa.Schema:
        return pa.schema(list(self.schema) + list(self.extra or []))

    @property
    def parts(self) -> Path:
        return parts_folder(self.path)

    @property
    def failed(self) -> Path:
        return failed_path(self.path)
