"""Fuzzing the importers that read Parquet: the interaction log and its item table (``interactions``) and a
prepared folder (``canonical``). Random malformed files (wrong column types, nulls, missing or repeated
columns, duplicate rows, negative/huge/NaN timestamps, empty strings, unknown domains...) end in a DataError
naming the file (and the row, where one row is to blame, with what was expected and found), or in
quarantined rows: input rows == kept + quarantined. Never another exception, never a silently shorter output.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_emf.config.data import DataConfig
from llm_emf.data.importers import import_dataset
from llm_emf.data.importers.interactions import import_interactions, read_item_table
from llm_emf.data.schema import DataError, Dataset, DatasetMeta
from llm_emf.data.tables import ItemRows, SequenceRows, items_table
from llm_emf.data.textio import BadRows

from helpers.fuzz import examples

pytestmark = pytest.mark.unit
FUZZ = settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.too_slow])
DOMAINS = ("Food", "Kitchen")
ITEMS = {"i1": "Food", "i2": "Food", "i3": "Kitchen", "i4": "Kitchen"}
INT64_MAX = 2 ** 63 - 1


def text_value(value):
    """What a Parquet text/integer cell means to the importer: stripped text, blank -> missing."""
    return None if value is None or not str(value).strip() else str(value).strip()


def assert_row_error(e: DataError, path: Path, line: int) -> None:
    assert e.file == str(path) and e.line == line, str(e)
    assert str(e).startswith(f"{path}, line {line}: expected ") and ", found " in str(e)


def assert_file_error(e: DataError, path: Path, *phrases: str) -> None:
    assert e.file == str(path) and e.line is None, str(e)
    assert str(e).startswith(f"{path}: expected ") and any(p in str(e) for p in phrases), str(e)


# ---------------------------------------------------------------------------------------------------------
# Interaction log (Parquet): user,item,domain,timestamp

users = st.one_of(st.sampled_from(["u1", "u2", " u1 ", "", "  ", None]), st.text(max_size=3))
items = st.sampled_from(["i1", "i2", "i3", "i4", " i3", "i9", "", None])
domains = st.sampled_from(["Food", "Kitchen", "Toys", "", " Food ", "food", None])
int_stamps = st.one_of(st.integers(-3, 5), st.integers(0, INT64_MAX), st.none())
TEXT_STAMPS = {"100": 100, " 7 ": 7, "+3": 3, "-5": None, "x": None, "1.5": None, "": None, "1e3": None,
               "99999999999999999999": None}
# how the timestamp column is stored, and what each stored value means (None: a bad row)
STAMP_KINDS = {
    "int64": (pa.int64(), int_stamps, lambda v: v if v is not None and v >= 0 else None),
    "uint64": (pa.uint64(), st.one_of(st.integers(0, 2 ** 64 - 1), st.none()),
               lambda v: v if v is not None and v <= INT64_MAX else None),
    "timestamp_ms": (pa.timestamp("ms"), st.one_of(st.integers(-3000, 10 ** 13), st.none()),   # sub-seconds
                     lambda v: None if v is None or v < 0 else v // 1000),     # before 1970: negative
    "string": (pa.string(), st.one_of(st.sampled_from(sorted(TEXT_STAMPS)), st.none()),
               lambda v: None if v is None else TEXT_STAMPS[v]),
}
# whole-file problems: (how the table is damaged, the phrase the DataError must carry)
FILE_FAULTS = {
    "float timestamps (NaN for missing, as pandas writes them)": "column 'timestamp' of integer unix seconds",
    "binary item ids": "column 'item' of text or integer values",
    "list-valued users": "column 'user' of text or integer values",
    "no domain column": "missing ['domain']",
    "user column twice": "each column name once",
}


def write_parquet(folder: str, name: str, table: pa.Table) -> Path:
    path = Path(folder) / name
    pq.write_table(table, path)
    return path


def items_parquet(folder: str) -> Path:
    return write_parquet(folder, "items.parquet", pa.table({"item": list(ITEMS), "domain": list(ITEMS.values()),
                                                            "title": [f"title {i}" for i in ITEMS]}))


def log_table(rows: list[tuple], stamp_kind: str, int_users: bool, fault: str | None) -> pa.Table:
    stamp_type = STAMP_KINDS[stamp_kind][0]
    user, item, domain, stamp = (list(c) for c in zip(*rows))
    columns = {"user": pa.array([len(str(u)) for u in user] if int_users else user, pa.int64() if int_users
                                else pa.string()),
               "item": pa.array(item, pa.string()), "domain": pa.array(domain, pa.string()),
               "timestamp": pa.array(stamp, stamp_type), "note": pa.array([[1.5]] * len(rows))}  # ignored extra
    if fault == "float timestamps (NaN for missing, as pandas writes them)":
        columns["timestamp"] = pa.array([float("nan")] * len(rows), pa.float64())
    elif fault == "binary item ids":
        columns["item"] = pa.array([None if i is None else i.encode() for i in item], pa.binary())
    elif fault == "list-valued users":
        columns["user"] = pa.array([[u] for u in user])
    elif fault == "no domain column":
        del columns["domain"]
    table = pa.table(columns)
    if fault == "user column twice":
        table = table.append_column("user", table.column("user"))
    return table


def expected_rows(rows: list[tuple], stamp_kind: str, int_users: bool) -> list[bool]:
    """The oracle: is each input row a good interaction?"""
    stamp_of = STAMP_KINDS[stamp_kind][2]
    verdicts = []
    for user, item, domain, stamp in rows:
        user = str(len(str(user))) if int_users else text_value(user)
        item, domain = text_value(item), text_value(domain)
        verdicts.append(bool(user) and item in ITEMS and domain == ITEMS[item] and stamp_of(stamp) is not None)
    return verdicts


@st.composite
def logs(draw):
    stamp_kind = draw(st.sampled_from(sorted(STAMP_KINDS)))
    row = st.tuples(users, items, domains, STAMP_KINDS[stamp_kind][1])
    rows = draw(st.lists(row, min_size=1, max_size=12))
    rows += draw(st.lists(st.sampled_from(rows), max_size=3))                           # duplicate rows
    fault = draw(st.one_of(st.none(), st.none(), st.sampled_from(sorted(FILE_FAULTS))))
    return rows, stamp_kind, draw(st.booleans()), fault


@FUZZ
@given(logs(), st.booleans())
def test_parquet_interaction_log_imports_quarantines_or_names_the_row(log, skip):
    rows, stamp_kind, int_users, fault = log
    with tempfile.TemporaryDirectory() as tmp:
        path = write_parquet(tmp, "log.parquet", log_table(rows, stamp_kind, int_users, fault))
        cfg = DataConfig(format="interactions", source=str(path), items=str(items_parquet(tmp)), min_interactions=1)
        good = expected_rows(rows, stamp_kind, int_users)
        bad = BadRows(skip)
        try:
            ds = import_interactions(path, cfg, bad)
        except DataError as e:
            if fault:
                assert_file_error(e, path, FILE_FAULTS[fault])
            elif not skip and not all(good):
                assert_row_error(e, path, good.index(False) + 1)               # the first bad row, 1-based
            else:
                assert not any(good)
                assert_file_error(e, path, "at least one user")
            return
        assert fault is None
        kept = sum(len(s) for s in ds.split("test").column("items").to_pylist())   # test = whole sequence
        assert kept == sum(good) and kept + len(bad) == len(rows)                   # never silently shorter
        assert [r["line"] for r in bad.rows] == [n + 1 for n, ok in enumerate(good) if not ok]
        assert all(r["file"] == str(path) and r["reason"].startswith("expected ") for r in bad.rows)
        for stamps in ds.split("test").column("timestamps").to_pylist():
            assert stamps == sorted(stamps) and min(stamps) >= 0


item_rows = st.tuples(st.sampled_from(["i1", "i2", "i3", " i1 ", "", None, "7"]),
                      st.sampled_from(["Food", "Kitchen", "Toys", "", None]),
                      st.one_of(st.none(), st.text(max_size=5)))


@FUZZ
@given(st.lists(item_rows, min_size=1, max_size=8), st.booleans(), st.booleans())
def test_parquet_item_table_imports_quarantines_or_names_the_row(rows, int_titles, skip):
    item, domain, title = (list(c) for c in zip(*rows))
    with tempfile.TemporaryDirectory() as tmp:
        table = pa.table({"title": pa.array([len(t or "") for t in title]) if int_titles else title,
                          "domain": pa.array(domain, pa.string()), "item": pa.array(item, pa.string())})
        path = write_parquet(tmp, "items.parquet", table)
        seen, good = set(), []
        for i, d in zip(item, domain):
            i, d = text_value(i), text_value(d)
            good.append(bool(i) and d in DOMAINS and i not in seen)
            seen |= {i} if good[-1] else set()
        bad = BadRows(skip)
        try:
            x, y, where = read_item_table(path, DOMAINS, bad)
        except DataError as e:
            if not skip and not all(good):
                assert_row_error(e, path, good.index(False) + 1)
            else:
                assert not any(good)
                assert_file_error(e, path, "at least one item")
            return
        assert len(x) + len(y) == len(where) == sum(good) and len(where) + len(bad) == len(rows)


# ---------------------------------------------------------------------------------------------------------
# A prepared (canonical) folder: items.parquet, sequences.parquet, dataset.json

N_X, N_Y = 2, 3
item_values = st.one_of(st.integers(-1, N_X + N_Y), st.none())
sequence_rows = st.tuples(st.sampled_from(["u1", "u2", "", None]),
                          st.sampled_from(["train", "valid", "test", "Test", None]),
                          st.one_of(st.lists(item_values, max_size=4), st.none()),
                          st.one_of(st.none(), st.lists(st.one_of(st.integers(-2, 9), st.none()), max_size=4)))
# (how a file is damaged, the file it is in, the phrase the DataError must carry, row-specific?)
FOLDER_FAULTS = {
    "items as one string": ("sequences.parquet", "column 'items' of type list<item: int32>", False),
    "item lists of text": ("sequences.parquet", "column 'items' of type list<item: int32>", True),
    "float timestamps with NaN": ("sequences.parquet", "column 'timestamps' of type list<item: int64>", True),
    "no split column": ("sequences.parquet", "missing ['split']", False),
    "split column twice": ("sequences.parquet", "each column name once", False),
    "a null item_id": ("items.parquet", "a non-null item_id", True),
    "an item of domain 5": ("items.parquet", "domain 1 (X items first", True),
    "item_index beyond int32": ("items.parquet", "column 'item_index' of type int32", True),
    "dataset.json cut short": ("dataset.json", "a readable JSON file", True),            # the JSON line
    "dataset.json with three domains": ("dataset.json", '"domains": two domain names', False),
    "dataset.json with a negative count": ("dataset.json", '"n_items": two item counts', False),
    "dataset.json with an unknown key": ("dataset.json", "unknown ['colour']", False),
    "quarantine.parquet without a reason": ("quarantine.parquet", "missing ['reason', 'content']", False),
}


def write_folder(folder: Path, rows: list[tuple], fault: str | None) -> None:
    x, y = ItemRows(), ItemRows()
    for n in range(N_X):
        x.add(f"x{n}", f"title x{n}")
    for n in range(N_Y):
        y.add(f"y{n}")
    meta = DatasetMeta(name="fuzz", domains=DOMAINS, n_items=(N_X, N_Y))
    Dataset(items_table(x, y), SequenceRows().table(), meta).write(folder)      # sequences are replaced below
    user, split, item_list, stamps = (list(c) for c in zip(*rows))
    columns = {"user_id": pa.array(user, pa.string()), "split": pa.array(split, pa.string()),
               "items": pa.array(item_list, pa.list_(pa.int64())), "timestamps": pa.array(stamps, pa.list_(pa.int64()))}
    if fault == "items as one string":
        columns["items"] = pa.array([str(i) for i in item_list])
    elif fault == "item lists of text":
        columns["items"] = pa.array([[str(v) for v in i or []] + ["x"] for i in item_list])   # "x": no int
    elif fault == "float timestamps with NaN":
        columns["timestamps"] = pa.array([[1.0, float("nan")]] * len(rows))
    elif fault == "no split column":
        del columns["split"]
    table = pa.table(columns)
    if fault == "split column twice":
        table = table.append_column("split", table.column("split"))
    pq.write_table(table, folder / "sequences.parquet")
    items = pq.read_table(folder / "items.parquet")
    if fault == "a null item_id":
        items = items.set_column(1, "item_id", pa.array(["x0", None, "y0", "y1", "y2"]))
    elif fault == "an item of domain 5":
        items = items.set_column(2, "domain", pa.array([0, 0, 1, 5, 1], pa.int8()))
    elif fault == "item_index beyond int32":
        items = items.set_column(0, "item_index", pa.array([0, 1, 2, 2 ** 40, 4], pa.int64()))
    pq.write_table(items, folder / "items.parquet")
    meta_path = folder / "dataset.json"
    data = json.loads(meta_path.read_text())
    if fault == "dataset.json cut short":
        meta_path.write_text(meta_path.read_text()[:40])
        return
    if fault == "dataset.json with three domains":
        data["domains"] = ["Food", "Kitchen", "Toys"]
    elif fault == "dataset.json with a negative count":
        data["n_items"] = [N_X, -1]
    elif fault == "dataset.json with an unknown key":
        data["colour"] = "blue"
    meta_path.write_text(json.dumps(data))
    if fault == "quarantine.parquet without a reason":
        pq.write_table(pa.table({"file": ["a.txt"], "line": [3]}), folder / "quarantine.parquet")


def good_sequence(user, split, item_list, stamps) -> bool:
    """Null-free, a known split, in-range items, enough of them, aligned non-decreasing timestamps."""
    if user is None or split not in ("train", "valid", "test") or item_list is None or None in item_list:
        return False
    if stamps is not None and (None in stamps or len(stamps) != len(item_list) or stamps != sorted(stamps)):
        return False
    return len(item_list) >= (1 if split == "train" else 2) and all(0 <= i < N_X + N_Y for i in item_list)


@FUZZ
@given(st.lists(sequence_rows, min_size=1, max_size=8),
       st.one_of(st.none(), st.none(), st.sampled_from(sorted(FOLDER_FAULTS))), st.booleans())
def test_prepared_folder_imports_quarantines_or_names_the_file_and_row(rows, fault, skip):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "prepared"
        write_folder(folder, rows, fault)
        cfg = DataConfig(format="canonical", source=str(folder), skip_bad_rows=skip)
        first_good: dict[tuple, int] = {}
        verdicts = []
        for n, row in enumerate(rows):       # duplicates of (user_id, split) after the first one are bad
            ok = good_sequence(*row) and first_good.setdefault((row[0], row[1]), n) == n
            verdicts.append(ok)
        try:
            ds = import_dataset(cfg)
        except DataError as e:
            if fault is not None:
                name, phrase, per_row = FOLDER_FAULTS[fault]
                assert e.file == str(folder / name) and phrase in str(e), str(e)
                assert (e.line is not None) == per_row, str(e)
            else:
                assert not skip and not all(verdicts)
                assert_row_error(e, folder / "sequences.parquet", verdicts.index(False) + 1)
            return
        assert fault is None and len(ds.quarantine) == len(rows) - sum(verdicts)
        assert ds.sequences.num_rows == sum(verdicts) and ds.sequences.num_rows + len(ds.quarantine) == len(rows)
        assert ds.quarantine.column("line").to_pylist() == [n + 1 for n, ok in enumerate(verdicts) if not ok]
        assert ds.sequences.schema.field("user_id").nullable is False      # the canonical schema again
