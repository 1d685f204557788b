"""Fuzzing the C2DSR and interaction-log importers: every input line ends up imported, quarantined (with its
file and line), or stops the import with a DataError naming the file and the line. Never silently shorter."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_emf.config.data import DataConfig
from llm_emf.data.importers.c2dsr import read_item_list, read_split_file
from llm_emf.data.importers.interactions import import_interactions, read_item_table
from llm_emf.data.schema import DataError
from llm_emf.data.tables import SequenceRows
from llm_emf.data.textio import BadRows

pytestmark = pytest.mark.unit
N_TOTAL = 8
NO_NEWLINES = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n")  # \r, \x0b, NUL are fair game
junk = st.text(alphabet=NO_NEWLINES, max_size=20)
ints = st.one_of(st.integers(-2, 11).map(str), st.sampled_from(["", " ", "x", "1.5", "+3", "٣", "1e3", "-0"]))


def write_lines(folder: str, name: str, lines: list[str]) -> Path:
    path = Path(folder) / name
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))
    return path


def non_blank(lines: list[str]) -> int:
    # read_lines splits on b"\n" only and skips lines that are whitespace after stripping "\r\n".
    return sum(1 for line in "\n".join(lines).split("\n") if line.rstrip("\r\n").strip())


def assert_names_file_and_line(e: DataError, path: Path, n_lines: int) -> None:
    assert e.file == str(path) and e.line is not None and 1 <= e.line <= n_lines, str(e)
    assert str(path) in str(e) and f"line {e.line}" in str(e)


# ---------------------------------------------------------------------------------------------------------
# C2DSR

tokens = st.one_of(
    st.tuples(ints, ints, st.sampled_from(["2014-02-23 08:00:00", "", "x"])).map(lambda t: "|".join(t) + "|"),
    st.tuples(ints, ints).map("|".join), junk)
split_lines = st.one_of(
    st.tuples(st.integers(0, 30).map(str), ints, st.lists(tokens, max_size=5)).map(
        lambda t: "\t".join([t[0], t[1], *t[2]])),
    junk)


@settings(max_examples=150, deadline=None)
@given(st.lists(split_lines, min_size=1, max_size=8), st.sampled_from(["train", "valid", "test"]), st.booleans())
def test_c2dsr_split_file_imports_quarantines_or_names_the_line(lines, split, skip):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_lines(tmp, "testdata_new.txt", lines)
        out, bad = SequenceRows(), BadRows(skip)
        try:
            summary = read_split_file(path, split, N_TOTAL, bad, out)
        except DataError as e:
            assert not skip
            assert_names_file_and_line(e, path, len(lines))
            return
        assert len(out) + len(bad) == non_blank(lines)          # nothing silently dropped
        assert summary["users"] == len(out)
        assert summary["interactions"] == sum(len(i) for i in out.items)
        for items, stamps in zip(out.items, out.timestamps):
            assert all(0 <= i < N_TOTAL for i in items) and stamps == sorted(stamps)
        assert all(r["file"] == str(path) and 1 <= r["line"] <= len(lines) for r in bad.rows)


list_lines = st.one_of(
    st.tuples(ints, st.sampled_from(["B01", "B02", "B03", "", " "]), ints).map("\t".join), junk)


@settings(max_examples=150, deadline=None)
@given(st.lists(list_lines, min_size=1, max_size=8), st.booleans())
def test_c2dsr_item_list_imports_quarantines_or_names_the_line(lines, skip):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_lines(tmp, "Alist.txt", lines)
        bad = BadRows(skip)
        try:
            rows, n_missing = read_item_list(path, set(), bad)
        except DataError as e:
            if e.line is None:               # whole-file conditions: no item at all, or gaps in new_idx
                assert e.file == str(path) and ("at least one item" in str(e) or "dense new_idx" in str(e))
                assert "at least one item" in str(e) or not skip
            else:
                assert not skip
                assert_names_file_and_line(e, path, len(lines))
            return
        line_rows = [r for r in bad.rows if r["line"]]
        gap_rows = [r for r in bad.rows if not r["line"]]    # one file-level row for index gaps
        assert len(rows) - n_missing + len(line_rows) == non_blank(lines)
        assert len(gap_rows) == (1 if n_missing else 0)


# ---------------------------------------------------------------------------------------------------------
# Interaction log (CSV)

ITEMS = [("i1", "Food"), ("i2", "Food"), ("i3", "Kitchen"), ("i4", "Kitchen")]
fields = st.one_of(st.sampled_from(["u1", "u2", "i1", "i3", "i9", "Food", "Kitchen", "Toys", "", "100", "7"]),
                   ints, st.text(alphabet=NO_NEWLINES, max_size=6))
log_lines = st.one_of(
    st.tuples(st.sampled_from(["u1", "u2", "u3", ""]), st.sampled_from(["i1", "i2", "i3", "i4", "i9", ""]),
              st.sampled_from(["Food", "Kitchen", "Toys"]), ints).map(",".join),
    st.lists(fields, max_size=6).map(",".join),
    st.lists(fields, min_size=4, max_size=4).map(lambda f: ",".join(f'"{x}"' for x in f)),
    junk)


def items_csv(folder: str) -> Path:
    return write_lines(folder, "items.csv", ["item,domain,title"] + [f"{i},{d},title {i}" for i, d in ITEMS])


@settings(max_examples=200, deadline=None)
@given(st.lists(log_lines, min_size=1, max_size=10), st.booleans())
def test_interaction_log_imports_quarantines_or_names_the_line(lines, skip):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_lines(tmp, "log.csv", ["user,item,domain,timestamp"] + lines)
        cfg = DataConfig(format="interactions", source=str(path), items=str(items_csv(tmp)), min_interactions=1)
        bad = BadRows(skip)
        try:
            ds = import_interactions(path, cfg, bad)
        except DataError as e:
            if e.line is None:               # no usable user at all: a file-level error, still naming the file
                assert e.file == str(path) and "at least one user" in str(e)
            else:
                assert not skip
                assert_names_file_and_line(e, path, len(lines) + 1)
                assert e.line >= 2           # the header is line 1 and is well formed here
            return
        kept = sum(len(items) for items in ds.split("test").column("items").to_pylist())  # test = whole sequence
        assert kept + len(bad) == non_blank(lines)              # every data line: an interaction or quarantined
        assert all(r["file"] == str(path) and 2 <= r["line"] <= len(lines) + 1 for r in bad.rows)


item_lines = st.one_of(
    st.tuples(st.sampled_from(["i1", "i2", "i3", ""]), st.sampled_from(["Food", "Kitchen", "Toys", ""]),
              st.text(alphabet=NO_NEWLINES, max_size=8)).map(",".join),
    st.lists(fields, max_size=5).map(",".join),
    junk)


@settings(max_examples=150, deadline=None)
@given(st.lists(item_lines, min_size=1, max_size=8), st.booleans())
def test_item_table_imports_quarantines_or_names_the_line(lines, skip):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_lines(tmp, "items.csv", ["item,domain,title"] + lines)
        bad = BadRows(skip)
        try:
            x, y, where = read_item_table(path, ("Food", "Kitchen"), bad)
        except DataError as e:
            if e.line is None:
                assert e.file == str(path) and "at least one item" in str(e)
            else:
                assert not skip
                assert_names_file_and_line(e, path, len(lines) + 1)
            return
        assert len(x) + len(y) == len(where)
        assert len(where) + len(bad) == non_blank(lines)


def test_stray_carriage_return_in_a_csv_row_is_a_bad_row_not_a_crash(tmp_path):
    # csv.reader raises _csv.Error on "\r" inside an unquoted field; it must be a DataError / quarantined row.
    path = tmp_path / "items.csv"
    path.write_bytes(b"item,domain,title\ni1,Food,ok\ni2,Fo\rod,bad\ni3,Kitchen,ok\n")
    with pytest.raises(DataError, match=r"items\.csv, line 3: expected one CSV row, found unparsable CSV"):
        read_item_table(path, ("Food", "Kitchen"), BadRows(False))
    bad = BadRows(True)
    x, y, _ = read_item_table(path, ("Food", "Kitchen"), bad)
    assert (len(x), len(y), [r["line"] for r in bad.rows]) == (1, 1, [3])
