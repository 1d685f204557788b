"""Statistics on a hand-made dataset whose numbers are worked out by hand below."""

from __future__ import annotations

import pytest

from llm_emf.data.schema import Dataset, DatasetMeta
from llm_emf.data.stats import compute_stats, format_stats
from llm_emf.data.tables import ItemRows, SequenceRows, items_table

pytestmark = pytest.mark.unit


@pytest.fixture
def tiny() -> Dataset:
    x, y = ItemRows(), ItemRows()
    for i in range(3):
        x.add(f"x{i}", f"food {i}" if i else None)  # x0 has no title
    for i in range(2):
        y.add(f"y{i}", f"kitchen {i}")
    seqs = SequenceRows()
    seqs.add("u1", "train", [0, 1, 3])        # both domains
    seqs.add("u2", "train", [4])
    seqs.add("u3", "train", [0, 2])
    seqs.add("u4", "valid", [0, 3, 1])        # target 1: X
    seqs.add("u5", "test", [3, 4])            # target 4: Y
    seqs.add("u6", "test", [0, 1, 2] * 4)     # 12 X items, target 2: X
    meta = DatasetMeta(name="tiny", domains=("Food", "Kitchen"), n_items=(3, 2), source_format="interactions",
                       extra={"missing_split_files": ["traindata_new.txt"]})
    return Dataset(items_table(x, y), seqs.table(), meta)


def test_stats_by_hand(tiny):
    s = compute_stats(tiny)
    assert s["items"] == [3, 2] and s["items_with_title"] == [2, 2] and s["items_with_image"] == [0, 0]
    assert s["distinct_users"] == 6 and s["missing_split_files"] == ["traindata_new.txt"]
    train, valid, test = (s["splits"][k] for k in ("train", "valid", "test"))
    assert [train["users"], valid["users"], test["users"]] == [3, 1, 2]
    assert train["interactions"] == [4, 2] and valid["interactions"] == [2, 1] and test["interactions"] == [12, 2]
    assert [train["users_both_domains"], valid["users_both_domains"], test["users_both_domains"]] == [1, 1, 0]
    assert valid["targets"] == [1, 0] and test["targets"] == [1, 1] and "targets" not in train
    # train lengths 3, 1, 2: median 2, p90 = 2 + 0.8 * (3 - 2) (linear interpolation)
    assert {k: train["length"][k] for k in ("min", "median", "max")} == {"min": 1, "median": 2.0, "max": 3}
    assert train["length"]["p90"] == pytest.approx(2.8)
    assert train["length"]["histogram"] == {"1": 1, "2-4": 2, "5-9": 0, "10-19": 0, "20-49": 0, "50-99": 0,
                                            "100-199": 0, "200+": 0}
    # test lengths 2, 12: median 7, p90 = 2 + 0.9 * 10
    assert test["length"]["median"] == 7.0 and test["length"]["p90"] == pytest.approx(11.0)
    assert test["length"]["histogram"]["10-19"] == 1 and "users_by_source" not in train


def test_empty_split_prints_zero(tiny):
    tiny.sequences = tiny.sequences.filter(tiny.sequences.column("split").to_numpy(zero_copy_only=False) != "valid")
    s = compute_stats(tiny)
    assert s["splits"]["valid"] == {"users": 0, "interactions": [0, 0], "users_both_domains": 0, "length": None}
    text = format_stats(s)
    assert "valid         0         0              0              0                      -" in text
    assert "missing split files (0 users): traindata_new.txt" in text
