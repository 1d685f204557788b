"""data.format=abxi on a real slice of ABXI's Beauty-Electronics release (tests/fixtures/abxi_abe_mini): the split
is ABXI's own (models/data/dataloader.py get_dataset: train seq[:-2], valid target seq[-2], test target seq[-1],
each case counted in its target's domain), and the prepared folder trains."""

from __future__ import annotations

import gzip
import json
import shutil

import pyarrow.compute as pc
import pytest

from llm_emf.cli.main import main
from llm_emf.config import load_config
from llm_emf.data.importers import import_dataset
from llm_emf.data.schema import DataError, Dataset

pytestmark = pytest.mark.unit

SEQ, ITEM_MAP, USER_MAP = "abe_50_preprocessed.txt", "map_item_50.txt", "map_user_50.txt"


def data_cfg(*overrides: str):
    return load_config(None, list(overrides)).data


def abxi(folder, *overrides) -> Dataset:
    return import_dataset(data_cfg("data.format=abxi", f"data.source={folder}", *overrides))


@pytest.fixture
def mini(fixtures_dir):
    return fixtures_dir / "abxi_abe_mini"


@pytest.fixture
def mini_copy(tmp_path, mini):
    return shutil.copytree(mini, tmp_path / "abe")


def rows_of(ds: Dataset, user: str) -> dict[str, dict]:
    return {r["split"]: r for r in ds.sequences.filter(pc.equal(ds.sequences.column("user_id"), user)).to_pylist()}


def test_hand_checked_split_of_three_users(mini):
    ds = abxi(mini)
    asin = ds.items.column("item_id").to_pylist()
    # user 0 (15 interactions): the valid target is its 14th item (Beauty), the test target its 15th (Electronics);
    # both have the same timestamp, and the file order decides, as in ABXI
    u0 = rows_of(ds, "A00473363TJ8YSZ3YAGG9")
    assert [asin[u0["valid"]["items"][-1]], asin[u0["test"]["items"][-1]]] == ["B000052YQU", "B003NR57BY"]
    assert [ds.items.column("domain")[u0[s]["items"][-1]].as_py() for s in ("valid", "test")] == [0, 1]
    assert u0["valid"]["timestamps"][-1] == u0["test"]["timestamps"][-1] == 1402790400
    # histories: valid sees the first 13 items of both domains, test those and the valid target; train = the 13
    assert len(u0["train"]["items"]) == 13 and u0["valid"]["items"][:-1] == u0["train"]["items"]
    assert u0["test"]["items"][:-1] == u0["valid"]["items"]
    assert [asin[i] for i in u0["train"]["items"][-3:]] == ["B00B18C2RE", "B002LB42NM", "B00EOGGDXO"]
    assert u0["train"]["timestamps"][0] == 1357430400
    # user 1: both targets Electronics (B003WUBIZQ valid, B00AYQ433U test); user 2: Electronics then Beauty
    u1, u2 = rows_of(ds, "A00700212KB3K0MVESPIY"), rows_of(ds, "A100L918633LUO")
    assert [asin[u1[s]["items"][-1]] for s in ("valid", "test")] == ["B003WUBIZQ", "B00AYQ433U"]
    assert [asin[u2[s]["items"][-1]] for s in ("valid", "test")] == ["B00FA4Y7N2", "B007E62538"]
    assert [len(u1[s]["items"]) for s in ("train", "valid", "test")] == [12, 13, 14]


def abxi_reading(folder):
    """What ABXI's get_dataset builds from the raw files, independently of the importer: per user (ABXI ids)
    the training sequence seq[:-2], and the valid / test (history, target, domain), domain 0 when id <= |A|."""
    item_map = json.loads((folder / ITEM_MAP).read_text())
    n_a = sum(1 for _, d in item_map.values() if d == 0)
    out = {}
    for line in (folder / SEQ).read_text().splitlines():
        user, *tokens = line.strip().split(" ")
        seq = [int(t.split("|")[0]) for t in tokens][-50:]
        out[int(user)] = {"train": seq[:-2],
                          "valid": (seq[:-2], seq[-2], int(seq[-2] > n_a)),
                          "test": (seq[:-1], seq[-1], int(seq[-1] > n_a))}
    return out


def test_every_user_matches_abxis_own_reading(mini):
    ds = abxi(mini)
    expected = abxi_reading(mini)
    reviewer = {i: r for r, i in json.loads((mini / USER_MAP).read_text()).items()}
    domains = ds.items.column("domain").to_pylist()
    assert ds.split("valid").num_rows == ds.split("test").num_rows == ds.split("train").num_rows == 30
    cases = {"valid": [0, 0], "test": [0, 0]}
    for user, want in expected.items():
        got = rows_of(ds, reviewer[user])
        assert [i + 1 for i in got["train"]["items"]] == want["train"]      # item_index = ABXI id - 1
        for split in ("valid", "test"):
            history, target, domain = want[split]
            items = [i + 1 for i in got[split]["items"]]
            assert (items[:-1], items[-1], domains[items[-1] - 1]) == (history, target, domain)
            cases[split][domain] += 1
    # a domain's cases are the users whose target is in it: 30 of each split, split between the domains
    assert cases == {"valid": [9, 21], "test": [9, 21]}


def test_items_timestamps_and_dataset_json(mini):
    ds = abxi(mini)
    item_map = json.loads((mini / ITEM_MAP).read_text())
    assert ds.meta.n_items == (285, 506) and ds.meta.domains == ("Beauty", "Electronics")
    assert "ABXI's dataset code 'abe'" in ds.meta.extra["domain_names"]
    by_index = {v[0] - 1: (asin, v[1]) for asin, v in item_map.items()}
    assert list(zip(ds.items.column("item_id").to_pylist(), ds.items.column("domain").to_pylist())) == \
        [by_index[i] for i in range(791)]
    line = (mini / SEQ).read_text().splitlines()[3].split()           # user 3, 50 interactions
    reviewer = {i: r for r, i in json.loads((mini / USER_MAP).read_text()).items()}
    assert rows_of(ds, reviewer[3])["test"]["timestamps"] == [int(t.split("|")[1]) for t in line[1:]]
    extra = ds.meta.extra
    assert extra["source_files"]["sequences"] == {"file": SEQ, "lines": 30, "cases": 30, "users": 30,
                                                  "users_on_several_lines": 0, "interactions": 847,
                                                  "time_unit": "seconds"}
    assert extra["source_files"]["item_map"]["items"] == [285, 506]
    assert extra["abxi"]["len_max"] == 50 and extra["abxi"]["users_cut_to_len_max"] == 0
    assert ds.quarantine.num_rows == 0 and extra["short_users"]["count"] == 0


def test_names_from_config_and_unknown_codes(mini_copy):
    assert abxi(mini_copy, "data.domain_x=Beauty2", "data.domain_y=Elec").meta.domains == ("Beauty2", "Elec")
    (mini_copy / SEQ).rename(mini_copy / "mine_50_preprocessed.txt")
    ds = abxi(mini_copy)
    assert ds.meta.domains == ("X", "Y") and ds.meta.name == "abe"


def test_len_max_from_the_file_name_cuts_like_abxi_and_old_map_names(mini_copy):
    """ABXI reads line[1:][-len_max:], len_max from the file name; the first releases name the maps map_item.txt."""
    (mini_copy / SEQ).rename(mini_copy / "abe_5_preprocessed.txt")
    (mini_copy / ITEM_MAP).rename(mini_copy / "map_item.txt")
    (mini_copy / USER_MAP).rename(mini_copy / "map_user.txt")
    ds = abxi(mini_copy)
    line = (mini_copy / "abe_5_preprocessed.txt").read_text().splitlines()[0].split()
    u0 = rows_of(ds, "A00473363TJ8YSZ3YAGG9")
    assert [i + 1 for i in u0["test"]["items"]] == [int(t.split("|")[0]) for t in line[-5:]]
    assert len(u0["train"]["items"]) == 3
    assert (ds.meta.extra["abxi"]["len_max"], ds.meta.extra["abxi"]["users_cut_to_len_max"],
            ds.meta.extra["abxi"]["interactions_cut"]) == (5, 30, 847 - 30 * 5)


def test_gzip_like_plain_without_user_map_and_two_copies_refused(mini_copy, tmp_path):
    plain = abxi(mini_copy)
    for name in (SEQ, ITEM_MAP, USER_MAP):
        path = mini_copy / name
        path.with_name(name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    gz = abxi(mini_copy)
    assert gz.sequences.equals(plain.sequences) and gz.items.equals(plain.items)
    # without a user map the user_idx is the id
    (mini_copy / (USER_MAP + ".gz")).unlink()
    assert rows_of(abxi(mini_copy), "0")["test"]["items"] == rows_of(plain, "A00473363TJ8YSZ3YAGG9")["test"]["items"]
    (mini_copy / "map_item.txt").write_text("{}")
    with pytest.raises(DataError, match="2: \\['map_item_50.txt.gz', 'map_item.txt'\\]"):
        abxi(mini_copy)


def test_short_users_are_counted(mini_copy):
    lines = (mini_copy / SEQ).read_text().splitlines()
    (mini_copy / SEQ).write_text("\n".join(lines[:-1] + ["29 1|1400000000 300|1400000001"]) + "\n")
    reviewer = {i: r for r, i in json.loads((mini_copy / USER_MAP).read_text()).items()}
    ds = abxi(mini_copy)
    assert ds.meta.extra["short_users"] == {"count": 1, "min_interactions": 3, "first": [reviewer[29]]}
    assert ds.split("test").num_rows == 29 and not rows_of(ds, reviewer[29])
    below_16 = sum(len(line.split()) - 1 < 16 for line in (mini_copy / SEQ).read_text().splitlines())
    assert below_16 == 12 and abxi(mini_copy, "data.min_interactions=16").meta.extra["short_users"]["count"] == 12


@pytest.mark.integration
def test_prepare_then_train_on_the_slice(mini, tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["prepare", "data.format=abxi", f"data.source={mini}", f"data.dataset={out}"]) == 0
    assert "285 Beauty and 506 Electronics items; 30 train, 30 valid and 30 test sequences of 30 people" \
        in capsys.readouterr().out
    ds = Dataset.read(out)
    assert ds.meta.source_format == "abxi" and ds.sequences.num_rows == 90
    assert main(["train", f"data.dataset={out}", f"train.storage={tmp_path / 'runs'}", "train.run_name=t",
                 "train.epochs=1", "model.hidden_size=8", "model.n_blocks=1", "model.max_len=8",
                 "eval.n_negatives=5", "tracking.enabled=false"]) == 0
    results = json.loads((tmp_path / "runs" / "t" / "results.json").read_text())
    assert results["epochs_run"] == 1
    assert set(results["test"]["metrics"]["full"]) >= {"Beauty", "Electronics"}
