"""Sequence validation reads the table in chunks; chunk boundaries must not change a row."""

import pyarrow as pa
import pytest

from llm_emf.data.validate import _rows

pytestmark = pytest.mark.unit


def test_rows_in_chunks_are_the_rows_of_the_table():
    table = pa.Table.from_batches([
        pa.record_batch({"user_id": ["a", "b", "c"], "items": [[1], [2, 3], [4]]}),
        pa.record_batch({"user_id": ["d", "e"], "items": [[5, 6], []]})])
    expected = list(zip(table.column("user_id").to_pylist(), table.column("items").to_pylist()))
    for chunk in (1, 2, 3, 10):
        assert list(_rows(table, ("user_id", "items"), chunk)) == expected
