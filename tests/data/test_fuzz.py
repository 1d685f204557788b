"""Fuzzing the readers: any input is imported exactly, quarantined with its file and line, or rejected naming
the file and line. Covers the LLMCDSR sequence reader, the C2DSR dialects (a user on several lines, a Blist
offset by |A|, timestamps in mixed units) and CSV as csv.writer writes it (quotes, newlines, BOM, line endings)."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_emf.config.data import DataConfig
from llm_emf.data.importers.c2dsr import import_c2dsr, read_split_file
from llm_emf.data.importers.interactions import LOG_COLUMNS, read_rows
from llm_emf.data.importers.llmcdsr import read_sequence_file
from llm_emf.data.schema import DataError
from llm_emf.data.tables import SequenceRows
from llm_emf.data.textio import BadRows

from helpers.fuzz import examples

pytestmark = pytest.mark.unit
N_X, N_TOTAL = 5, 9

tokens = st.one_of(st.integers(-2, 11).map(str), st.sampled_from(["", " ", "x", "1.5", "+3", "٣"]))
lines = st.one_of(
    st.tuples(st.integers(0, 99).map(str), st.lists(tokens, max_size=6)).map(lambda t: f"{t[0]}\t{','.join(t[1])}"),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e"
                                                                                       "\x85\u2028\u2029"),
            max_size=20),
)


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(lines, min_size=1, max_size=6), st.booleans())
def test_any_input_is_imported_or_rejected_with_file_and_line(rows, skip):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train_overlap.txt"
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        out, bad = SequenceRows(), BadRows(skip)
        non_blank = [r for r in rows if r.strip()]
        try:
            read_sequence_file(path, "train", "overlap", None, N_X, N_TOTAL, bad, out)
        except DataError as e:
            if e.line is None:       # a required file without a single line
                assert e.file == str(path) and "an empty file" in str(e) and not non_blank
            else:
                assert not skip and e.file == str(path) and 1 <= e.line <= len(rows)
            return
        assert len(out) + len(bad) == len(non_blank)  # every line is accounted for
        for items in out.items:
            assert items and all(0 <= i < N_TOTAL for i in items)
        assert all(1 <= r["line"] <= len(rows) for r in bad.rows)



@pytest.mark.parametrize("reader", ["llmcdsr", "c2dsr"])
def test_a_file_whose_only_line_is_quarantined_is_not_called_empty(tmp_path, reader):
    """Found by the fuzzer above: a lone NUL line, skipped as a bad row, left the file looking empty."""
    path = tmp_path / "train_overlap.txt"
    path.write_text("\x00\n", encoding="utf-8")
    bad = BadRows(True)
    if reader == "llmcdsr":
        read_sequence_file(path, "train", "overlap", None, N_X, N_TOTAL, bad, SequenceRows())
    else:
        read_split_file(path, "train", (C2_X, C2_Y), bad, SequenceRows())
    assert [r["line"] for r in bad.rows] == [1]
    path.write_text("\n \n", encoding="utf-8")                      # blank lines only: empty
    with pytest.raises(DataError, match="an empty file"):
        read_sequence_file(path, "train", "overlap", None, N_X, N_TOTAL, BadRows(True), SequenceRows())

# --- C2DSR split files: a user on several lines, mixed units ------------------------------------------------------

C2_X, C2_Y = 4, 4
SECONDS, MILLIS = st.integers(10 ** 9, 2 * 10 ** 9), st.integers(10 ** 12, 2 * 10 ** 12)
c2_tokens = st.one_of(
    st.tuples(st.integers(0, C2_X + C2_Y - 1), st.one_of(SECONDS, SECONDS, SECONDS, MILLIS)).map(
        lambda t: f"{t[0]}|{t[1]}|2014-02-23 08:00:00|"),
    st.sampled_from(["3|-5|x|", "-1|1400000000|x|", "8|1400000000|x|", "x|y|", "7"]))   # 8: beyond the lists
c2_lines = st.one_of(
    st.tuples(st.sampled_from(["1", "2", "3"]), st.lists(c2_tokens, min_size=1, max_size=4)).map(
        lambda t: "\t".join([t[0], str(len(t[1])), *t[1]])),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=12))


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(c2_lines, min_size=1, max_size=8), st.sampled_from(["train", "valid", "test"]), st.booleans())
def test_c2dsr_split_file_dialects_import_quarantine_or_name_the_line(rows, split, skip):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "validdata_new.txt"
        path.write_bytes(("\n".join(rows) + "\n").encode("utf-8", "surrogatepass"))
        out, bad = SequenceRows(), BadRows(skip)
        non_blank = [r for r in "\n".join(rows).split("\n") if r.rstrip("\r").strip()]
        try:
            summary = read_split_file(path, split, (C2_X, C2_Y), bad, out)
        except DataError as e:
            assert e.file == str(path)
            if e.line is None:
                assert "an empty file" in str(e) and not non_blank
            else:        # only an id beyond the item lists stops a skipping import: it may shift every id
                assert 1 <= e.line <= len(rows) and (not skip or "found item 8" in str(e))
            return
        assert len(out) + len(bad) == len(non_blank) == summary["lines"]    # every line: a case or quarantined
        assert len(set(out.user_ids)) == len(out) == summary["cases"]
        users: dict[str, list[list[str]]] = {}
        for user_id, items, stamps in zip(out.user_ids, out.items, out.timestamps):
            assert stamps == sorted(stamps) and all(0 <= ts < 10 ** 11 for ts in stamps)   # one unit, seconds
            assert all(0 <= i < C2_X + C2_Y for i in items)
            tag, user, *line = user_id.split(":")
            assert tag == split and len(line) <= 1
            users.setdefault(user, []).append(line)
        for user, lines in users.items():   # every line of a user is a case: <split>:<user>, or :<line> when several
            assert lines == [[]] or (len(lines) > 1 and all(
                line and rows[int(line[0]) - 1].split("\t")[0].strip() == user for line in lines))
        assert summary["users"] == len(users)
        assert summary["users_on_several_lines"] == sum(len(lines) > 1 for lines in users.values())


# --- C2DSR item lists: a Blist offset by |A| reads like the local one; any broken row stops ----------------------

@st.composite
def c2dsr_folders(draw):
    n_x, n_y = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stamp = st.integers(10 ** 9, 2 * 10 ** 9)
    line = st.lists(st.tuples(st.integers(0, n_x + n_y - 1), stamp), min_size=2, max_size=5)
    users = draw(st.lists(line, min_size=1, max_size=4))
    order = draw(st.permutations(range(n_y)))      # file order of Blist rows does not matter
    damage = draw(st.sampled_from([None, "drop", "duplicate"]))
    return n_x, n_y, users, order, damage, draw(st.integers(0, n_x + n_y - 1))


def write_c2dsr(folder: Path, n_x: int, n_y: int, users, order, offset: int, damage=None, at=0) -> None:
    folder.mkdir()
    lists = ([f"{9 - i}\tA{i}\t{i}" for i in range(n_x)], [f"{i}\tB{i}\t{i + offset}" for i in order])
    rows, k = (lists[0], at) if at < n_x else (lists[1], at - n_x)
    if damage == "drop":
        del rows[k]
    elif damage == "duplicate":                   # another item claiming the same new_idx
        rows.insert(k, rows[k].replace("\tA", "\tAA").replace("\tB", "\tBB"))
    for name, rows in zip(("Alist.txt", "Blist.txt"), lists):
        (folder / name).write_text("".join(r + "\n" for r in rows))
    (folder / "testdata_new.txt").write_text("".join(
        f"{u}\t{len(events)}\t" + "\t".join(f"{i}|{ts}|x|" for i, ts in events) + "\n"
        for u, events in enumerate(users)))


@settings(max_examples=examples(100), deadline=None)
@given(c2dsr_folders(), st.booleans())
def test_c2dsr_blist_offset_or_local_reads_the_same_and_a_broken_list_stops(folder_spec, skip):
    n_x, n_y, users, order, damage, at = folder_spec
    cfg = DataConfig(format="c2dsr", skip_bad_rows=skip)
    with tempfile.TemporaryDirectory() as tmp:
        local, offset = Path(tmp) / "local", Path(tmp) / "offset"
        write_c2dsr(local, n_x, n_y, users, order, 0)
        write_c2dsr(offset, n_x, n_y, users, order, n_x, damage, at)
        expected = import_c2dsr(local, cfg, BadRows(skip))
        assert expected.items.column("item_id").to_pylist() == [f"A{i}" for i in range(n_x)] + \
            [f"B{i}" for i in range(n_y)]
        try:
            ds = import_c2dsr(offset, cfg, BadRows(skip))
        except DataError as e:        # a dropped or repeated row: always fatal, naming a file and a line
            assert damage is not None and (e.line is not None or "an empty file" in str(e)), str(e)
            return
        # Only Blist's highest new_idx can go missing unnoticed, and only while no line uses the last id (with
        # an offset Blist, Alist's last row cannot: Blist would no longer start at |A|).
        dropped_last = damage == "drop" and at >= n_x and order[at - n_x] == n_y - 1
        assert damage is None or (dropped_last and max(i for u in users for i, _ in u) < n_x + n_y - 1)
        if damage is None:
            assert ds.items.equals(expected.items) and ds.sequences.equals(expected.sequences)


# --- CSV: whatever csv.writer writes is read back field for field -------------------------------------------------

csv_values = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                     min_size=1, max_size=6).map(str.strip).filter(bool)
csv_rows = st.lists(st.tuples(*[st.one_of(csv_values, st.sampled_from(['a,b', 'say "hi"', "two\nlines", "cr\rlf"]))
                                for _ in LOG_COLUMNS]), min_size=1, max_size=6)


@settings(max_examples=examples(150), deadline=None)
@given(csv_rows, st.sampled_from(["\n", "\r\n", "\r"]), st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
       st.booleans())
def test_csv_written_by_csv_writer_is_read_back_exactly(rows, ending, quoting, bom):
    if ending == "\r":             # old-Mac files: no line breaks inside fields
        rows = [tuple(v.replace("\n", " ").replace("\r", " ") for v in row) for row in rows]
    elif ending == "\n" and quoting == csv.QUOTE_MINIMAL:   # the writer leaves a lone \r unquoted: a stray CR,
        rows = [tuple(v.replace("\r", " ") for v in row) for row in rows]   # which is a bad row by design
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=ending, quoting=quoting).writerows([LOG_COLUMNS, *rows])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.csv"
        path.write_bytes(("\ufeff" if bom else "").encode() + buffer.getvalue().encode("utf-8"))
        bad = BadRows(skip=True)
        read = list(read_rows(path, LOG_COLUMNS, bad))
    with_nul = [row for row in rows if any("\0" in v for v in row)]
    assert [tuple(r[c] for c in LOG_COLUMNS) for _, r, _ in read] == [row for row in rows if row not in with_nul]
    assert len(bad) == len(with_nul) and all("NUL" in r["reason"] for r in bad.rows)
    starts = [2 + k + sum(v.count("\n") for row in rows[:k] for v in row) for k in range(len(rows))]
    assert [line for line, _, _ in read] == [n for n, row in zip(starts, rows) if row not in with_nul]
