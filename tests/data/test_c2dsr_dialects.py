"""C2DSR: an id never changes meaning (item lists are all-or-nothing, an offset Blist is read as such), and
the dialects of other releases (a user on several lines, as the Art-Office release has them; item metadata;
domain names) are read, not quarantined: every line of a split file is one sequence or case."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

from llm_emf.cli.main import main
from llm_emf.config import load_config
from llm_emf.data.importers import import_dataset
from llm_emf.data.schema import DataError, Dataset
from llm_emf.data.stats import compute_stats

pytestmark = pytest.mark.unit
N_X = 69   # rows of c2dsr_fk_mini/Alist.txt
SHARED_DATA = Path(os.environ.get("LLM_EMF_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


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

@pytest.mark.parametrize("skip", [False, True])
def test_every_line_is_a_case_whatever_its_user(c2dsr, skip):
    """As C2DSR's loader reads them: a user on three lines of a valid file (targets in both domains, and twice in
    one) gives three cases, in strict mode and in skip mode. Before, the third line stopped the import."""
    valid = c2dsr / "validdata_new.txt"
    clean = import_dataset(c2dsr_cfg(c2dsr)).split("valid").to_pylist()[0]   # user 7, line 1
    target_in_y = clean["items"][-1] >= N_X
    same, other = (N_X + 5, 5) if target_in_y else (5, N_X + 5)
    edit_lines(valid, lambda lines: lines + [f"7\t3\t3|1300000000|x|\t{other}|1500000000|y|",
                                             f"7\t2\t4|1300000000|x|\t{same}|1500000000|y|"])
    ds = import_dataset(c2dsr_cfg(c2dsr, f"data.skip_bad_rows={skip}"))
    by_id = {r["user_id"]: r["items"] for r in ds.split("valid").to_pylist()}
    assert by_id["valid:7:1"] == clean["items"] and by_id["valid:7:7"] == [3, other] and by_id["valid:7:8"] == [4, same]
    assert "valid:7" not in by_id and "valid:14" in by_id and len(by_id) == 8 and len(ds.quarantine) == 0
    assert ds.meta.extra["source_files"]["valid"] == {
        "file": "validdata_new.txt", "lines": 8, "cases": 8, "users": 6, "users_on_several_lines": 1,
        "interactions": sum(len(i) for i in by_id.values()), "time_unit": "seconds"}
    stats = compute_stats(ds)
    assert (stats["splits"]["valid"]["sequences"], stats["splits"]["valid"]["people"]) == (8, 6)


def ends_in_each_domain(line: str, n_x: int) -> list[str] | None:
    """A C2DSR line's tokens, sorted by time as C2DSR sorts them, cut after the last token of each domain: two
    training sequences, one ending in A and one in B (the Art-Office release's training file). None when the line
    has no token of one domain."""
    tokens = sorted((t for t in line.split("\t")[2:] if t), key=lambda t: int(t.split("|")[1]))
    last = [max((k for k, t in enumerate(tokens) if (int(t.split("|")[0]) >= n_x) == d), default=None)
            for d in (False, True)]
    if None in last:
        return None
    return ["\t".join(tokens[:k + 1]) for k in last]


def art_office_structure(folder, source_lines: list[str], n_x: int, n_train_users: int, n_valid: int,
                         n_test: int, n_twice: int) -> None:
    """Write C2DSR split files shaped like the Art-Office release from ``source_lines`` (real valid/test lines):
    every training user on two lines (one sequence ending in each domain); ``n_twice`` valid and ``n_twice`` test
    users on two lines whose targets are in the same domain. Valid/test users are training users."""
    pool = [cut for cut in (ends_in_each_domain(line, n_x) for line in source_lines) if cut]
    train = [f"{u}\t{len(seq.split(chr(9)))}\t{seq}" for u in range(n_train_users) for seq in pool[u % len(pool)]]
    (folder / "traindata_new.txt").write_text("\n".join(train) + "\n")

    def target_in_y(line: str) -> bool:
        return int(max((t for t in line.split("\t")[2:] if t), key=lambda t: int(t.split("|")[1])).split("|")[0]) >= n_x

    by_domain = {d: [line for line in source_lines if target_in_y(line) == d] for d in (False, True)}
    start = 0
    for name, n_lines in (("validdata_new.txt", n_valid), ("testdata_new.txt", n_test)):
        lines = []
        for k in range(n_lines - n_twice):          # the user id replaced, the tokens kept
            user = start + k
            line = source_lines[user % len(source_lines)]
            lines.append(f"{user}\t" + line.split("\t", 1)[1])
            if k < n_twice:                         # the same user again, a target in the same domain
                again = by_domain[target_in_y(line)][k]
                lines.append(f"{user}\t" + again.split("\t", 1)[1])
        (folder / name).write_text("\n".join(lines) + "\n")
        start += n_lines - n_twice


@pytest.mark.parametrize("skip", [False, True])
def test_art_office_structure_on_the_mini_fixture(c2dsr, skip):
    source = [line for name in ("validdata_new.txt", "testdata_new.txt")
              for line in (c2dsr / name).read_text().splitlines()]
    art_office_structure(c2dsr, source, N_X, n_train_users=5, n_valid=6, n_test=6, n_twice=2)
    ds = import_dataset(c2dsr_cfg(c2dsr, f"data.skip_bad_rows={skip}"))
    assert [ds.split(s).num_rows for s in ("train", "valid", "test")] == [10, 6, 6] and len(ds.quarantine) == 0
    files = ds.meta.extra["source_files"]
    assert [(files[s]["lines"], files[s]["users"], files[s]["users_on_several_lines"]) for s in
            ("train", "valid", "test")] == [(10, 5, 5), (6, 4, 2), (6, 4, 2)]
    train = ds.split("train").to_pylist()
    assert [r["user_id"] for r in train[:2]] == ["train:0:1", "train:0:2"]
    assert [r["items"][-1] >= N_X for r in train[:2]] == [False, True]     # one sequence ending in each domain


@pytest.mark.skipif(not (SHARED_DATA / "c2dsr_official_partial/Food-Kitchen").is_dir(),
                    reason="shared data not mounted")
def test_art_office_release_structure_built_from_food_kitchen_imports_every_line(tmp_path, capsys):
    """The Done-when of issue 24: the Art-Office release's shape (16,000 training lines of 8,000 users, two per user
    ending in each domain; 1,154 valid and 2,000 test lines, 74 users on two lines whose targets share a domain)
    imports in strict mode with every line a sequence or case. Built in tmp_path from the first 2,000 lines of
    the shared Food-Kitchen validdata_new.txt and the real item lists."""
    shared = SHARED_DATA / "c2dsr_official_partial/Food-Kitchen"
    folder = tmp_path / "Art-Office"
    folder.mkdir()
    for name in ("Alist.txt.gz", "Blist.txt.gz"):
        shutil.copy(shared / name, folder / name)
    with gzip.open(shared / "validdata_new.txt.gz", "rt") as fh:
        source = [next(fh).rstrip("\n") for _ in range(2000)]
    art_office_structure(folder, source, 29207, n_train_users=8000, n_valid=1154, n_test=2000, n_twice=37)
    out = tmp_path / "prepared"
    assert main(["prepare", "data.format=c2dsr", f"data.source={folder}", f"data.dataset={out}"]) == 0   # strict
    printed = capsys.readouterr().out
    assert "16,000 train, 1,154 valid and 2,000 test sequences of 8,000 people" in printed
    assert "note: traindata_new.txt: 8,000 of 8,000 users are on several lines" in printed
    ds = Dataset.read(out)
    assert [ds.split(s).num_rows for s in ("train", "valid", "test")] == [16000, 1154, 2000]
    assert ds.meta.quarantined_rows == 0 and ds.meta.domains == ("Art", "Office")
    files = ds.meta.extra["source_files"]
    assert [(files[s]["lines"], files[s]["users"], files[s]["users_on_several_lines"]) for s in
            ("train", "valid", "test")] == [(16000, 8000, 8000), (1154, 1117, 37), (2000, 1963, 37)]
    assert ds.meta.extra["counts"]["people"] == {"train": 8000, "valid": 1117, "test": 1963, "all": 8000}
    assert main(["stats", "--dataset", str(out)]) == 0
    text = capsys.readouterr().out
    assert "people (distinct users): 8,000   sequences (training sequences and evaluation cases): 19,154" in text
    assert "validdata_new.txt: 1,154 lines, 1,154 kept, 1,117 users (37 on several lines)" in text


def test_a_count_column_that_is_not_an_integer_names_file_line_expected_found(c2dsr):
    path = c2dsr / "testdata_new.txt"
    edit_lines(path, lambda lines: lines[:2] + [lines[2].replace("\t", "\tten\t", 1).replace(
        "\t" + lines[2].split("\t")[1] + "\t", "\t", 1)] + lines[3:])
    assert path.read_text().splitlines()[2].split("\t")[1] == "ten"
    with pytest.raises(DataError) as info:
        import_dataset(c2dsr_cfg(c2dsr))
    assert (info.value.file, info.value.line) == (str(path), 3)
    assert info.value.expected.startswith("an integer count n in field 2") and info.value.found == "'ten'"
    edit_lines(path, lambda lines: lines + ["7:2\t2\t1|100|x|\t2|200|x|"])   # ':' would make ids ambiguous
    ds = import_dataset(c2dsr_cfg(c2dsr, "data.skip_bad_rows=true"))
    assert [(r["line"], r["reason"].split(" (")[0]) for r in ds.quarantine.to_pylist()] == [
        (3, "expected an integer count n in field 2"), (7, "expected a user id without ':'")]


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
