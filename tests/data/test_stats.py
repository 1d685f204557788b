"""Statistics on a hand-made dataset whose numbers are worked out by hand below."""

from __future__ import annotations

import pyarrow as pa
import pytest

from llm_emf.data.people import people_counts, person_ids
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
    assert s["people"] == 6 and s["sequences"] == 6 and s["missing_split_files"] == ["traindata_new.txt"]
    train, valid, test = (s["splits"][k] for k in ("train", "valid", "test"))
    assert [train["sequences"], valid["sequences"], test["sequences"]] == [3, 1, 2]
    assert [train["people"], valid["people"], test["people"]] == [3, 1, 2]
    assert train["interactions"] == [4, 2] and valid["interactions"] == [2, 1] and test["interactions"] == [12, 2]
    assert [train["sequences_both_domains"], valid["sequences_both_domains"], test["sequences_both_domains"]] == \
        [1, 1, 0]
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
    assert s["splits"]["valid"] == {"sequences": 0, "people": 0, "interactions": [0, 0], "sequences_both_domains": 0,
                                    "length": None}
    text = format_stats(s)
    assert f"valid  {0:>9} {0:>8} {0:>9} {0:>14} {0:>14} {'-':>22}" in text
    assert "missing split files (0 users): traindata_new.txt" in text


def with_ids(tiny: Dataset, source_format: str, ids: list[str], **extra) -> Dataset:
    tiny.sequences = tiny.sequences.set_column(0, "user_id", pa.array(ids, pa.string()))
    tiny.meta.source_format = source_format
    tiny.meta.extra.update(extra)
    return tiny


def test_people_and_cases_are_counted_apart_from_each_importers_case_ids(tiny):
    """Issue 24: on an Amazon import stats reported every ``user:domain`` case id as a distinct user."""
    # rows: train u1 u2 u3, valid u4 (target X), test u5 (target Y), test u6 (target X)
    ds = with_ids(tiny, "amazon", ["AU1", "AU2", "AU3", "AU1:Food", "AU1:Kitchen", "AU2:Food"],
                  recipe={"settings": {"holdout": "domain"}}, case_id_suffixes=[":Food", ":Kitchen"])
    assert person_ids(ds).to_pylist() == ["AU1", "AU2", "AU3", "AU1", "AU1", "AU2"]
    s = compute_stats(ds)
    assert (s["people"], s["sequences"]) == (3, 6)
    assert [(v["sequences"], v["people"]) for v in s["splits"].values()] == [(3, 3), (1, 1), (2, 2)]
    text = format_stats(dict(s, recipe=None))          # the hand-made recipe has only its settings
    assert "people (distinct users): 3   sequences (training sequences and evaluation cases): 6" in text
    # a suffix is only stripped where it names the case's target domain (a user may be called "x:Food")
    ds = with_ids(tiny, "amazon", ["AU1", "AU2", "AU3", "AU1:Kitchen", "AU1:Kitchen", "AU2:Kitchen"])
    assert person_ids(ds).to_pylist() == ["AU1", "AU2", "AU3", "AU1:Kitchen", "AU1", "AU2:Kitchen"]
    ds.meta.extra["recipe"]["settings"]["holdout"] = "merged"
    assert compute_stats(ds)["people"] == 5


def test_c2dsr_people_are_the_user_column_in_every_split(tiny):
    ds = with_ids(tiny, "c2dsr", ["train:7:1", "train:7:2", "train:8", "valid:7", "test:7:A", "test:9:12"])
    assert person_ids(ds).to_pylist() == ["7", "7", "8", "7", "7", "9"]
    assert people_counts(ds) == {"sequences": {"train": 3, "valid": 1, "test": 2},
                                 "people": {"train": 2, "valid": 1, "test": 2, "all": 3}}
