"""What a job writes: :class:`JobOutput`, and the files beside its output (part files, failed rows)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa

from llm_emf import files


def parts_folder(output: str | Path) -> str:
    """Where a running job keeps its finished batches, one Parquet file each, until they are merged."""
    return files.join(files.parent(output), files.basename(output) + ".parts")


def side_table(output: str | Path, kind: str) -> str:
    """``<output stem>.<kind>.parquet`` beside the output: a job's side tables (failed rows, image problems)."""
    name = files.basename(output)
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return files.join(files.parent(output), f"{stem}.{kind}.parquet")


def failed_path(output: str | Path) -> str:
    """The side table of the rows a job marked failed (retried on the next run)."""
    return side_table(output, "failed")


@dataclass(frozen=True)
class JobOutput:
    """The table a job writes and what its re-run cache needs to know of it.

    ``path`` is a local path or an object-store URI (``llm_emf.files``). ``key`` is the column that says which
    input a row answers (a content hash, a request): a rerun skips the keys already there without an error.
    ``extra`` columns are kept in the part files only, beside ``schema`` (for a job's own side tables), never
    in ``path``. Rows ``is_failed`` marks also go to ``failed_path``.
    """

    path: str
    schema: pa.Schema
    key: str
    extra: pa.Schema | None = None
    is_failed: Callable[[pa.Table], pa.Array] | None = None

    def __post_init__(self):
        object.__setattr__(self, "path", files.absolute(self.path))

    @property
    def part_schema(self) -> pa.Schema:
        return pa.schema(list(self.schema) + list(self.extra or []))

    @property
    def parts(self) -> str:
        return parts_folder(self.path)

    @property
    def failed(self) -> str:
        return failed_path(self.path)
