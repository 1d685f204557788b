"""Reading source files line by line with errors that name the file and the 1-based line.

Every importer reads through :func:`read_lines` (plain or gzip'd, strict UTF-8) and reports bad rows to a
:class:`BadRows`, which either stops at the first one (``DataError``) or quarantines it, so that nothing is
ever dropped silently.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from .schema import QUARANTINE_SCHEMA, DataError

MAX_CONTENT_CHARS = 300  # a quarantined line is kept truncated: enough to find and fix it


def find_file(folder: Path, name: str, required: bool = True) -> Path | None:
    """``folder/name`` or ``folder/name.gz``; a missing required file is a DataError."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    if required:
        raise DataError(folder / name, None, f"the file {name} (or {name}.gz)", "no such file")
    return None


def _open_binary(path: Path):
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


class BadRows:
    """Collects bad rows: raises on the first one, or (``skip=True``) keeps them for quarantine.parquet."""

    def __init__(self, skip: bool):
        self.skip = skip
        self.rows: list[dict] = []

    def report(self, file: str | Path, line: int | None, expected: str, found: str, content: str = "") -> None:
        error = DataError(file, line, expected, found)
        if not self.skip:
            raise error
        self.rows.append({"file": str(file), "line": int(line or 0), "reason": f"expected {expected}, found {found}",
                          "content": content[:MAX_CONTENT_CHARS]})

    def __len__(self) -> int:
        return len(self.rows)

    def table(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows, schema=QUARANTINE_SCHEMA)


def read_lines(path: Path, bad: BadRows) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-blank line, newline stripped.

    A line that is not valid UTF-8 is a bad row (reported, not yielded); a broken gzip stream is fatal.
    """
    try:
        with _open_binary(path) as fh:
            for number, raw in enumerate(fh, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    bad.report(path, number, "UTF-8 text", f"undecodable byte 0x{raw[e.start]:02x} at column "
                               f"{e.start + 1}", raw.decode("utf-8", "replace"))
                    continue
                text = text.rstrip("\r\n")
                if text.strip():
                    yield number, text
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise DataError(path, None, "a readable file", "no such file") from None
        raise DataError(path, None, "a readable (gzip or plain text) file", f"{type(e).__name__}: {e}") from None


def parse_int(text: str) -> int | None:
    """``int(text)`` for plain decimal integers, else None (no floats, no '1e3')."""
    text = text.strip()
    body = text[1:] if text[:1] in "+-" else text
    return int(text) if body.isdigit() and body.isascii() else None
