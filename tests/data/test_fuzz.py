"""Fuzzing the LLMCDSR sequence reader: any line is either imported exactly or rejected naming file and line."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_emf.data.importers.llmcdsr import read_sequence_file
from llm_emf.data.schema import DataError
from llm_emf.data.tables import SequenceRows
from llm_emf.data.textio import BadRows

pytestmark = pytest.mark.unit
N_X, N_TOTAL = 5, 9

tokens = st.one_of(st.integers(-2, 11).map(str), st.sampled_from(["", " ", "x", "1.5", "+3", "٣"]))
lines = st.one_of(
    st.tuples(st.integers(0, 99).map(str), st.lists(tokens, max_size=6)).map(lambda t: f"{t[0]}\t{','.join(t[1])}"),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e"
                                                                                       "\x85\u2028\u2029"),
            max_size=20),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(lines, min_size=1, max_size=6), st.booleans())
def test_any_input_is_imported_or_rejected_with_file_and_line(rows, skip):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train_overlap.txt"
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        out, bad = SequenceRows(), BadRows(skip)
        try:
            read_sequence_file(path, "train", "overlap", None, N_X, N_TOTAL, bad, out)
        except DataError as e:
            assert not skip and e.file == str(path) and 1 <= e.line <= len(rows)
            return
        non_blank = [r for r in rows if r.strip()]
        assert len(out) + len(bad) == len(non_blank)  # every line is accounted for
        for items in out.items:
            assert items and all(0 <= i < N_TOTAL for i in items)
        assert all(1 <= r["line"] <= len(rows) for r in bad.rows)
