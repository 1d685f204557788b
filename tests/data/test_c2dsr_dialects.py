"""C2DSR: an id never changes meaning (item lists are all-or-nothing, an offset Blist is read as such), and
the dialects of other releases (two lines per user, item metadata, domain names) are read, not quarantined."""

from __future__ import annotations

import json
import shutil

import pytest

from llm_emf.config import load_config
from llm_emf.data.importers import import_dataset
from llm_emf.data.schema import DataError

pytestmark = pytest.mark.unit
N_X = 69   # rows of c2dsr_fk_mini/Alist.txt


def c2dsr_cfg(folder, *overrides: str):
    return load_config(None, ["data.format=c2dsr", f"data.source={folder}", *overrides]).data


@pytest.fixture
def c2dsr(tmp_path, fixtures_dir):
    return shutil.copytree(fixtures_dir / "c2dsr_fk_mini", tmp_path / "c2dsr")


def edit_lines(path, edit) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def offset_blist(lines: list[str]) -> list[str]:
    return [f"{o}\t{asin}\t{int(i) + N_X}" for o, asin, i in (line.split("\t") for line in lines)]


# --- point 1: nothing may shift an id --------------------------------------------------------------------

@pytest.mark.parametrize("skip", [False, True])
def test_blist_offset_by_a_is_read_like_the_local_one(c2dsr, skip):
    clean = import_dataset(c2dsr_cfg(c2dsr))
    edit_lines(c2dsr / "Blist.txt", offset_blist)
    ds = import_dataset(c2dsr_cfg(c2dsr, f"data.skip_bad_rows={skip}"))
    assert ds.items.equals(clean.items) and ds.sequences.equals(clean.sequences)
    assert ds.meta.n_items == (69, 72) and len(ds.quarantine) == 0
    assert ds.meta.extra["blist_new_idx_offset"] == N_X and clean.meta.extra["blist_new_idx_offset"] == 0


def first_line_with_item(path, least: int) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if any(int(t.split("|")[0]) >= least for t in line.split("\t")[2:] if t):
            return number
    raise AssertionError("no such line")


@pytest.mark.parametrize("case", ["middle row", "last row", "duplicate new_idx", "blist first row",
                                  "blist offset by one too many"])
def test_item_list_rows_are_all_or_nothing_even_with_skip_bad_rows(c2dsr, case):
    alist, blist = c2dsr / "Alist.txt", c2dsr / "Blist.txt"
    if case == "middle row":        # used to be a placeholder item
        edit_lines(alist, lambda lines: lines[:9] + lines[10:])
        where, fragments = (alist, 10), ("a row for every new_idx from 0", "new_idx 10 but no row for new_idx 9")
    elif case == "last row":        # used to shift every Y item onto its neighbour, one row quarantined
        edit_lines(alist, lambda lines: lines[:-1])
        valid = c2dsr / "validdata_new.txt"            # read before testdata_new.txt
        where, fragments = (valid, first_line_with_item(valid, 140)), ("item ids in [0, 140)", "found item 140")
    elif case == "duplicate new_idx":
        edit_lines(alist, lambda lines: lines[:3] + ["1\tB0NEWASIN0\t2"] + lines[3:])
        where, fragments = (alist, 4), ("each new_idx once", "new_idx 2 again (first on line 3)")
    elif case == "blist first row":
        edit_lines(blist, lambda lines: lines[1:])
        where, fragments = (blist, 1), ("new_idx starting at 0 or |A| = 69", "lowest new_idx 1")
    else:                           # offset by |A| + 1: Alist lost a row, or the offset is not |A|
        edit_lines(blist, lambda lines: [f"{o}\t{a}\t{int(i) + 1}" for o, a, i in
                                         (line.split("\t") for line in offset_blist(lines))])
        where, fragments = (blist, 1), ("new_idx starting at 0 or |A| = 69", "lowest new_idx 70")
    with pytest.raises(DataError) as info:
        import_dataset(c2dsr_cfg(c2dsr, "data.skip_bad_rows=true"))
    assert (info.value.file, info.value.line) == (str(where[0]), where[1]), str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


# --- point 6: the dialects of other releases ---------------------------------------------------------------

def test_user_on_two_lines_one_per_target_domain_gives_two_cases(c2dsr):
    valid = c2dsr / "validdata_new.txt"
    first = valid.read_text().splitlines()[0]          # user 7; its latest token decides the target's domain
    clean = import_dataset(c2dsr_cfg(c2dsr)).split("valid").to_pylist()[0]
    other_domain = 0 if clean["items"][-1] >= N_X else N_X
    edit_lines(valid, lambda lines: lines + [f"7\t3\t3|1300000000|x|\t{other_domain}|1500000000|y|"])
    ds = import_dataset(c2dsr_cfg(c2dsr))
    by_user = {r["user_id"]: r for r in ds.split("valid").to_pylist()}
    letter = "B" if clean["items"][-1] >= N_X else "A"
    other = "A" if letter == "B" else "B"
    assert by_user[f"valid:7:{letter}"]["items"] == clean["items"]
    assert by_user[f"valid:7:{other}"]["items"] == [3, other_domain] and "valid:7" not in by_user
    assert ds.meta.extra["source_files"]["valid"]["users"] == 6
    assert ds.meta.extra["source_files"]["valid"]["cases"] == 7
    assert first.startswith("7\t")
    # a third line for the user (or a second with a target in the same domain) is still a bad row
    edit_lines(valid, lambda lines: lines + ["7\t2\t4|1300000000|x|\t5|1500000000|y|"])
    ds = import_dataset(c2dsr_cfg(c2dsr, "data.skip_bad_rows=true"))
    assert ds.split("valid").num_rows == 7
    [row] = ds.quarantine.to_pylist()
    assert row["line"] == 8 and "user 7 again (first on line 1)" in row["reason"]


def test_item_metadata_csv_attaches_titles_and_attributes(c2dsr, fixtures_dir):
    meta_csv = fixtures_dir / "c2dsr_fk_meta/items.csv"
    rows = meta_csv.read_text().splitlines()
    by_data_items = import_dataset(c2dsr_cfg(c2dsr, f"data.items={meta_csv}"))
    shutil.copy(meta_csv, c2dsr / "items.csv")
    ds = import_dataset(c2dsr_cfg(c2dsr))            # found in the folder
    assert ds.items.equals(by_data_items.items)
    items = {r["item_id"]: r for r in ds.items.to_pylist()}
    assert items["B00CTLALGQ"]["title"] == ("Melitta Single Cup Coffee for K-Cup Brewers, Cafe de Europa Blanc "
                                            "et Noir, Light and Dark Roast, 12 Count")   # quoted, with commas
    assert json.loads(items["B00CTLALGQ"]["attributes"]) == {"llmcdsr_table": "items_A", "llmcdsr_item_idx": 694}
    assert sum(r["title"] is not None for r in items.values()) == 24 == len(rows) - 1 - 2
    summary = ds.meta.extra["item_metadata"]
    assert (summary["rows"], summary["matched"], summary["unknown_ids"]) == (26, 24, 2)
    # metadata keyed by something else than the item ids stops the import
    (c2dsr / "items.csv").write_text("id,title\n0,first\n1,second\n")
    with pytest.raises(DataError, match=r"items\.csv: expected ids that appear in the item lists, "
                                        r"found none of 2 ids \(first '0'\)"):
        import_dataset(c2dsr_cfg(c2dsr))


def test_free_text_and_extra_columns_become_attributes(c2dsr):
    asin = (c2dsr / "Alist.txt").read_text().splitlines()[0].split("\t")[1]
    (c2dsr / "items.csv").write_text(f'id,title,attributes,brand\n{asin},"Tea, green",loose leaf,Acme\n')
    item = import_dataset(c2dsr_cfg(c2dsr)).items.to_pylist()[0]
    assert item["title"] == "Tea, green"
    assert json.loads(item["attributes"]) == {"attributes": "loose leaf", "brand": "Acme"}


@pytest.mark.parametrize("folder, overrides, names, said", [
    ("c2dsr", [], ("X", "Y"), "unknown: not set in data.domain_x / data.domain_y"),
    ("Movie-Book", [], ("Movie", "Book"), "folder name 'Movie-Book'"),
    ("Movie-Book", ["data.domain_x=Films", "data.domain_y=Novels"], ("Films", "Novels"), "config"),
])
def test_domain_names_come_from_config_or_data(tmp_path, fixtures_dir, folder, overrides, names, said):
    source = shutil.copytree(fixtures_dir / "c2dsr_fk_mini", tmp_path / folder)
    ds = import_dataset(c2dsr_cfg(source, *overrides))
    assert ds.meta.domains == names and ds.meta.extra["domain_names"].startswith(said)
