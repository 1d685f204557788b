"""Each importer on small real slices: the bundled LLMCDSR sample and the tiny C2DSR / ABXI cuts in tests/fixtures."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pyarrow.compute as pc
import pytest

from llm_emf.config import load_config
from llm_emf.data.importers import import_dataset
from llm_emf.data.schema import Dataset

pytestmark = pytest.mark.unit
# As tests/conftest.py has it; not imported from there, since `conftest` names tests/training's when a run lists
# that folder (pytest tests/data tests/training/...).
SHARED_DATA = Path(os.environ.get("LLM_EMF_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def data_cfg(*overrides: str):
    return load_config(None, list(overrides)).data


def test_llmcdsr_sample_matches_its_files(sample_dir):
    ds = import_dataset(data_cfg("data.format=llmcdsr", "data.source=sample"))
    num = gzip.open(sample_dir / "num.txt.gz", "rt").read().split()
    assert ds.meta.n_items == (int(num[0]), int(num[1])) == (175, 325)
    assert ds.items.column("domain").to_pylist() == [0] * 175 + [1] * 325
    assert ds.items.column("title").null_count == 0
    # first line of each sequence file, read independently of the importer
    for stem, tag, split in (("train_A", "A", "train"), ("train_overlap", "overlap", "train"),
                             ("test", "test", "test")):
        user, items = gzip.open(sample_dir / f"{stem}.txt.gz", "rt").readline().rstrip("\n").split("\t")
        row = ds.sequences.filter(pc.equal(ds.sequences.column("user_id"), f"{tag}:{user}")).to_pylist()
        assert len(row) == 1 and row[0]["split"] == split
        assert row[0]["items"] == [int(i) for i in items.split(",")] and row[0]["timestamps"] is None
    # item table: item_idx 0 of B is item_index 175
    _, asin, title = gzip.open(sample_dir / "items_B.tsv.gz", "rt").readlines()[1].rstrip("\n").split("\t", 2)
    assert ds.items.slice(175, 1).to_pylist()[0] == {"item_index": 175, "item_id": asin, "domain": 1,
                                                     "title": title, "image_uri": None, "attributes": None}
    assert ds.meta.extra["source_files"]["train_A"] == {"file": "train_A.txt.gz", "users": 49, "interactions": 313}


def test_llmcdsr_accepts_plain_and_gzip_files_alike(plain_sample):
    plain = import_dataset(data_cfg("data.source=" + str(plain_sample)))
    gz = import_dataset(data_cfg("data.source=sample"))
    assert plain.sequences.equals(gz.sequences) and plain.items.equals(gz.items)


def test_c2dsr_mini_sorts_by_timestamp_and_offsets_b(fixtures_dir):
    ds = import_dataset(data_cfg("data.format=c2dsr", f"data.source={fixtures_dir / 'c2dsr_fk_mini'}"))
    assert ds.meta.n_items == (69, 72)
    assert ds.meta.extra["missing_split_files"] == ["traindata_new.txt"]
    assert ds.split("train").num_rows == 0 and ds.split("valid").num_rows == 6 and ds.split("test").num_rows == 6
    first = ds.split("valid").to_pylist()[0]
    assert first["user_id"] == "valid:7"
    # the file has 75|1395705600 before 2|1394064000: a stable sort by timestamp swaps them
    line = (fixtures_dir / "c2dsr_fk_mini/validdata_new.txt").read_text().splitlines()[0]
    pairs = [(int(t.split("|")[0]), int(t.split("|")[1])) for t in line.split("\t")[2:] if t]
    expected = sorted(pairs, key=lambda p: p[1])
    assert first["items"] == [p[0] for p in expected] and first["timestamps"] == [p[1] for p in expected]
    assert first["items"][8:10] == [2, 75] and pairs[8:10] == [(75, 1395705600), (2, 1394064000)]
    # item new_idx 0 of Blist is item_index 69
    asin = (fixtures_dir / "c2dsr_fk_mini/Blist.txt").read_text().splitlines()[0].split("\t")[1]
    assert ds.items.column("item_id")[69].as_py() == asin


def test_interactions_leave_one_out_by_time(fixtures_dir):
    folder = fixtures_dir / "interactions_afk_mini"
    ds = import_dataset(data_cfg("data.format=interactions", f"data.source={folder / 'interactions.csv'}",
                                 f"data.items={folder / 'items.csv'}"))
    rows = [line.split(",") for line in (folder / "interactions.csv").read_text().splitlines()[1:]]
    u0 = [r for r in rows if r[0] == "u0"]
    item_index = {i: k for k, i in enumerate(ds.items.column("item_id").to_pylist())}
    expected = [item_index[r[1]] for r in sorted(u0, key=lambda r: int(r[3]))]
    by_split = {r["split"]: r for r in ds.sequences.to_pylist() if r["user_id"] == "u0"}
    assert by_split["test"]["items"] == expected
    assert by_split["valid"]["items"] == expected[:-1] and by_split["train"]["items"] == expected[:-2]
    assert by_split["test"]["timestamps"] == sorted(int(r[3]) for r in u0)
    assert ds.split("test").num_rows == 8 and ds.meta.extra["short_users"]["count"] == 0
    assert ds.meta.domains == ("Food", "Kitchen")          # the item table's domain values, Food listed first
    foods = sum(1 for line in (folder / "items.csv").read_text().splitlines()[1:] if line.split(",")[1] == "Food")
    assert ds.n_x == foods and (ds.item_domains()[:foods] == 0).all()


def test_interactions_short_users_counted_and_equal_times_keep_file_order(tmp_path):
    (tmp_path / "items.csv").write_text("item,domain,title\na,Food,Apple\nb,Food,\nk,Kitchen,Knife\n")
    (tmp_path / "log.csv").write_text("user,item,domain,timestamp\n"
                                      "u1,k,Kitchen,5\nu1,a,Food,5\nu1,b,Food,1\nu2,a,Food,3\nu2,k,Kitchen,4\n")
    ds = import_dataset(data_cfg("data.format=interactions", f"data.source={tmp_path / 'log.csv'}",
                                 f"data.items={tmp_path / 'items.csv'}"))
    assert ds.meta.extra["short_users"] == {"count": 1, "min_interactions": 3, "first": ["u2"]}
    assert ds.split("test").to_pylist() == [{"user_id": "u1", "split": "test", "items": [1, 2, 0],
                                             "timestamps": [1, 5, 5]}]
    assert ds.items.column("title").to_pylist() == ["Apple", None, "Knife"]


def test_canonical_round_trip_keeps_fingerprint(tmp_path):
    ds = import_dataset(data_cfg("data.source=sample"))
    ds.write(tmp_path / "ds")
    again = import_dataset(data_cfg("data.format=canonical", f"data.source={tmp_path / 'ds'}"))
    again.write(tmp_path / "ds2")
    assert again.meta.fingerprint == ds.meta.fingerprint
    assert Dataset.read(tmp_path / "ds2").sequences.equals(ds.sequences)


full = pytest.mark.skipif(not (SHARED_DATA / "llmcdsr_food_kitchen").is_dir(), reason="shared data not mounted")


@full
def test_full_llmcdsr_counts_match_source_md():
    ds = import_dataset(data_cfg(f"data.source={SHARED_DATA / 'llmcdsr_food_kitchen'}"))
    assert ds.meta.n_items == (8661, 27637)
    assert ds.meta.domains == ("Food", "Kitchen")          # named by the folder: the config sets no pair
    assert ds.meta.extra["domain_names"] == "folder name 'llmcdsr_food_kitchen'"
    files = ds.meta.extra["source_files"]
    assert [files[s]["users"] for s in ("train_A", "train_B", "train_overlap", "valid", "test")] == \
        [5472, 38191, 7501, 960, 937]
    assert [files[s]["interactions"] for s in ("train_A", "train_B", "train_overlap")] == [37281, 265817, 99170]


@full
def test_full_c2dsr_valid_test_counts_match_source_md():
    ds = import_dataset(data_cfg("data.format=c2dsr",
                                 f"data.source={SHARED_DATA / 'c2dsr_official_partial/Food-Kitchen'}"))
    assert ds.meta.n_items == (29207, 34886)
    assert ds.meta.domains == ("Food", "Kitchen")
    for split, users, tokens, targets in (("valid", 8173, 80447, (2722, 5451)), ("test", 8406, 82787, (2747, 5659))):
        table = ds.split(split)
        assert table.num_rows == users
        assert pc.sum(pc.list_value_length(table.column("items"))).as_py() == tokens
        last = [items[-1] for items in table.column("items").to_pylist()]
        assert (sum(i < 29207 for i in last), sum(i >= 29207 for i in last)) == targets


def test_interactions_parquet_equals_csv(tmp_path, fixtures_dir):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    folder = fixtures_dir / "interactions_afk_mini"
    log = pacsv.read_csv(folder / "interactions.csv", convert_options=pacsv.ConvertOptions(
        column_types={"user": pa.string(), "timestamp": pa.int64()}))
    # a real timestamp column must come out as the same unix seconds
    log = log.set_column(3, "timestamp", log.column("timestamp").cast(pa.timestamp("s")))
    pq.write_table(log, tmp_path / "log.parquet")
    pq.write_table(pacsv.read_csv(folder / "items.csv"), tmp_path / "items.parquet")
    from_parquet = import_dataset(data_cfg("data.format=interactions", f"data.source={tmp_path / 'log.parquet'}",
                                           f"data.items={tmp_path / 'items.parquet'}"))
    from_csv = import_dataset(data_cfg("data.format=interactions", f"data.source={folder / 'interactions.csv'}",
                                       f"data.items={folder / 'items.csv'}"))
    assert from_parquet.sequences.equals(from_csv.sequences)
    assert from_parquet.items.column("item_id").equals(from_csv.items.column("item_id"))


@full
@pytest.mark.integration          # reads the whole shared Food-Kitchen dataset: ~10-20 s on 2 cores
def test_bundled_sample_is_reproducible(tmp_path, sample_dir):
    from llm_emf.data.make_sample import make_sample

    result = make_sample(SHARED_DATA / "llmcdsr_food_kitchen", tmp_path, seed=0)
    assert result["items"] == (175, 325)
    for path in sorted(sample_dir.glob("*.gz")):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name
