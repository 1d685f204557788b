"""data.format=amazon on the hand-made fixtures (tests/fixtures/amazon_*_mini/SOURCE.md lists every review).

Item indices after the recipe (X in order of first appearance in Food's file, then Y): f1=0 f2=1 f5=2 k1=3
k2=4 k3=5. Times below are seconds after T = 1600000000.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest

from llm_emf.cli.main import main
from llm_emf.config import ConfigError, load_config
from llm_emf.data.importers import import_dataset
from llm_emf.data.importers.amazon import Codes
from llm_emf.data.schema import DataError, Dataset
from llm_emf.data.stats import compute_stats

pytestmark = pytest.mark.unit
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
T = 1_600_000_000


def load(schema: str = "2023", *overrides: str, source: Path | None = None):
    cfg = load_config(None, ["data.format=amazon", f"data.source={source or FIXTURES / f'amazon_{schema}_mini'}",
                             "data.amazon.k_core=2", *overrides]).data
    return import_dataset(cfg)


def rows(ds) -> list[tuple]:
    return [(r["user_id"], r["split"], r["items"], [t - T for t in r["timestamps"]]) for r in ds.sequences.to_pylist()]


def left(interactions: int, users: int, items: int) -> dict:
    return {"interactions": interactions, "users": users, "items": items}


@pytest.mark.parametrize("schema", ["2023", "2018"])
def test_every_step_counts_and_the_per_domain_holdout(schema):
    ds = load(schema)
    assert ds.meta.domains == ("Food", "Kitchen") and ds.meta.n_items == (3, 3)
    assert ds.items.column("item_id").to_pylist() == ["f1", "f2", "f5", "k1", "k2", "k3"]
    r = ds.meta.extra["recipe"]
    # read: Food 13 rows, users u1-u5, items f1-f5; Kitchen 10 rows, users u1 u2 u4 u6 u7, items k1 k2 k3 k9
    assert r["read"] == [left(13, 5, 5), left(10, 5, 4)]
    # Food 2-core: round 1 drops f4 (1 row), round 2 u3 (left with f3 only), round 3 u1's f3 (f3 left with one
    # user); then u1 {f1 f2 f5}, u2 {f1 f2 f5}, u4 {f1 f2}, u5 {f1 f2}. Kitchen: round 1 drops u7's k9.
    assert r["k_core"] == [dict(left(10, 4, 3), rounds=3), dict(left(9, 4, 3), rounds=1)]
    # u5 (Food only) and u6 (Kitchen only) leave
    assert r["users_in_both_domains"] == 3
    assert r["overlap"] == [left(8, 3, 3), left(7, 3, 3)]
    assert "min_per_domain" not in r
    assert r["split"] == {"users": 3, "train_sequences": 2, "valid_cases": [3, 1], "test_cases": [3, 3],
                          "users_without_train": 1, "cases_without_history": 2, "short_users": 0}
    assert rows(ds) == [
        # u1 interleaves: f1@10 k1@20 f2@30 f5@70 k2@70 k3@80; the tie at 70 puts X's file first.
        # Held out: Food f5 (test) f2 (valid), Kitchen k3 (test) k2 (valid); train keeps f1 k1.
        ("AU1", "train", [0, 3], [10, 20]),
        ("AU1:Food", "valid", [0, 3, 1], [10, 20, 30]),
        ("AU1:Kitchen", "valid", [0, 3, 1, 2, 4], [10, 20, 30, 70, 70]),
        ("AU1:Food", "test", [0, 3, 1, 2], [10, 20, 30, 70]),
        ("AU1:Kitchen", "test", [0, 3, 1, 2, 4, 5], [10, 20, 30, 70, 70, 80]),
        # u2: k1@10 f1@15 f2@25 k2@30 f5@35; Kitchen's valid target k1 is the first interaction: no case
        ("AU2", "train", [0], [15]),
        ("AU2:Food", "valid", [3, 0, 1], [10, 15, 25]),
        ("AU2:Kitchen", "test", [3, 0, 1, 4], [10, 15, 25, 30]),
        ("AU2:Food", "test", [3, 0, 1, 4, 2], [10, 15, 25, 30, 35]),
        # u4: k2@1 k3@2, then f2@40 f1@40 (a tie in one file: file order); everything is held out, no train row
        ("AU4:Food", "valid", [4, 5, 1], [1, 2, 40]),
        ("AU4:Kitchen", "test", [4, 5], [1, 2]),
        ("AU4:Food", "test", [4, 5, 1, 0], [1, 2, 40, 40]),
    ]
    reviews = ds.meta.extra["reviews"]
    assert [(f["schema"], f["rows"], f["reviews"], f["bad_rows"]) for f in reviews] == [(schema, 13, 13, 0),
                                                                                         (schema, 10, 10, 0)]
    assert reviews[0]["time_unit"] == ("milliseconds" if schema == "2023" else "seconds")
    assert ds.meta.extra["domain_names"] == "file names in " + f"amazon_{schema}_mini"


def test_leave_one_out_on_the_merged_sequence():
    ds = load("2023", "data.amazon.holdout=merged")
    assert rows(ds) == [
        ("AU1", "train", [0, 3, 1, 2], [10, 20, 30, 70]),
        ("AU1", "valid", [0, 3, 1, 2, 4], [10, 20, 30, 70, 70]),
        ("AU1", "test", [0, 3, 1, 2, 4, 5], [10, 20, 30, 70, 70, 80]),
        ("AU2", "train", [3, 0, 1], [10, 15, 25]),
        ("AU2", "valid", [3, 0, 1, 4], [10, 15, 25, 30]),
        ("AU2", "test", [3, 0, 1, 4, 2], [10, 15, 25, 30, 35]),
        ("AU4", "train", [4, 5], [1, 2]),
        ("AU4", "valid", [4, 5, 1], [1, 2, 40]),
        ("AU4", "test", [4, 5, 1, 0], [1, 2, 40, 40]),
    ]
    assert ds.meta.extra["recipe"]["split"] == {"users": 3, "train_sequences": 3, "valid_cases": [1, 2],
                                                "test_cases": [2, 1], "users_without_train": 0,
                                                "cases_without_history": 0, "short_users": 0}


def test_minimum_per_domain_without_k_core():
    r = load("2023", "data.amazon.k_core=0", "data.amazon.min_per_domain=2").meta.extra["recipe"]
    assert r["k_core"] == [dict(left(13, 5, 5), rounds=0), dict(left(10, 5, 4), rounds=0)]
    # Food: every user has >= 2; Kitchen: u7 has 1 (k9 goes with it)
    assert r["min_per_domain"] == [dict(left(13, 5, 5), users_dropped=0), dict(left(9, 4, 3), users_dropped=1)]
    # u1 u2 u4 in both: Food u1 4 + u2 3 + u4 2 rows, items f1 f2 f3 f5; Kitchen 3 + 2 + 2
    assert r["users_in_both_domains"] == 3 and r["overlap"] == [left(9, 3, 4), left(7, 3, 3)]


def test_users_of_one_domain_kept_when_asked():
    ds = load("2023", "data.amazon.overlap_only=false")
    r = ds.meta.extra["recipe"]
    assert "overlap" not in r and r["users_in_both_domains"] == 3
    # u5: f1@5 f2@6 -> test case [f1 f2], its valid target is its first interaction; u6: k1@3 k3@4 likewise
    assert r["split"] == {"users": 5, "train_sequences": 2, "valid_cases": [3, 1], "test_cases": [4, 4],
                          "users_without_train": 3, "cases_without_history": 4, "short_users": 0}
    assert ("AU5:Food", "test", [0, 1], [5, 6]) in rows(ds) and ("AU6:Kitchen", "test", [3, 5], [3, 4]) in rows(ds)


@pytest.mark.parametrize("schema", ["2023", "2018"])
def test_item_text_images_and_missing_metadata(schema):
    ds = load(schema)
    items = ds.items.to_pylist()
    assert items[0]["title"] == ('Dark & Salty Chocolate. Brand: Cocoa Co. Categories: Grocery > Chocolate. '
                                 'Features: 70% cocoa; Sea salt. Description: Rich "dark" bar. Made in Belgium.')
    assert items[0]["image_uri"] == "https://img/f1_main_hi.jpg"            # MAIN / high-res, not the side image
    raw = json.loads(items[0]["attributes"])
    assert raw["title"] == "Dark &amp; Salty <b>Chocolate</b>" and raw["brand" if schema == "2018" else "store"]
    assert (items[1]["title"], items[1]["image_uri"]) == ("Green Tea.", "https://img/f2_large.jpg")
    assert items[2] == {"item_index": 2, "item_id": "f5", "domain": 0, "title": None, "image_uri": None,
                        "attributes": None}                                  # no metadata row: kept, counted
    assert items[3]["title"].startswith("Chef Knife.")                       # k1's first row wins
    meta = ds.meta.extra["metadata"]
    assert ds.meta.extra["items_missing_metadata"] == [1, 0]
    assert [(m["rows"], m["items_with_metadata"], m["repeated_rows"], m["items_with_image"]) for m in meta] == \
        [(3, 2, 0, 2), (4, 3, 1, 1)]


def test_text_fields_and_length_cap():
    ds = load("2023", "data.amazon.text_fields=[description]", "data.amazon.text_chars=30")
    titles = ds.items.column("title").to_pylist()
    assert titles[0] == "Dark & Salty Chocolate. Descri" and titles[5] == "Whisk. Description: Steel whis"
    with pytest.raises(ConfigError, match="data.amazon.text_fields"):
        load("2023", "data.amazon.text_fields=[colour]")


def test_domain_names_from_the_config_and_the_folder_choice(tmp_path):
    ds = load("2023", "data.domain_x=Grocery", "data.domain_y=Home")
    assert ds.meta.domains == ("Grocery", "Home") and ds.split("test").column("user_id")[0].as_py() == "AU1:Grocery"
    folder = tmp_path / "three"
    shutil.copytree(FIXTURES / "amazon_2023_mini", folder)
    shutil.copy(folder / "meta_Food.jsonl", folder / "meta_Toys.jsonl")
    with pytest.raises(DataError, match="two domains"):
        load(source=folder)
    assert load("2023", "data.amazon.domains=Kitchen,Food", source=folder).meta.domains == ("Kitchen", "Food")


BAD_LINES = ['{"user_id": "AU9", "parent_asin": "f1", "timestamp": 16',               # cut short
             '{"parent_asin": "f1", "timestamp": 1600000090000}',                       # no user
             '{"user_id": "AU9", "parent_asin": "f1", "timestamp": "soon"}',            # not a number
             '{"user_id": "AU9", "parent_asin": "f1", "timestamp": 1600000090}',        # seconds among ms
             '["AU9", "f1", 1600000090000]']                                           # not an object


def with_bad_lines(tmp_path: Path) -> Path:
    folder = tmp_path / "bad"
    shutil.copytree(FIXTURES / "amazon_2023_mini", folder)
    with open(folder / "Food.jsonl", "a") as fh:
        fh.write("\n".join(BAD_LINES) + "\n")                                   # lines 14-18
    return folder


def test_a_bad_row_stops_the_import_naming_file_line_expected_found(tmp_path):
    folder = with_bad_lines(tmp_path)
    with pytest.raises(DataError) as e:
        load(source=folder)
    assert e.value.file.endswith("Food.jsonl") and e.value.line == 14
    assert e.value.expected == "a JSON object" and "unparseable JSON" in e.value.found


def test_bad_rows_are_quarantined_and_counted(tmp_path):
    ds = load("2023", "data.skip_bad_rows=true", source=with_bad_lines(tmp_path))
    q = ds.quarantine.to_pylist()
    assert [r["line"] for r in q] == [14, 15, 16, 17, 18] and ds.meta.quarantined_rows == 5
    assert "non-empty user_id" in q[1]["reason"] and "'soon'" in q[2]["reason"]
    assert "milliseconds" in q[3]["reason"] and "seconds" in q[3]["reason"] and "JSON list" in q[4]["reason"]
    assert ds.meta.extra["reviews"][0] == {"file": "Food.jsonl", "schema": "2023", "time_unit": "milliseconds",
                                           "rows": 18, "bad_rows": 5, "reviews": 13, "repeated_reviews": 0}
    assert rows(ds) == rows(load("2023"))                                      # the good rows as before


def test_schema_detection_and_forcing(tmp_path):
    with pytest.raises(DataError, match="non-empty reviewerID"):              # 2023 files read as 2018
        load("2023", "data.amazon.schema=2018")
    folder = tmp_path / "odd"
    shutil.copytree(FIXTURES / "amazon_2023_mini", folder)
    (folder / "Food.jsonl").write_text('{"who": "AU1", "what": "f1", "when": 1}\n')
    with pytest.raises(DataError) as e:
        load(source=folder)
    assert e.value.line == 1 and "reviewerID" in e.value.expected and "user_id" in e.value.expected


def test_an_asin_in_both_domains_gets_prefixed_ids(tmp_path):
    folder = tmp_path / "shared"
    shutil.copytree(FIXTURES / "amazon_2023_mini", folder)
    kitchen = gzip.decompress((folder / "Kitchen.jsonl.gz").read_bytes()).decode().replace('"k1"', '"f1"')
    (folder / "Kitchen.jsonl.gz").write_bytes(gzip.compress(kitchen.encode()))
    ds = load(source=folder)
    assert ds.items.column("item_id").to_pylist() == ["Food:f1", "f2", "f5", "Kitchen:f1", "k2", "k3"]
    assert ds.meta.extra["items_in_both_domains"] == 1


def test_ids_are_encoded_batch_by_batch_in_order_of_first_appearance():
    codes = Codes(min_rows=2)
    out = [codes.add(["b", "a"]), codes.add(["c"]), codes.add(["a", "d", "b"]), codes.flush()]
    assert [None if o is None else o.tolist() for o in out] == [[0, 1], None, [2, 1, 3, 0], None]
    assert codes.ids.to_pylist() == ["b", "a", "c", "d"]


def test_tiny_batches_give_the_same_dataset():
    one, tiny = load("2023"), load("2023", "data.amazon.batch_rows=1")
    assert rows(tiny) == rows(one) and tiny.items.equals(one.items) and tiny.meta.extra == one.meta.extra


def test_a_recipe_that_leaves_nobody_is_a_clear_error():
    with pytest.raises(DataError, match="users left after the recipe"):
        load("2023", "data.amazon.k_core=3")


# --- issue 24: repeats, a file in the wrong unit, the stems the folder has, people and cases ---------------------

def copy_fixture(tmp_path: Path, schema: str = "2023") -> Path:
    return Path(shutil.copytree(FIXTURES / f"amazon_{schema}_mini", tmp_path / f"amazon_{schema}"))


def test_an_exact_repeat_is_dropped_counted_and_printed(tmp_path, capsys):
    """A repeated review line (same user, item, time) doubled the interaction and moved the k-core: f4 (one
    review) survived the 2-core with its copy, and u3 with it."""
    folder = copy_fixture(tmp_path)
    lines = (folder / "Food.jsonl").read_text().splitlines()
    (folder / "Food.jsonl").write_text("\n".join(lines[:3] + [lines[2]] + lines[3:]) + "\n")     # u3 f4 twice
    ds, clean = load(source=folder), load("2023")
    assert rows(ds) == rows(clean) and ds.items.equals(clean.items)
    r = ds.meta.extra["recipe"]
    assert r["repeated_reviews"] == [1, 0] and r["read"][0] == left(14, 5, 5) and r["k_core"] == clean.meta.extra[
        "recipe"]["k_core"]
    assert ds.meta.extra["reviews"][0]["repeated_reviews"] == 1 and ds.meta.quarantined_rows == 0
    # the same time for another item, or another time for the same item, is not a repeat
    (folder / "Food.jsonl").write_text("\n".join(lines + [lines[2].replace('"f4"', '"f3"'),
                                                          lines[2].replace("1600000013000", "1600000014000")]) + "\n")
    assert load(source=folder).meta.extra["recipe"]["repeated_reviews"] == [0, 0]
    (folder / "Food.jsonl").write_text("\n".join(lines[:3] + [lines[2]] + lines[3:]) + "\n")
    out = tmp_path / "prepared"
    assert main(["prepare", "data.format=amazon", f"data.source={folder}", f"data.dataset={out}",
                 "data.amazon.k_core=2"]) == 0
    printed = capsys.readouterr().out
    assert ("note: 1 repeated reviews (same user, item and time as an earlier line) dropped: Food 1, Kitchen 0"
            in printed)
    assert main(["stats", "--dataset", str(out)]) == 0
    assert "repeated reviews (same user, item and time) dropped: Food 1 / Kitchen 0" in capsys.readouterr().out


def test_a_2023_file_in_seconds_names_the_schema_and_a_domain_left_empty_stops_prepare(tmp_path, capsys):
    folder = copy_fixture(tmp_path)
    text = (folder / "Food.jsonl").read_text()
    (folder / "Food.jsonl").write_text(re.sub(r'"timestamp": (\d+)000,', r'"timestamp": \1,', text))
    with pytest.raises(DataError) as e:
        load(source=folder)
    assert e.value.line == 1 and "like most of the file" not in str(e.value)
    assert "unix timestamps in milliseconds, the unit of the 2023 review schema" in e.value.expected
    assert "1600000010, which looks like seconds" in e.value.found
    # skipping quarantines all 13 Food reviews: a Kitchen-only dataset must not be prepared
    out = tmp_path / "prepared"
    args = ["prepare", "data.format=amazon", f"data.source={folder}", f"data.dataset={out}", "data.amazon.k_core=2",
            "data.amazon.overlap_only=false"]
    assert main([*args, "--skip-bad-rows"]) == 2
    err = capsys.readouterr().err
    assert "expected items and sequences in both domains (Food, Kitchen)" in err
    assert "found domain 'Food' (X) with 0 items and 0 sequences holding one" in err
    assert "13 rows were quarantined" in err and f"first: {folder / 'Food.jsonl'}, line 1" in err
    assert not (out / "dataset.json").exists()


def test_a_missing_domain_file_lists_the_stems_found(tmp_path):
    with pytest.raises(DataError) as e:
        load("2023", "data.amazon.domains=Food,Kitchenware")
    assert e.value.file.endswith("Kitchenware.jsonl[.gz]") and "found none" in str(e.value)
    assert "stems here: Food, Kitchen, meta_Food, meta_Kitchen" in e.value.found
    folder = copy_fixture(tmp_path)
    (folder / "Food.jsonl.gz").write_bytes(gzip.compress(b"{}\n"))           # the shared check: one file per stem
    with pytest.raises(DataError, match=r"expected one reviews file for domain 'Food', found 2: "
                                        r"\['Food\.jsonl', 'Food\.jsonl\.gz'\]"):
        load(source=folder)


def test_stats_count_people_and_cases_apart(tmp_path, capsys):
    out = tmp_path / "prepared"
    assert main(["prepare", "data.format=amazon", f"data.source={FIXTURES / 'amazon_2023_mini'}",
                 f"data.dataset={out}", "data.amazon.k_core=2"]) == 0
    capsys.readouterr()
    ds = Dataset.read(out)
    assert ds.meta.extra["counts"] == {"sequences": {"train": 2, "valid": 4, "test": 6},
                                       "people": {"train": 2, "valid": 3, "test": 3, "all": 3}}
    assert main(["stats", "--dataset", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["people"] == 3 == ds.meta.extra["recipe"]["split"]["users"] and s["sequences"] == 12
    assert [(v["sequences"], v["people"]) for v in s["splits"].values()] == [(2, 2), (4, 3), (6, 3)]
    # renamed domains (a canonical re-import with other names) still strip the suffixes the ids carry
    again = import_dataset(load_config(None, ["data.format=canonical", f"data.source={out}", "data.domain_x=Grocery",
                                              "data.domain_y=Home"]).data)
    assert compute_stats(again)["people"] == 3
    assert main(["prepare", "data.format=amazon", f"data.source={FIXTURES / 'amazon_2023_mini'}",
                 f"data.dataset={out}", "data.amazon.k_core=0"]) == 0
    capsys.readouterr()
    assert main(["stats", "--dataset", str(out)]) == 0
    text = capsys.readouterr().out
    assert "k-core off:" in text and "0-core" not in text and "people (distinct users): " in text
