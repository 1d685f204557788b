"""Domain names come from the config or the data, never from a silent Food/Kitchen default (importers/domains.py):
config if set, else the folder name or the interaction format's domain column, else X/Y; dataset.json
(extra.domain_names) says which."""

from __future__ import annotations

import shutil

import pytest

from llm_emf.config import ConfigError, load_config
from llm_emf.config.data import DataConfig
from llm_emf.data.importers import import_dataset
from llm_emf.data.importers.domains import names_from_folder
from llm_emf.data.schema import DataError

pytestmark = pytest.mark.unit


def data_cfg(*overrides: str):
    return load_config(None, list(overrides)).data


def test_config_has_no_default_pair():
    assert (DataConfig().domain_x, DataConfig().domain_y) == ("", "")


@pytest.mark.parametrize("name, names", [
    ("Movie-Book", ("Movie", "Book")),                   # C2DSR's / LLMCDSR's naming, kept as written
    ("Entertainment-Education", ("Entertainment", "Education")),
    ("llmcdsr_food_kitchen", ("Food", "Kitchen")),       # /work/shared/data's naming: a format tag, two words
    ("c2dsr_movie_book", ("Movie", "Book")),
    ("food_kitchen", ("Food", "Kitchen")),               # the bundled sample
    ("plain_sample", None), ("my_data", None), ("c2dsr", None), ("a-b-c", None), ("-Book", None),
    ("llmcdsr_food", None), ("c2dsr_official_partial_x", None),
])
def test_names_from_folder(name, names):
    assert names_from_folder(name) == names


def test_bundled_sample_is_food_kitchen_from_its_folder_name():
    ds = import_dataset(data_cfg("data.source=sample"))
    assert ds.meta.domains == ("Food", "Kitchen")
    assert ds.meta.extra["domain_names"] == "folder name 'food_kitchen'"


@pytest.mark.parametrize("folder, overrides, names, said", [
    ("plain_sample", [], ("X", "Y"), "unknown: not set in data.domain_x / data.domain_y"),
    ("Movie-Book", [], ("Movie", "Book"), "folder name 'Movie-Book'"),
    ("llmcdsr_movie_book", [], ("Movie", "Book"), "folder name 'llmcdsr_movie_book'"),
    # explicit Food/Kitchen is no longer mistaken for an unset default
    ("Movie-Book", ["data.domain_x=Food", "data.domain_y=Kitchen"], ("Food", "Kitchen"), "config"),
])
def test_llmcdsr_names_from_config_folder_or_x_y(tmp_path, plain_sample, folder, overrides, names, said):
    source = plain_sample if folder == "plain_sample" else shutil.copytree(plain_sample, tmp_path / folder)
    ds = import_dataset(data_cfg(f"data.source={source}", *overrides))
    assert ds.meta.domains == names and ds.meta.extra["domain_names"].startswith(said)


@pytest.mark.parametrize("given", ["data.domain_x=Movie", "data.domain_y=Book"])
def test_one_name_without_the_other_is_a_config_error(given):
    missing = "data.domain_y" if "domain_x" in given else "data.domain_x"
    with pytest.raises(ConfigError, match=rf"^{missing}: expected a name, as data.domain_.=.* is set"):
        import_dataset(data_cfg("data.source=sample", given))


# --- interactions: the item table's domain column ------------------------------------------------------------

def log_cfg(folder, items: str, log: str, *overrides: str):
    (folder / "items.csv").write_text("item,domain,title\n" + items)
    (folder / "log.csv").write_text("user,item,domain,timestamp\n" + log)
    return data_cfg("data.format=interactions", f"data.source={folder / 'log.csv'}",
                    f"data.items={folder / 'items.csv'}", *overrides)


def three_events(x: str, y: str) -> str:
    return f"u1,a,{x},1\nu1,k,{y},2\nu1,b,{x},3\n"


def test_interactions_names_are_the_domain_values_x_first_listed(tmp_path):
    ds = import_dataset(log_cfg(tmp_path, "k,Books,Knife\na,Movies,Apple\nb,Movies,Bread\n",
                                three_events("Movies", "Books")))
    assert ds.meta.domains == ("Books", "Movies") and ds.meta.n_items == (1, 2)
    assert ds.meta.extra["domain_names"] == "domain column of items.csv (X: the first listed)"
    assert ds.items.column("item_id").to_pylist() == ["k", "a", "b"]


@pytest.mark.parametrize("codes", [("1", "0"), ("B", "A"), ("y", "x")])
def test_interactions_domain_codes_are_named_x_and_y(tmp_path, codes):
    y, x = codes          # listed Y first: a code, unlike a name, says which domain is X
    ds = import_dataset(log_cfg(tmp_path, f"k,{y},Knife\na,{x},Apple\nb,{x},Bread\n", three_events(x, y)))
    assert ds.meta.domains == ("X", "Y") and ds.meta.n_items == (2, 1)
    assert ds.meta.extra["domain_names"].startswith(f"domain codes {x!r}, {y!r} in items.csv (not names)")
    assert ds.items.column("item_id").to_pylist() == ["a", "b", "k"]


def test_interactions_config_names_still_rule(tmp_path):
    cfg = log_cfg(tmp_path, "a,Food,Apple\nk,Kitchen,Knife\nb,Food,Bread\n", three_events("Food", "Kitchen"),
                  "data.domain_x=Kitchen", "data.domain_y=Food")
    ds = import_dataset(cfg)
    assert ds.meta.domains == ("Kitchen", "Food") and ds.meta.extra["domain_names"].startswith("config")
    assert ds.items.column("item_id").to_pylist() == ["k", "a", "b"]


@pytest.mark.parametrize("items, found", [
    ("a,Food,Apple\nk,Kitchen,Knife\nt,Toys,Train\n", "found 3: 'Food', 'Kitchen', 'Toys'"),
    ("a,Food,Apple\nb,Food,Bread\n", "found 1: 'Food'"),
])
def test_interactions_without_two_domain_values_asks_for_the_config(tmp_path, items, found):
    cfg = log_cfg(tmp_path, items, three_events("Food", "Kitchen"))
    with pytest.raises(DataError, match=r"items\.csv: expected items of two domains in column 'domain' \(or "
                                        r"data\.domain_x / data\.domain_y set to say which two\), " + found):
        import_dataset(cfg, skip_bad_rows=True)      # a file-level question: skipping rows cannot answer it


def test_interactions_third_domain_is_a_bad_row_once_the_config_names_two(tmp_path):
    cfg = log_cfg(tmp_path, "a,Food,Apple\nk,Kitchen,Knife\nt,Toys,Train\nb,Food,Bread\n",
                  three_events("Food", "Kitchen"), "data.domain_x=Food", "data.domain_y=Kitchen")
    ds = import_dataset(cfg, skip_bad_rows=True)
    assert ds.meta.domains == ("Food", "Kitchen") and ds.meta.n_items == (2, 1)
    assert ds.quarantine.to_pylist()[0]["line"] == 4 and ds.meta.quarantined_rows == 1


# --- canonical: dataset.json's names and where they came from, unless the config names them -------------------

def test_canonical_keeps_names_and_origin_unless_configured(tmp_path):
    import_dataset(data_cfg("data.source=sample")).write(tmp_path / "ds")
    again = import_dataset(data_cfg("data.format=canonical", f"data.source={tmp_path / 'ds'}"))
    assert again.meta.domains == ("Food", "Kitchen")
    assert again.meta.extra["domain_names"] == "folder name 'food_kitchen'"
    renamed = import_dataset(data_cfg("data.format=canonical", f"data.source={tmp_path / 'ds'}",
                                      "data.domain_x=Grocery", "data.domain_y=Home"))
    assert renamed.meta.domains == ("Grocery", "Home") and renamed.meta.extra["domain_names"].startswith("config")
