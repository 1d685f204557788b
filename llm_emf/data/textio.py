"""Reading source files with errors that name the file and the 1-based line.

Every importer reads through :func:`read_lines` (tab-separated formats, JSON lines) or
:func:`read_csv_records` (CSV), plain or gzip'd, strict UTF-8, and reports bad rows to a :class:`BadRows`,
which either stops at the first one (``DataError``) or quarantines it, so that nothing is ever dropped
silently. Both readers drop a leading byte-order mark, treat a NUL byte as a bad row (it is never part of a
real id or title), read old-Mac files (``\r`` line endings only) line by line, and warn
(:class:`TruncatedFileWarning`) when the last line has no line ending: a file cut mid-number still parses.
:func:`find_file` and :func:`single_file` refuse two candidates for one file (``x.txt`` beside ``x.txt.gz``).
"""

from __future__ import annotations

import csv
import gzip
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from .schema import QUARANTINE_SCHEMA, DataError

MAX_CONTENT_CHARS = 300  # a quarantined line is kept truncated: enough to find and fix it
BOM = "\ufeff"


class TruncatedFileWarning(UserWarning):
    """A text file whose last line has no line ending: it may have been cut short mid-value."""


def single_file(named: Path, what: str, found: list[Path]) -> Path | None:
    """The one file of ``found`` (the candidates for ``what``), None when there is none. Two or more are a
    DataError: which one is meant cannot be told, and reading either could silently read the wrong data."""
    if len(found) > 1:
        raise DataError(named, None, f"one {what}", f"{len(found)}: {[p.name for p in found]} (they may differ: "
                        "remove or rename all but one)")
    return found[0] if found else None


def find_file(folder: Path, name: str, required: bool = True) -> Path | None:
    """``folder/name`` or ``folder/name.gz`` (both: a DataError); a missing required file is a DataError."""
    found = [c for c in (folder / name, folder / f"{name}.gz") if c.is_file()]
    path = single_file(folder / name, f"file {name} or {name}.gz", found)
    if path is None and required:
        raise DataError(folder / name, None, f"the file {name} (or {name}.gz)", "no such file")
    return path


def _open_binary(path: Path):
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


CR_PROBE_BYTES = 1 << 20


def cr_only(path: Path) -> bool:
    """Old-Mac line endings: ``\\r`` but no ``\\n`` in the first MiB (a ``\\r`` inside a line is fine elsewhere)."""
    with _open_binary(path) as fh:
        head = fh.read(CR_PROBE_BYTES)
    return b"\r" in head and b"\n" not in head


def raw_lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes with their endings: split at ``\\n``, or at ``\\r`` in an old-Mac file
    (streamed: a large file is never held whole)."""
    cr = cr_only(path)
    with _open_binary(path) as fh:
        if not cr:
            yield from fh
            return
        rest = b""
        while chunk := fh.read(CR_PROBE_BYTES):
            parts = (rest + chunk).split(b"\r")
            rest = parts.pop()
            yield from (p + b"\r" for p in parts)
        if rest:
            yield rest


def fields_found(fields: list[str], text: str) -> str:
    """``"<n> fields"`` for a line of the wrong width, noting a carriage return inside it (mixed line endings)."""
    found = f"{len(fields)} fields"
    if "\r" in text:
        found += (f" (the line holds {text.count(chr(13))} carriage return(s) (\\r): a file with mixed line endings, "
                  "or old-Mac ones after its first MiB?)")
    return found


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


def warn_if_cut(path: Path, last_line: bytes, number: int) -> None:
    if last_line and not last_line.endswith((b"\n", b"\r")):
        warnings.warn(f"{path}: line {number}, the last line, has no line ending; the file may have been cut "
                      "short (check that its last value is complete)", TruncatedFileWarning, stacklevel=3)


def _decode(path: Path, number: int, raw: bytes, bad: BadRows) -> str | None:
    """One line as text, or None after reporting an undecodable byte or a NUL."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad.report(path, number, "UTF-8 text", f"undecodable byte 0x{raw[e.start]:02x} at column {e.start + 1}",
                   raw.decode("utf-8", "replace"))
        return None
    if number == 1:
        text = text.removeprefix(BOM)
    if "\0" in text:
        bad.report(path, number, "text without NUL bytes", f"a NUL byte at column {text.index(chr(0)) + 1}",
                   text.replace("\0", "\\0"))
        return None
    return text


def read_lines(path: Path, bad: BadRows, required: str | None = None) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-blank line, newline stripped.

    A line that is not valid UTF-8 or holds a NUL is a bad row (reported, not yielded); a broken gzip stream
    is fatal. ``required`` (what the file must hold) makes a file without a non-blank line an "empty file"
    error; a quarantined line is not blank, so a file of bad rows only is not called empty.
    """
    number, raw, non_blank = 0, b"", 0
    try:
        for number, raw in enumerate(raw_lines(path), start=1):
            text = _decode(path, number, raw, bad)
            if text is None:             # quarantined, not blank
                non_blank += 1
            elif text.rstrip("\r\n").strip():
                non_blank += 1
                yield number, text.rstrip("\r\n")
    except (OSError, EOFError, zlib.error) as e:
        raise _unreadable(path, e) from None
    warn_if_cut(path, raw, number)
    if required and not non_blank:
        raise DataError(path, None, required, "an empty file")


def _unreadable(path: Path, e: Exception) -> DataError:
    if isinstance(e, FileNotFoundError):
        return DataError(path, None, "a readable file", "no such file")
    return DataError(path, None, "a readable (gzip or plain text) file", f"{type(e).__name__}: {e}")


# --- CSV ---------------------------------------------------------------------------------------------------

@dataclass
class CsvRecord:
    line: int            # first physical line of the record (1-based)
    last_line: int       # last one: a quoted field may span lines
    fields: list[str]
    text: str            # the record as written, line endings stripped


class _PhysicalLines:
    """The lines csv.reader consumes, counted and kept per record. Lines end at ``\\n`` (or ``\\r\\n``), or at
    ``\\r`` in an old-Mac file. Bytes are decoded with surrogateescape so that an undecodable byte spoils one
    record, not the file. Lines handed back (:meth:`push_back`) are read again before the rest of the file;
    ``ran_out`` says the file ended while csv.reader asked for more (reset by the caller per record)."""

    def __init__(self, path: Path):
        self.path, self.count, self.last, self.taken = path, 0, b"", []
        self.pending: list[str] = []
        self.ran_out = False
        self._raw = raw_lines(path)

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.pending:
            text = self.pending.pop(0)
        else:
            try:
                raw = next(self._raw)
            except StopIteration:
                self.ran_out = True
                raise
            self.last = raw
            text = raw.decode("utf-8", "surrogateescape")
            text = text.removeprefix(BOM) if self.count == 0 else text
        self.count += 1
        self.taken.append(text)
        return text

    def push_back(self, texts: list[str]) -> None:
        self.pending[:0] = texts
        self.count -= len(texts)


def wrong_width(record: CsvRecord, width: int) -> tuple[str, str] | None:
    """(expected, found) when a record does not have ``width`` fields; notes a record over several lines,
    which is how an unclosed quote swallows the rows after it."""
    if len(record.fields) == width:
        return None
    found = f"{len(record.fields)}"
    if record.last_line > record.line:
        found += f" in one record over lines {record.line}-{record.last_line} (an unclosed quote?)"
    return f"{width} comma-separated fields", found


def _record_problem(text: str) -> tuple[str, str] | None:
    bad_byte = next((i for i, ch in enumerate(text) if "\udc80" <= ch <= "\udcff"), None)
    if bad_byte is not None:
        return "UTF-8 text", f"undecodable byte 0x{ord(text[bad_byte]) - 0xdc00:02x} at column {bad_byte + 1}"
    if "\0" in text:
        return "text without NUL bytes", f"a NUL byte at column {text.index(chr(0)) + 1}"
    return None


def _quote_opened_on(first: int, taken: list[str], field: str) -> int:
    """The line on which the last field of a record that ran to the end of the file inside quotes opened: every
    line ending from there on is inside that field (a doubled quote changes no line ending)."""
    if len(taken) == 1:
        return first
    ending = taken[0][-1]                  # "\n", or "\r" in an old-Mac file
    inside = field.count(ending) - taken[-1].endswith(ending)
    return first + len(taken) - 1 - inside


def read_csv_records(path: Path, bad: BadRows) -> Iterator[CsvRecord]:
    """Yield each non-blank record of a CSV file (the header first), parsed by the ``csv`` module: quoted
    fields may hold commas and newlines. A record the parser rejects, or with an undecodable byte or a NUL, is
    a bad row; in the header (the first record) it is a DataError.

    A quoted field still open at the end of the file (a stray ``"``) is a bad row from the record's first line
    through the line where that field opened; the lines after it are read as records again, so that one stray
    quote spoils one row, not the rest of the file."""
    lines = _PhysicalLines(path)
    reader = csv.reader(lines)
    header_seen = False
    try:
        while True:
            first, lines.taken, lines.ran_out = lines.count + 1, [], False
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as e:  # e.g. a stray carriage return inside an unquoted field
                fields, problem = None, ("one CSV row", f"unparsable CSV ({e})")
            if fields is not None and lines.ran_out:   # csv.reader returns an unclosed quoted field at EOF
                opened = _quote_opened_on(first, lines.taken, fields[-1])
                last = lines.count
                lines.push_back(lines.taken[opened - first + 1:])
                del lines.taken[opened - first + 1:]
                fields, problem = None, ('a closing quote (") for every quoted field',
                                         f"a quoted field opened on line {opened} still open at the end of the "
                                         f"file (line {last})")
            text = "".join(lines.taken).rstrip("\r\n")
            if fields is not None:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # a blank line
                problem = _record_problem(text)
            shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\0", "\\0")
            if problem and not header_seen:
                raise DataError(path, first, f"a readable CSV header row ({problem[0]})", problem[1])
            header_seen = True
            if problem:
                bad.report(path, first, *problem, shown)
                continue
            yield CsvRecord(first, lines.count, fields, shown)
    except (OSError, EOFError, zlib.error) as e:
        raise _unreadable(path, e) from None
    warn_if_cut(path, lines.last, lines.count)


def parse_int(text: str) -> int | None:
    """``int(text)`` for plain decimal integers, else None (no floats, no '1e3')."""
    text = text.strip()
    body = text[1:] if text[:1] in "+-" else text
    return int(text) if body.isdigit() and body.isascii() else None
