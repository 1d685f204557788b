"""Fuzzing the C2DSR and interaction-log importers: every input line ends up imported, quarantined (with its
file and line), or stops the import with a DataError naming the file and the line. Never silently shorter."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from llm_emf.config.data import DataConfig
from llm_emf.data.importers.c2dsr import import_c2dsr, read_split_file
from llm_emf.data.importers.interactions import import_interactions, read_item_table
from llm_emf.data.schema import DataError
from llm_emf.data.tables import SequenceRows
from llm_emf.data.textio import BadRows, parse_int, read_csv_records

from helpers.fuzz import examples

pytestmark = pytest.mark.unit
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
# C2DSR: split files (every line a case, whatever its user id: issue 24) and item lists (all or nothing)

N_ITEMS = (4, 4)                          # |A|, |B|: ids 8 and up are beyond the lists
good_token = st.tuples(st.integers(0, sum(N_ITEMS) - 1), st.integers(0, 50)).map(
    lambda t: f"{t[0]}|{t[1]}|2014-02-23 08:00:00|")
fuzz_token = st.one_of(
    st.tuples(ints, ints, st.sampled_from(["2014-02-23 08:00:00", "", "x"])).map(lambda t: "|".join(t) + "|"),
    st.tuples(ints, ints).map("|".join), junk)
tokens = st.one_of(good_token, good_token, good_token, good_token, fuzz_token)    # mostly valid: cases get made
split_lines = st.one_of(
    st.tuples(st.sampled_from(["1", "2", " 3 "]), st.lists(tokens, max_size=5)).map(
        lambda t: "\t".join([t[0], str(len(t[1])), *t[1]])),
    st.tuples(st.sampled_from(["1", "2", ""]), ints, st.lists(tokens, max_size=5)).map(
        lambda t: "\t".join([t[0], t[1], *t[2]])),
    junk)


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(split_lines, min_size=1, max_size=8), st.sampled_from(["train", "valid", "test"]), st.booleans())
def test_c2dsr_split_file_imports_quarantines_or_names_the_line(lines, split, skip):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_lines(tmp, "testdata_new.txt", lines)
        out, bad = SequenceRows(), BadRows(skip)
        try:
            summary = read_split_file(path, split, N_ITEMS, bad, out)
        except DataError as e:
            if e.line is None:               # a split file that exists must have a line
                assert e.file == str(path) and "an empty file" in str(e) and non_blank(lines) == 0
            else:                            # skipping, only an id beyond the lists stops: it may shift every id
                assert_names_file_and_line(e, path, len(lines))
                assert not skip or f"in [0, {sum(N_ITEMS)})" in str(e), str(e)
            return
        assert len(out) + len(bad) == non_blank(lines)          # nothing silently dropped
        assert summary["cases"] == len(out) == len(set(out.user_ids))
        assert summary["interactions"] == sum(len(i) for i in out.items)
        cases: dict[str, list[list[str]]] = {}
        for user_id, items, stamps in zip(out.user_ids, out.items, out.timestamps):
            assert all(0 <= i < sum(N_ITEMS) for i in items) and stamps == sorted(stamps)
            tag, user, *line = user_id.split(":")
            assert tag == split
            cases.setdefault(user, []).append(line)
        for user, ids in cases.items():      # <split>:<user> for a user on one line, <split>:<user>:<line> on several
            assert ids == [[]] or (len(ids) > 1 and all(len(line) == 1 for line in ids))
        assert summary["users"] == len(cases)
        assert all(r["file"] == str(path) and 1 <= r["line"] <= len(lines) for r in bad.rows)


def test_c2dsr_every_line_of_a_user_is_a_case(tmp_path):
    lines = ["7\t2\t0|100|x|\t1|200|x|",         # target in A
             "7\t2\t0|100|x|\t5|200|x|",         # target in B
             "7\t2\t1|100|x|\t6|200|x|"]         # target in B again: a third case, as C2DSR's loader reads it
    path = write_lines(str(tmp_path), "validdata_new.txt", lines)
    for skip in (False, True):
        out, bad = SequenceRows(), BadRows(skip)
        summary = read_split_file(path, "valid", N_ITEMS, bad, out)
        assert out.user_ids == ["valid:7:1", "valid:7:2", "valid:7:3"] and not bad.rows
        assert (summary["users"], summary["cases"], summary["users_on_several_lines"]) == (1, 3, 1)
    out = SequenceRows()                              # in train too: each line one training sequence
    read_split_file(path, "train", N_ITEMS, BadRows(False), out)
    assert out.user_ids == ["train:7:1", "train:7:2", "train:7:3"]


list_lines = st.one_of(
    st.tuples(ints, st.sampled_from(["L01", "L02", "L03", "", " "]), ints).map("\t".join), junk)
FIXED_LISTS = {"Alist.txt": [f"9\tA{i}\t{i}" for i in range(3)], "Blist.txt": [f"{i}\tB{i}\t{i}" for i in range(2)]}


@st.composite
def item_lists(draw):
    """(file name, lines): a well-formed list (Blist numbered from 0 or from |A| = 3), shuffled, maybe a row
    dropped, with up to two fuzzed lines inserted."""
    name = draw(st.sampled_from(["Alist.txt", "Blist.txt"]))
    start = draw(st.sampled_from([0, 3])) if name == "Blist.txt" else 0
    n = draw(st.integers(1, 5))
    lines = draw(st.permutations([f"{draw(ints)}\tL{k}\t{start + k}" for k in range(n)]))  # orig_idx is not read
    if draw(st.booleans()):
        del lines[draw(st.integers(0, n - 1))]
    for line in draw(st.lists(list_lines, max_size=2)):
        lines.insert(draw(st.integers(0, len(lines))), line)
    return name, lines or [""]


def expected_ids(lines: list[str]) -> list[str]:
    """The item ids of well-formed list lines, in new_idx order."""
    rows = [line.rstrip("\r").split("\t") for line in "\n".join(lines).split("\n") if line.rstrip("\r").strip()]
    return [f[1].strip() for f in sorted(rows, key=lambda f: parse_int(f[2]))]


@settings(max_examples=examples(150), deadline=None)
@given(item_lists(), st.booleans())
def test_c2dsr_item_list_imports_whole_or_names_the_line_even_when_skipping(named_lines, skip):
    # Every list row fixes what an id means: a bad, repeated or missing row (a gap in new_idx) is a DataError
    # even with skip_bad_rows, never a quarantined row that would move later items onto other ids.
    name, lines = named_lines
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pair"
        folder.mkdir()
        for list_name, rows in FIXED_LISTS.items():
            write_lines(str(folder), list_name, rows)
        path = write_lines(str(folder), name, lines)
        write_lines(str(folder), "testdata_new.txt", ["1\t2\t0|100|x|\t0|200|x|"])
        bad = BadRows(skip)
        try:
            ds = import_c2dsr(folder, DataConfig(format="c2dsr", skip_bad_rows=skip), bad)
        except DataError as e:
            if e.line is None:
                assert e.file == str(path) and "an empty file" in str(e) and non_blank(lines) == 0
            else:
                assert_names_file_and_line(e, path, len(lines))
            return
        assert not bad.rows                                      # nothing quarantined, from any file
        n_x = ds.meta.n_items[0]
        ids = ds.items.column("item_id").to_pylist()
        got = ids[:n_x] if name == "Alist.txt" else ids[n_x:]
        assert got == expected_ids(lines) and len(got) == non_blank(lines)   # every row, in new_idx order
        assert ds.meta.extra["blist_new_idx_offset"] in ((0, 3) if name == "Blist.txt" else (0,))


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


class SpanRows(BadRows):
    """Quarantines bad rows, keeping for each the lines it spans (its content holds them all here: the fuzzed
    files are far below the 300 characters a quarantined row keeps)."""

    def __init__(self):
        super().__init__(skip=True)
        self.spans: list[tuple[int, int]] = []

    def report(self, file, line, expected, found, content=""):
        self.spans.append((line, line + content.count("\n")))
        super().report(file, line, expected, found, content)


def quote_open_at_end(text: str) -> bool:
    """Is a quoted field still open at the end of ``text``? CSV quoting as Python's csv module reads it: a quote
    opens a field only at its start, and a doubled quote inside one is a quote."""
    state = "start"
    for ch in text:
        if state == "quoted":
            state = "closed" if ch == '"' else "quoted"
        elif state == "closed" and ch == '"':
            state = "quoted"
        elif ch in ",\r\n":
            state = "start"
        else:
            state = "quoted" if state == "start" and ch == '"' else "field"
    return state == "quoted"


def csv_rows(path: Path) -> int:
    """The data records and quarantined rows of a CSV file whose header is line 1, checking that each non-blank
    line lies in exactly one of them: a record spans lines only through a quoted field that closes."""
    bad, spans = SpanRows(), []
    for record in read_csv_records(path, bad):
        assert not quote_open_at_end(record.text), f"line {record.line}: {record.text!r}"
        spans.append((record.line, record.last_line))
    covered = [n for first, last in spans + bad.spans for n in range(first, last + 1)]
    lines = path.read_bytes().split(b"\n")
    assert len(covered) == len(set(covered)), spans + bad.spans
    # blank as the reader sees it: Unicode whitespace (a line of NBSP is blank), an undecodable line is not
    non_blank = {n for n, line in enumerate(lines, 1) if line.decode("utf-8", "replace").strip()}
    assert non_blank <= set(covered) <= set(range(1, len(lines) + 1))
    return len(spans) - 1 + len(bad.spans)


def items_csv(folder: str) -> Path:
    return write_lines(folder, "items.csv", ["item,domain,title"] + [f"{i},{d},title {i}" for i, d in ITEMS])


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(log_lines, min_size=1, max_size=10), st.booleans())
@example(["u1,i1,Food,5", 'u1,i1,Food,"', "u1,i2,Food,7"], True)   # a quote open at the end: line 4 read again
@example(["u1,i1,Food,5", 'u1,i1,Food,"7', '"'], True)             # a timestamp over two lines: one bad record
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
        assert kept + len(bad) == csv_rows(path)                # every record: an interaction or quarantined
        assert all(r["file"] == str(path) and 2 <= r["line"] <= len(lines) + 1 for r in bad.rows)


item_lines = st.one_of(
    st.tuples(st.sampled_from(["i1", "i2", "i3", ""]), st.sampled_from(["Food", "Kitchen", "Toys", ""]),
              st.text(alphabet=NO_NEWLINES, max_size=8)).map(",".join),
    st.lists(fields, max_size=5).map(",".join),
    junk)


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(item_lines, min_size=1, max_size=8), st.booleans())
@example(['i1,Food,"', "i1,Food,"], False)      # a quote open at the end of the file: the line it opened on
@example(['i1,Food,"', "i1,Food,"], True)
@example(['i1,Food,"', '"'], False)             # a quoted title over two lines that closes: one item
@example(["i1,Food,", "\xa0"], False)           # a line of NBSP is blank to the reader and to the count
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
        assert len(where) + len(bad) == csv_rows(path)          # every record: an item or quarantined


def test_quote_open_at_the_end_of_the_file_names_its_line_or_spoils_one_row(tmp_path):
    # csv.reader returns a quoted field still open at the end of the file as a value: the stray quote on line 2
    # would swallow line 3 into a title. Strict: an error at line 2; skipping: line 2 quarantined, line 3 read.
    path = tmp_path / "items.csv"
    path.write_bytes(b'item,domain,title\ni1,Food,"\ni2,Kitchen,t2\ni3,Food,t3\n')
    with pytest.raises(DataError, match=r'items\.csv, line 2: expected a closing quote \(\"\) for every quoted '
                                        r"field, found a quoted field opened on line 2 still open at the end of "
                                        r"the file \(line 4\)"):
        read_item_table(path, ("Food", "Kitchen"), BadRows(False))
    bad = BadRows(True)
    x, y, where = read_item_table(path, ("Food", "Kitchen"), bad)
    assert (x.item_ids, y.item_ids) == (["i3"], ["i2"])
    assert [(r["line"], r["content"]) for r in bad.rows] == [(2, 'i1,Food,"')]


def test_quote_open_at_the_end_after_a_closed_two_line_field(tmp_path):
    # the record of line 2 holds a closed two-line title, then a field that opens on line 3 and never closes:
    # the bad row is the record (lines 2-3, reported at its first line, as every record), the reason names line 3
    path = tmp_path / "items.csv"
    path.write_bytes(b'item,domain,title\ni1,Food,"two\nlines",extra,"\ni2,Kitchen,t2\n')
    bad = BadRows(True)
    records = list(read_csv_records(path, bad))
    assert [(r.line, r.last_line, r.fields) for r in records] == [(1, 1, ["item", "domain", "title"]),
                                                                  (4, 4, ["i2", "Kitchen", "t2"])]
    assert [r["line"] for r in bad.rows] == [2] and "opened on line 3" in bad.rows[0]["reason"]


def test_stray_carriage_return_in_a_csv_row_is_a_bad_row_not_a_crash(tmp_path):
    # csv.reader raises _csv.Error on "\r" inside an unquoted field; it must be a DataError / quarantined row.
    path = tmp_path / "items.csv"
    path.write_bytes(b"item,domain,title\ni1,Food,ok\ni2,Fo\rod,bad\ni3,Kitchen,ok\n")
    with pytest.raises(DataError, match=r"items\.csv, line 3: expected one CSV row, found unparsable CSV"):
        read_item_table(path, ("Food", "Kitchen"), BadRows(False))
    bad = BadRows(True)
    x, y, _ = read_item_table(path, ("Food", "Kitchen"), bad)
    assert (len(x), len(y), [r["line"] for r in bad.rows]) == (1, 1, [3])
