"""LLMCDSR's released format (github.com/xhran2010/LLMCDSR ``data/<pair>/``), each file plain or gzip'd.

    num.txt              line 1 = |A|, line 2 = |B|
    items_A.tsv / _B     header, then ``item_idx \\t asin \\t title`` (local index)
    train_A/B/overlap    ``user \\t i1,i2,...`` chronological; A ids in [0,|A|), B ids = |A| + local index
    valid.txt / test.txt same, overlapping users; the last id is the target

User numbers restart in every file (they are different people), so user_id is ``"<file tag>:<user>"``.
No timestamps exist: ``timestamps`` is null.

``num.txt`` fixes what every id means (B ids are |A| + local index), so an item table that disagrees with it
stops the import even with skip_bad_rows: an item_idx at or beyond the count (the count is too small), or rows
missing above the table's highest item_idx that its bad rows cannot account for (the count is too large, or the
table was cut short). Either way a skipping import would point sequences at other products. A row missing or
bad in the middle of a table changes no id: under skip_bad_rows its item keeps a placeholder id, no title.

Domain names (domains.py): data.domain_x / data.domain_y when set,
else the folder name (``Food-Kitchen``, ``llmcdsr_food_kitchen``, the bundled ``food_kitchen``), else "X"/"Y".
"""

from __future__ import annotations

from pathlib import Path

from ...config.data import DataConfig
from ..schema import DOMAIN_X, DOMAIN_Y, DataError, Dataset, DatasetMeta
from ..tables import ItemRows, SequenceRows, items_table
from ..textio import BadRows, fields_found, find_file, parse_int, read_lines
from .domains import folder_names

# (file stem, split, user-id tag, domain every item must be in or None for mixed)
SEQUENCE_FILES = (
    ("train_A", "train", "A", DOMAIN_X),
    ("train_B", "train", "B", DOMAIN_Y),
    ("train_overlap", "train", "overlap", None),
    ("valid", "valid", "valid", None),
    ("test", "test", "test", None),
)
DOMAIN_LETTER = {DOMAIN_X: "A", DOMAIN_Y: "B"}
CASE_IDS = "<file tag>:<user> (A, B, overlap, valid, test): one sequence per line; user numbers restart in every file"


def read_num(folder: Path) -> tuple[int, int]:
    path = find_file(folder, "num.txt")
    values = []
    for number, text in read_lines(path, BadRows(skip=False)):
        value = parse_int(text)
        if value is None or value < 0:
            raise DataError(path, number, "a non-negative item count", repr(text))
        values.append(value)
    if len(values) != 2:
        raise DataError(path, None, "2 lines (|A| then |B|)", f"{len(values)} lines")
    return values[0], values[1]


def read_item_table(path: Path, n: int, domain: int, seen_ids: set[str], bad: BadRows) -> tuple[ItemRows, int]:
    """Rows ``item_idx \\t asin \\t title`` -> ItemRows in local index order; returns (rows, n without a row)."""
    by_index: dict[int, tuple[str, str | None]] = {}
    data_lines, bad_before = 0, len(bad)
    letter = DOMAIN_LETTER[domain]
    for number, text in read_lines(path, bad):
        fields = text.split("\t", 2)
        if number == 1 and parse_int(fields[0]) is None:
            continue  # header
        data_lines += 1
        if len(fields) != 3:
            bad.report(path, number, "3 tab-separated fields (item_idx, asin, title)", fields_found(fields, text), text)
            continue
        idx, asin, title = parse_int(fields[0]), fields[1].strip(), fields[2].strip()
        if idx is not None and idx >= n:     # num.txt's count is too small: B ids (|A| + local) would move
            raise DataError(path, number, f"an item_idx in [0, {n}) (num.txt: |{letter}| = {n})",
                            f"item_idx {idx}: num.txt and {path.name} disagree on the number of {letter} items, and "
                            "every B id (|A| + local index) would point at another item (fatal even with "
                            "skip_bad_rows)")
        if idx is None or idx < 0:
            bad.report(path, number, f"an item_idx in [0, {n}) (num.txt)", repr(fields[0]), text)
        elif idx in by_index:
            bad.report(path, number, "each item_idx once", f"item_idx {idx} again", text)
        elif not asin:
            bad.report(path, number, "a non-empty asin", "''", text)
        elif asin in seen_ids:
            bad.report(path, number, "each item id (asin) once across both item tables", f"{asin} again", text)
        else:
            by_index[idx] = (asin, title or None)
            seen_ids.add(asin)
    if n and not data_lines:
        raise DataError(path, None, f"{n} item rows (item_idx, asin, title; num.txt)", "an empty file")
    top = max(by_index, default=-1)
    bad_here = len(bad) - bad_before
    if n - 1 - top > bad_here:     # more rows missing at the end than bad rows could have held
        raise DataError(path, None, f"rows up to item_idx {n - 1} (num.txt: |{letter}| = {n})",
                        f"rows up to item_idx {top} only: {n - 1 - top:,} missing at the end, more than its "
                        f"{bad_here} bad rows; num.txt's count is too large or the table is cut short, and "
                        "every B id (|A| + local index) could point at another item (fatal even with skip_bad_rows)")
    missing = [i for i in range(n) if i not in by_index]
    if missing:
        bad.report(path, None, f"a row for every item_idx 0..{n - 1} (num.txt)",
                   f"{len(missing)} without a row, first {missing[0]}")
    rows = ItemRows()
    for i in range(n):
        # Only reachable with skip_bad_rows: the item still exists (sequences use it) but has no metadata.
        asin, title = by_index.get(i, (f"{letter}#{i}", None))
        rows.add(asin, title)
    return rows, len(missing)


def read_sequence_file(path: Path, split: str, tag: str, domain: int | None, n_x: int, n_total: int,
                       bad: BadRows, out: SequenceRows) -> dict:
    min_len = 2 if split in ("valid", "test") else 1  # valid/test need history + target
    users: set[str] = set()
    interactions = 0
    # every sequence file is required: an empty one is a lost or truncated download
    for number, text in read_lines(path, bad, required="user lines (user \\t comma-separated item ids)"):
        fields = text.split("\t")
        if len(fields) != 2:
            bad.report(path, number, "2 tab-separated fields (user, comma-separated items)", fields_found(fields, text),
                       text)
            continue
        user, raw_items = fields[0].strip(), [t for t in fields[1].split(",") if t.strip()]
        items = [parse_int(t) for t in raw_items]
        error = None
        if not user:
            error = ("a user id", "an empty field")
        elif user in users:
            error = ("each user once per file", f"user {user} again")
        elif len(items) < min_len:
            error = (f"at least {min_len} item ids", f"{len(items)}")
        elif None in items:
            error = ("integer item ids", repr(raw_items[items.index(None)]))
        else:
            for item in items:
                if not 0 <= item < n_total:
                    error = (f"item ids in [0, {n_total}) (num.txt)", f"{item}")
                    break
                if domain is not None and (item >= n_x) != (domain == DOMAIN_Y):
                    error = (f"only domain {DOMAIN_LETTER[domain]} items "
                             f"({'[0, %d)' % n_x if domain == DOMAIN_X else '[%d, %d)' % (n_x, n_total)})",
                             f"item {item} of domain {DOMAIN_LETTER[1 - domain]}")
                    break
        if error:
            bad.report(path, number, *error, text)
            continue
        users.add(user)
        interactions += len(items)
        out.add(f"{tag}:{user}", split, items, None)
    return {"file": path.name, "users": len(users), "interactions": interactions}


def import_llmcdsr(folder: Path, cfg: DataConfig, bad: BadRows) -> Dataset:
    n_x, n_y = read_num(folder)
    seen: set[str] = set()
    x_items, x_missing = read_item_table(find_file(folder, "items_A.tsv"), n_x, DOMAIN_X, seen, bad)
    y_items, y_missing = read_item_table(find_file(folder, "items_B.tsv"), n_y, DOMAIN_Y, seen, bad)
    paths = {stem: find_file(folder, f"{stem}.txt") for stem, *_ in SEQUENCE_FILES}  # all required
    sequences = SequenceRows()
    source_files = {}
    for stem, split, tag, domain in SEQUENCE_FILES:
        source_files[stem] = read_sequence_file(paths[stem], split, tag, domain, n_x, n_x + n_y, bad, sequences)
    names = folder_names(cfg, folder)
    meta = DatasetMeta(name=cfg.name or folder.name, domains=names.names, n_items=(n_x, n_y),
                       source=str(folder), source_format="llmcdsr",
                       extra={"source_files": source_files, "missing_split_files": [],
                              "items_without_metadata": x_missing + y_missing, "domain_names": names.origin,
                              "case_ids": CASE_IDS})
    return Dataset(items_table(x_items, y_items), sequences.table(), meta)
