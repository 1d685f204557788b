"""C2DSR's benchmark format (github.com/cjx96/C2DSR, ``dataset/<pair>/``), each file plain or gzip'd.

    Alist.txt / Blist.txt   ``orig_idx \\t item_id \\t new_idx`` (new_idx: dense local index)
    userlist.txt            ``reviewer_id \\t user_idx`` (optional, not needed for the sequences)
    traindata_new.txt, validdata_new.txt, testdata_new.txt
                            ``user_idx \\t n \\t item|unix_ts|date \\t ...``; B ids are offset by |A|

C2DSR's loader sorts each line's tokens by timestamp (Python's stable sort) and takes the last one as the
valid/test target; we do the same. The public copies lack ``traindata_new.txt``: the item lists and at
least one split file are required, and a missing split file is recorded in ``dataset.json``
(``extra.missing_split_files``), printed by ``prepare`` and shown as 0 users by ``stats``.
"""

from __future__ import annotations

from pathlib import Path

from ...config.data import DataConfig
from ..schema import DataError, Dataset, DatasetMeta
from ..tables import ItemRows, SequenceRows, items_table
from ..textio import BadRows, find_file, parse_int, read_lines

SPLIT_FILES = (("traindata_new.txt", "train"), ("validdata_new.txt", "valid"), ("testdata_new.txt", "test"))


def read_item_list(path: Path, seen_ids: set[str], bad: BadRows) -> tuple[ItemRows, int]:
    """``orig_idx \\t item_id \\t new_idx`` -> ItemRows ordered by new_idx; returns (rows, n without a row)."""
    by_index: dict[int, str] = {}
    for number, text in read_lines(path, bad):
        fields = text.split("\t")
        if len(fields) != 3:
            bad.report(path, number, "3 tab-separated fields (orig_idx, item_id, new_idx)", f"{len(fields)}", text)
            continue
        item_id, idx = fields[1].strip(), parse_int(fields[2])
        if idx is None or idx < 0:
            bad.report(path, number, "a non-negative integer new_idx", repr(fields[2]), text)
        elif idx in by_index:
            bad.report(path, number, "each new_idx once", f"new_idx {idx} again", text)
        elif not item_id:
            bad.report(path, number, "a non-empty item id", "''", text)
        elif item_id in seen_ids:
            bad.report(path, number, "each item id once across Alist and Blist", f"{item_id} again", text)
        else:
            by_index[idx] = item_id
            seen_ids.add(item_id)
    n = max(by_index) + 1 if by_index else 0
    if n == 0:
        raise DataError(path, None, "at least one item", "none")
    missing = [i for i in range(n) if i not in by_index]
    if missing:
        bad.report(path, None, f"dense new_idx 0..{n - 1}", f"{len(missing)} gaps, first {missing[0]}")
    rows = ItemRows()
    for i in range(n):
        rows.add(by_index.get(i, f"{path.name.split('list')[0]}#{i}"))  # placeholder only under skip_bad_rows
    return rows, len(missing)


def parse_token(token: str, n_total: int) -> tuple[int, int] | str:
    """``'113|1393113600|2014-02-23 08:00:00|'`` -> (item, timestamp), or what was wrong."""
    parts = token.split("|")
    if len(parts) < 2:
        return f"token {token!r} without '|'"
    item, ts = parse_int(parts[0]), parse_int(parts[1])
    if item is None or ts is None:
        return f"token {token!r} (not item|timestamp integers)"
    if not 0 <= item < n_total:
        return f"item {item} outside [0, {n_total})"
    return item, ts


def read_split_file(path: Path, split: str, n_total: int, bad: BadRows, out: SequenceRows) -> dict:
    min_len = 2 if split in ("valid", "test") else 1
    users: set[str] = set()
    interactions = 0
    for number, text in read_lines(path, bad):
        fields = text.split("\t")
        user = fields[0].strip()
        tokens = [t for t in fields[2:] if t.strip()]
        if len(fields) < 3 or parse_int(fields[1]) is None:
            bad.report(path, number, "user_idx \\t n \\t item|ts|date tokens", f"{len(fields)} fields", text)
            continue
        if not user or user in users:
            bad.report(path, number, "a user id not seen before in this file", repr(user), text)
            continue
        parsed = [parse_token(t, n_total) for t in tokens]
        problem = next((p for p in parsed if isinstance(p, str)), None)
        if problem is not None:
            bad.report(path, number, f"tokens item|unix_ts|date with item in [0, {n_total})", problem, text)
            continue
        if len(parsed) < min_len:
            bad.report(path, number, f"at least {min_len} tokens", f"{len(parsed)}", text)
            continue
        parsed.sort(key=lambda pair: pair[1])  # stable, like C2DSR's res.sort(key=takeSecond)
        users.add(user)
        interactions += len(parsed)
        out.add(f"{split}:{user}", split, [p[0] for p in parsed], [p[1] for p in parsed])
    return {"file": path.name, "users": len(users), "interactions": interactions}


def import_c2dsr(folder: Path, cfg: DataConfig, bad: BadRows) -> Dataset:
    seen: set[str] = set()
    x_items, x_missing = read_item_list(find_file(folder, "Alist.txt"), seen, bad)
    y_items, y_missing = read_item_list(find_file(folder, "Blist.txt"), seen, bad)
    n_x, n_y = len(x_items), len(y_items)
    paths = {name: find_file(folder, name, required=False) for name, _ in SPLIT_FILES}
    missing_files = [name for name, path in paths.items() if path is None]
    if len(missing_files) == len(SPLIT_FILES):
        raise DataError(folder, None, f"at least one of {', '.join(n for n, _ in SPLIT_FILES)} (or .gz)", "none")
    sequences = SequenceRows()
    source_files = {}
    for name, split in SPLIT_FILES:
        if paths[name] is not None:
            source_files[split] = read_split_file(paths[name], split, n_x + n_y, bad, sequences)
        else:
            source_files[split] = {"file": None, "users": 0, "interactions": 0}
    meta = DatasetMeta(name=cfg.name or folder.name, domains=(cfg.domain_x, cfg.domain_y), n_items=(n_x, n_y),
                       source=str(folder), source_format="c2dsr",
                       extra={"source_files": source_files, "missing_split_files": missing_files,
                              "items_without_metadata": x_missing + y_missing})
    return Dataset(items_table(x_items, y_items), sequences.table(), meta)
