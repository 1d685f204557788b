"""The re-run cache: every finished batch is a durable part file in ``parts_folder(output)`` until the job
publishes; ``split_cached`` says which inputs an earlier run (published or killed) already answered."""

from __future__ import annotations

import re
import warnings

import pyarrow as pa
import pyarrow.compute as pc

from llm_emf import files

from .output import JobOutput


def write_part(table: pa.Table, folder: str, number: int) -> str:
    """One finished batch as ``part-NNNNNN.parquet`` (a local file or an object, whole or absent); the job's
    only per-batch checkpoint."""
    path = files.join(folder, f"part-{number:06d}.parquet")
    files.write_parquet(table, path)
    return path


def open_parts(folder: str) -> int:
    """Make ``folder`` ready for this run's parts; the number of the last part already there (0: none)."""
    files.makedirs(folder)
    for stale in files.glob(folder, ".*.tmp"):  # half-written locally by a killed run, never renamed into place
        files.remove(stale)
    # continue the numbering of a killed run's parts (and of set-aside corrupt ones): names never collide
    return max((int(m.group(1)) for name in files.listdir(folder) if (m := re.match(r"part-(\d+)\.", name))),
               default=0)


def _part_files(folder: str) -> list[str]:
    return files.glob(folder, "part-*.parquet")


def read_parts(folder: str, schema: pa.Schema) -> list[pa.Table]:
    """The finished batches a killed run left behind. A part that cannot be read as ``schema`` (truncated,
    overwritten, another layout) is renamed ``*.corrupt`` with a warning: its items are simply redone."""
    tables = []
    for part in _part_files(folder):
        try:
            tables.append(files.read_parquet(part).select(schema.names).cast(schema))
        except (pa.ArrowException, OSError, KeyError, ValueError) as e:
            warnings.warn(f"{part}: unreadable part file ignored, its items will be recomputed ({e})",
                          RuntimeWarning, stacklevel=3)
            files.move(part, part + ".corrupt")
    return tables


def _published_rows(out: JobOutput) -> list[pa.Table]:
    """The rows of the published output as ``out.part_schema`` (``extra`` columns null); none if it has an
    older layout (everything is recomputed)."""
    if not files.is_file(out.path):
        return []
    old = files.read_parquet(out.path)
    if set(out.schema.names) - set(old.column_names):
        return []
    old = old.select(out.schema.names).cast(out.schema)
    for f in out.extra or []:
        old = old.append_column(f, pa.nulls(old.num_rows, f.type))
    return [old]


def _first_per_key(table: pa.Table, key_column: str) -> pa.Table:
    """One row per key, the first one (a run killed between publishing and removing its parts repeats rows)."""
    keys = table.column(key_column)
    if pc.count_distinct(keys).as_py() == table.num_rows:
        return table
    seen: set = set()
    return table.filter(pa.array([not (k in seen or seen.add(k)) for k in keys.to_pylist()]))


def split_cached(keys: pa.Array, out: JobOutput) -> tuple[pa.Array, pa.Table]:
    """Which rows still need work: a boolean mask over ``keys``, and the reusable rows of earlier runs.

    Earlier runs are the published ``out.path`` and the part files of a run that was killed before it could
    publish (``out.parts``). A row is reusable when its ``out.key`` is one of ``keys`` and it has no error
    (failed rows are retried). ``out.extra`` columns are read from part files and are null for rows of the
    published output.
    """
    tables = _published_rows(out) + read_parts(out.parts, out.part_schema)
    if not tables:
        return pa.array([True] * len(keys)), out.part_schema.empty_table()
    old = pa.concat_tables(tables)
    if "error" in old.column_names:
        old = old.filter(pc.is_null(old.column("error")))
    old = _first_per_key(old.filter(pc.is_in(old.column(out.key), value_set=keys)), out.key)
    todo = pc.invert(pc.is_in(keys, value_set=old.column(out.key)))
    return todo, old
