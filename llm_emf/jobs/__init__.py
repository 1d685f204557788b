"""Resumable batch jobs that write one Parquet table (enrich, embed, batch recommendations).

- ``output``: :class:`JobOutput`, what a job writes (path, columns, cache key, part-only columns, failed rows).
- ``parts``: the re-run cache: one durable part file per finished batch, and ``split_cached``.
- ``stream``: ``write_stream`` checkpoints each batch and publishes the merged table; ``table_blocks``.
- ``durable``: whole-or-absent files (temp name, fsync, rename, fsync of the folder).
- ``summary``: :class:`JobSummary`, the end-of-job counts and report.
"""

from .output import JobOutput, failed_path, parts_folder, side_table
from .parts import split_cached
from .stream import table_blocks, write_stream
from .summary import JobSummary

__all__ = ["JobOutput", "JobSummary", "split_cached", "write_stream", "table_blocks",
           "parts_folder", "failed_path", "side_table"]
