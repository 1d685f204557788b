"""C2DSR's benchmark format (github.com/cjx96/C2DSR, ``dataset/<pair>/``), each file plain or gzip'd.

    Alist.txt / Blist.txt   ``orig_idx \\t item_id \\t new_idx`` (c2dsr_items.py: Blist may be offset by |A|)
    userlist.txt            ``reviewer_id \\t user_idx`` (optional, not needed for the sequences)
    traindata_new.txt, validdata_new.txt, testdata_new.txt
                            ``user_idx \\t n \\t item|unix_ts|date \\t ...``; B ids are offset by |A|
    items.csv               optional item metadata (item_metadata.py), or the file named by data.items

Every line of a split file is one sample, as C2DSR's loader reads them (it never looks at the user column):
one training sequence in ``traindata_new.txt``, one evaluation case in the valid/test files. The loader sorts
each line's tokens by timestamp (Python's stable sort) and takes the last one as the valid/test target; we do
the same. Releases put a user on several lines (Art-Office, as URLLM and other C2DSR descendants ship it:
every training user on two lines, one sequence ending in each domain, and some valid/test users on two lines);
each line stays its own sequence or case. Case ids are ``<split>:<user>`` for a user on one line of the file
and ``<split>:<user>:<line>`` for each line of a user on several (so a user id may not hold ``:``); the person
is ``<user>`` (llm_emf.data.people). ``extra.source_files`` counts, per file, the lines, the cases kept, the
distinct users and those on several lines.

The public copies lack ``traindata_new.txt``: the item lists and at least one split file are required, a
missing split file is recorded in ``dataset.json`` (``extra.missing_split_files``); an empty one is an error.
The count column ``n`` must be an integer; it is not compared with the tokens (in the released files it is not
their number).

Domain names (domains.py): data.domain_x / data.domain_y when set, else the folder name (C2DSR's own naming,
e.g. ``Movie-Book``), else "X" and "Y"; dataset.json says which (``extra.domain_names``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ...config.data import DataConfig
from ..schema import ITEM_SCHEMA, DataError, Dataset, DatasetMeta
from ..tables import ItemRows, SequenceRows, items_table
from ..textio import BadRows, fields_found, find_file, parse_int, read_lines
from .c2dsr_items import read_item_list
from .domains import folder_names
from .item_metadata import read_item_metadata
from .timestamps import UNITS, file_unit, odd_unit, to_seconds

SPLIT_FILES = (("traindata_new.txt", "train"), ("validdata_new.txt", "valid"), ("testdata_new.txt", "test"))
METADATA_FILE = "items.csv"
CASE_IDS = ("<split>:<user>, or <split>:<user>:<line> for each line of a user on several lines of a file: every "
            "line is one training sequence or evaluation case (as C2DSR's loader reads them)")


@dataclass
class Line:
    number: int
    text: str
    user: str
    events: list[tuple[int, int]]    # (item, timestamp) in file order


def parse_token(token: str) -> tuple[int, int] | str:
    """``'113|1393113600|2014-02-23 08:00:00|'`` -> (item, timestamp), or what was wrong."""
    parts = token.split("|")
    if len(parts) < 2:
        return f"token {token!r} without '|'"
    item, ts = parse_int(parts[0]), parse_int(parts[1])
    if item is None or ts is None:
        return f"token {token!r} (not item|timestamp integers)"
    if item < 0 or ts < 0:
        return f"token {token!r} with a negative {'item' if item < 0 else 'timestamp'}"
    return item, ts


def parse_lines(path: Path, split: str, n_items: tuple[int, int], bad: BadRows) -> list[Line]:
    min_len = 2 if split in ("valid", "test") else 1
    n_total = sum(n_items)
    lines = []
    for number, text in read_lines(path, bad, required="user lines (user_idx \\t n \\t item|ts|date ...)"):
        fields = text.split("\t")
        user = fields[0].strip()
        if len(fields) < 3:
            bad.report(path, number, "3 or more tab-separated fields (user_idx, n, item|ts|date tokens)",
                       fields_found(fields, text), text)
            continue
        if parse_int(fields[1]) is None:
            bad.report(path, number, "an integer count n in field 2 (user_idx \\t n \\t item|ts|date ...)",
                       repr(fields[1][:40]), text)
            continue
        if not user:
            bad.report(path, number, "a user id", "an empty field", text)
            continue
        if ":" in user:
            bad.report(path, number, "a user id without ':' (case ids are <split>:<user>[:<line>])", repr(user[:40]),
                       text)
            continue
        parsed = [parse_token(t) for t in fields[2:] if t.strip()]
        problem = next((p for p in parsed if isinstance(p, str)), None)
        if problem is not None:
            bad.report(path, number, "tokens item|unix_ts|date of non-negative integers", problem, text)
            continue
        beyond = next((item for item, _ in parsed if item >= n_total), None)
        if beyond is not None:   # the item lists are shorter than this file assumes: every id may be shifted
            raise DataError(path, number, f"item ids in [0, {n_total}): |A| {n_items[0]} + |B| {n_items[1]}, the "
                            "rows of Alist and Blist", f"item {beyond}, so a list is short of rows and ids may be "
                            "shifted (fatal even with skip_bad_rows)")
        if len(parsed) < min_len:
            bad.report(path, number, f"at least {min_len} tokens", f"{len(parsed)}", text)
            continue
        lines.append(Line(number, text, user, parsed))
    return lines


def read_split_file(path: Path, split: str, n_items: tuple[int, int], bad: BadRows, out: SequenceRows) -> dict:
    """Every line one sequence (train) or case (valid/test), in file order; -> the file's counts."""
    bad_before = len(bad)
    lines = parse_lines(path, split, n_items, bad)
    unit = file_unit(ts for line in lines for _, ts in line.events)
    kept: list[Line] = []
    for line in lines:
        problem = odd_unit([ts for _, ts in line.events], unit)
        if problem:
            bad.report(path, line.number, *problem, line.text)
            continue
        line.events.sort(key=lambda pair: pair[1])  # stable, like C2DSR's res.sort(key=takeSecond)
        kept.append(line)
    per_user = Counter(line.user for line in kept)
    for line in kept:
        suffix = f":{line.number}" if per_user[line.user] > 1 else ""
        out.add(f"{split}:{line.user}{suffix}", split, [item for item, _ in line.events],
                to_seconds([ts for _, ts in line.events], unit))
    return {"file": path.name, "lines": len(kept) + len(bad) - bad_before, "cases": len(kept),
            "users": len(per_user), "users_on_several_lines": sum(1 for n in per_user.values() if n > 1),
            "interactions": sum(len(line.events) for line in kept), "time_unit": UNITS[unit]}


def import_c2dsr(folder: Path, cfg: DataConfig, bad: BadRows) -> Dataset:
    seen: set[str] = set()
    x_items, _ = read_item_list(find_file(folder, "Alist.txt"), seen)
    y_items, y_offset = read_item_list(find_file(folder, "Blist.txt"), seen, n_before=len(x_items))
    n_items = (len(x_items), len(y_items))
    paths = {name: find_file(folder, name, required=False) for name, _ in SPLIT_FILES}
    missing_files = [name for name, path in paths.items() if path is None]
    if len(missing_files) == len(SPLIT_FILES):
        raise DataError(folder, None, f"at least one of {', '.join(n for n, _ in SPLIT_FILES)} (or .gz)", "none")
    sequences = SequenceRows()
    source_files = {}
    for name, split in SPLIT_FILES:
        if paths[name] is not None:
            source_files[split] = read_split_file(paths[name], split, n_items, bad, sequences)
        else:
            source_files[split] = {"file": None, "lines": 0, "cases": 0, "users": 0, "users_on_several_lines": 0,
                                   "interactions": 0}
    names = folder_names(cfg, folder)
    extra = {"source_files": source_files, "missing_split_files": missing_files, "domain_names": names.origin,
             "blist_new_idx_offset": y_offset, "case_ids": CASE_IDS}
    items = with_metadata(folder, cfg, x_items, y_items, bad, extra)
    meta = DatasetMeta(name=cfg.name or folder.name, domains=names.names, n_items=n_items, source=str(folder),
                       source_format="c2dsr", extra=extra)
    return Dataset(items, sequences.table(), meta)


def with_metadata(folder: Path, cfg: DataConfig, x_items: ItemRows, y_items: ItemRows, bad: BadRows,
                  extra: dict) -> pa.Table:
    """The item table, with titles and attributes from data.items or ``items.csv`` when there is one."""
    path = Path(cfg.items) if cfg.items else find_file(folder, METADATA_FILE, required=False)
    if path is None:
        return items_table(x_items, y_items)
    if not path.is_file():
        raise DataError(path, None, "an item-metadata CSV (data.items)", "no such file")
    ids = x_items.item_ids + y_items.item_ids
    metadata = read_item_metadata(path, set(ids), bad)
    for rows in (x_items, y_items):
        rows.titles = [metadata.titles.get(i) for i in rows.item_ids]
    extra["item_metadata"] = metadata.summary
    table = items_table(x_items, y_items)
    attributes = pa.array([metadata.attributes.get(i) for i in ids], pa.string())
    return table.set_column(table.schema.get_field_index("attributes"), ITEM_SCHEMA.field("attributes"), attributes)
