"""A plain interaction log plus an item table (CSV with a header row, or Parquet).

    data.source  columns user,item,domain,timestamp   (timestamp: integer unix seconds)
    data.items   columns item,domain,title[,image_uri]

CSV goes through the csv module (textio.read_csv_records): quoted fields may hold commas and newlines, a
byte-order mark is dropped, old-Mac ``\r`` line endings work, a NUL byte is a bad row. In a CSV log all
timestamps must be in one unit (timestamps.py): a millisecond value among seconds is a bad row.

Domains are named by data.domain_x / data.domain_y (then the ``domain`` values must be those names); when
those are not set, the item table's two ``domain`` values are the names, X the first listed, and codes
(0/1, A/B, X/Y) give X and Y (domains.py; dataset.json extra.domain_names says which).

Each user's interactions are sorted by time (stable: ties keep file order) and split leave-one-out: test =
the whole sequence (target last), valid = all but the last (target second to last), train = all but the
last two. Users with fewer than data.min_interactions interactions are left out and counted in dataset.json
(extra.short_users).
Line numbers are 1-based file lines for CSV (the header is line 1) and 1-based rows for Parquet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ...config import ConfigError
from ...config.data import DataConfig
from ..schema import DataError, Dataset, DatasetMeta
from ..tables import ItemRows, SequenceRows, items_table
from ..textio import BadRows, parse_int, read_csv_records, wrong_width
from .canonical import read_parquet
from .domains import UNNAMED, DomainNames, configured_names, resolve_names
from .timestamps import UNITS, file_unit, to_seconds, unit_problem

LOG_COLUMNS = ("user", "item", "domain", "timestamp")
ITEM_COLUMNS = ("item", "domain", "title")
OPTIONAL_ITEM_COLUMNS = ("image_uri",)
MAX_TIMESTAMP = 2 ** 63 - 1     # timestamps are stored as int64
MAX_LISTED_USERS = 20
CODE_PAIRS = ({"0", "1"}, {"a", "b"}, {"x", "y"})   # domain values that are codes, not names


def read_rows(path: Path, required: tuple[str, ...], bad: BadRows,
              optional: tuple[str, ...] = ()) -> Iterator[tuple[int, dict, str]]:
    """Yield ``(line, {column: str | None}, raw text)`` from a CSV or Parquet file with the required columns
    (and, from Parquet, the ``optional`` ones where present)."""
    if not path.is_file():
        raise DataError(path, None, "an existing CSV or Parquet file", "no such file")
    if path.suffix == ".parquet":
        yield from _parquet_rows(path, required, optional)
        return
    header: list[str] | None = None
    for record in read_csv_records(path, bad):
        if header is None:
            header = [f.strip() for f in record.fields]
            missing = [c for c in required if c not in header]
            if missing:
                raise DataError(path, record.line, f"a header row with columns {', '.join(required)}",
                                f"{record.text!r} (missing {', '.join(missing)})")
            continue
        problem = wrong_width(record, len(header))
        if problem:
            bad.report(path, record.line, *problem, record.text)
            continue
        yield record.line, {h: (f.strip() or None) for h, f in zip(header, record.fields)}, record.text
    if header is None:
        raise DataError(path, None, f"a header row with columns {', '.join(required)}", "an empty file")


# Arrow types each Parquet column may have; anything else (float ids, bytes, lists, structs...) would turn
# into strings like "1.0" or "b'x'" that silently match nothing, so it stops the import up front.
TEXT_KINDS = "text or integer values"
TIME_KINDS = "integer unix seconds (integer, text or timestamp type)"


def _column_kind_ok(name: str, kind: pa.DataType) -> bool:
    if pa.types.is_null(kind):                        # all values null: each row is reported on its own
        return True
    text_or_int = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
    return text_or_int or (name == "timestamp" and pa.types.is_timestamp(kind))


def _parquet_rows(path: Path, required: tuple[str, ...],
                  optional: tuple[str, ...]) -> Iterator[tuple[int, dict, str]]:
    table = read_parquet(path)
    names = table.column_names
    missing = [c for c in required if c not in names]
    if missing:
        raise DataError(path, None, f"columns {', '.join(required)}", f"{names} (missing {missing})")
    wanted = [c for c in names if c in required or c in optional]
    columns = {}
    for name in wanted:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):       # pandas categoricals
            column = column.cast(column.type.value_type)
        if not _column_kind_ok(name, column.type):
            kinds = TIME_KINDS if name == "timestamp" else TEXT_KINDS
            raise DataError(path, None, f"column {name!r} of {kinds}", f"type {column.type}")
        if pa.types.is_timestamp(column.type):  # a real timestamp column -> unix seconds, rounded down
            per_second = {"s": 1, "ms": 10 ** 3, "us": 10 ** 6, "ns": 10 ** 9}[column.type.unit]
            values = [None if v is None else v // per_second for v in pc.cast(column, pa.int64()).to_pylist()]
        else:
            values = column.to_pylist()
        # as in CSV: surrounding blanks are not part of a value, and an empty value is a missing one
        columns[name] = [None if v is None or not str(v).strip() else str(v).strip() for v in values]
    for row in range(table.num_rows):
        values = {name: columns[name][row] for name in columns}
        yield row + 1, values, ",".join("" if values[c] is None else values[c] for c in wanted)


def parse_timestamp(text: str | None) -> int | None:
    """Unix seconds, or None: not an integer, negative (a "missing" sentinel such as -1), or beyond int64."""
    value = parse_int(text or "")
    return value if value is not None and 0 <= value <= MAX_TIMESTAMP else None


def read_item_table(path: Path, labels: tuple[str, str], bad: BadRows) -> tuple[ItemRows, ItemRows, dict]:
    """-> (X items, Y items, item -> (domain, local index)) keeping the table's order within a domain;
    ``labels`` are the ``domain`` values of X and Y."""
    return index_items(path, list(read_rows(path, ITEM_COLUMNS, bad, OPTIONAL_ITEM_COLUMNS)), labels, bad)


def index_items(path: Path, records: list[tuple[int, dict, str]], labels: tuple[str, str],
                bad: BadRows) -> tuple[ItemRows, ItemRows, dict]:
    rows = (ItemRows(), ItemRows())
    where: dict[str, tuple[int, int]] = {}
    for number, row, text in records:
        item, label = row["item"], row["domain"]
        if not item:
            bad.report(path, number, "a non-empty item", "an empty field", text)
        elif label not in labels:
            bad.report(path, number, f"domain {labels[0]!r} or {labels[1]!r}", repr(label), text)
        elif item in where:
            bad.report(path, number, "each item once", f"item {item} again", text)
        else:
            domain = labels.index(label)
            where[item] = (domain, rows[domain].add(item, row.get("title"), row.get("image_uri")))
    if not where:
        raise DataError(path, None, "at least one item", "none")
    return rows[0], rows[1], where


def domain_column(path: Path, records: list[tuple[int, dict, str]]) -> tuple[tuple[str, str], DomainNames]:
    """-> (the two ``domain`` values of the item table, X first, and the names they give). The values are the
    names, X the first one listed; codes (0/1, A/B, X/Y) are not names: 0/A/X is X, and they are named X, Y."""
    values = list(dict.fromkeys(row["domain"] for _, row, _ in records if row["item"] and row["domain"]))
    if not values:
        raise DataError(path, None, "at least one item", "none")
    if len(values) != 2:
        raise DataError(path, None, "items of two domains in column 'domain' (or data.domain_x / data.domain_y "
                        "set to say which two)", f"{len(values)}: {', '.join(repr(v) for v in values[:5])}")
    if {v.lower() for v in values} in CODE_PAIRS:
        labels = tuple(sorted(values, key=str.lower))
        return labels, DomainNames(UNNAMED, f"domain codes {labels[0]!r}, {labels[1]!r} in {path.name} (not names), "
                                            "so named X and Y")
    return (values[0], values[1]), DomainNames((values[0], values[1]),
                                               f"domain column of {path.name} (X: the first listed)")


def one_time_unit(source: Path, events: list[tuple], bad: BadRows) -> tuple[list[tuple], int]:
    """Events whose timestamp is in the unit most of a CSV log uses, and that unit (timestamps.py); the others
    are bad rows. Parquet logs are not checked: a timestamp-typed column carries its unit."""
    if source.suffix == ".parquet":
        return events, 0
    unit = file_unit(e[2] for e in events)
    kept = []
    for event in events:
        problem = unit_problem(event[2], unit)
        if problem:
            bad.report(source, event[3], *problem, event[4])
        else:
            kept.append(event)
    return kept, unit


def import_interactions(source: Path, cfg: DataConfig, bad: BadRows) -> Dataset:
    if not cfg.items:
        raise ConfigError("data.items: the interactions format needs an item table (item,domain,title[,image_uri])")
    items_path = Path(cfg.items)
    records = list(read_rows(items_path, ITEM_COLUMNS, bad, OPTIONAL_ITEM_COLUMNS))
    configured = configured_names(cfg)     # the domain values must then be these names
    labels, names = (configured, resolve_names(cfg, None)) if configured else domain_column(items_path, records)
    x_items, y_items, where = index_items(items_path, records, labels, bad)
    n_x = len(x_items)
    events: list[tuple[str, int, int, int, str]] = []     # (user, item_index, timestamp, line, text)
    for number, row, text in read_rows(source, LOG_COLUMNS, bad):
        user, item, domain_name, ts = row["user"], row["item"], row["domain"], parse_timestamp(row["timestamp"])
        if not user:
            bad.report(source, number, "a non-empty user", "an empty field", text)
        elif item not in where:
            bad.report(source, number, f"an item listed in {items_path.name}", f"unknown item {item!r}", text)
        elif domain_name != labels[where[item][0]]:
            bad.report(source, number, f"domain {labels[where[item][0]]!r} (item {item} in {items_path.name})",
                       repr(domain_name), text)
        elif ts is None:
            bad.report(source, number, f"an integer unix timestamp in [0, {MAX_TIMESTAMP}]", repr(row["timestamp"]),
                       text)
        else:
            domain, local = where[item]
            events.append((user, local + n_x * domain, ts, number, text))
    events, unit = one_time_unit(source, events, bad)
    by_user: dict[str, list[tuple[int, int]]] = {}
    for user, item, ts, *_ in events:
        by_user.setdefault(user, []).append((item, ts))
    sequences = SequenceRows()
    short: list[str] = []
    for user, events in by_user.items():
        if len(events) < cfg.min_interactions:
            short.append(user)
            continue
        events.sort(key=lambda e: e[1])  # stable: equal timestamps keep file order
        items, stamps = [e[0] for e in events], to_seconds([e[1] for e in events], unit)
        sequences.add(user, "train", items[:-2], stamps[:-2])
        sequences.add(user, "valid", items[:-1], stamps[:-1])
        sequences.add(user, "test", items, stamps)
    if not len(sequences):
        raise DataError(source, None, f"at least one user with >= {cfg.min_interactions} interactions",
                        f"none of {len(by_user)} users")
    meta = DatasetMeta(name=cfg.name or source.stem, domains=names.names, n_items=(n_x, len(y_items)),
                       source=str(source), source_format="interactions",
                       extra={"items_file": str(items_path), "missing_split_files": [], "time_unit": UNITS[unit],
                              "domain_names": names.origin,
                              "short_users": {"count": len(short), "min_interactions": cfg.min_interactions,
                                              "first": short[:MAX_LISTED_USERS]}})
    return Dataset(items_table(x_items, y_items), sequences.table(), meta)
