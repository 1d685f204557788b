"""data.format=abxi refuses bad input naming the file, the line, what was expected and what was found; with
skip_bad_rows the bad rows go to the quarantine (file, line, reason) and are counted, and the rest imports."""

from __future__ import annotations

import json
import shutil

import pytest

from llm_emf.config import load_config
from llm_emf.data.importers import import_dataset
from llm_emf.data.schema import DataError

pytestmark = pytest.mark.unit

SEQ, ITEM_MAP, USER_MAP = "abe_50_preprocessed.txt", "map_item_50.txt", "map_user_50.txt"
N_A = 285     # Beauty items in the fixture's map (ids 1..285), Electronics 286..791


@pytest.fixture
def folder(tmp_path, fixtures_dir):
    return shutil.copytree(fixtures_dir / "abxi_abe_mini", tmp_path / "abe")


def cfg(folder, *overrides):
    return load_config(None, ["data.format=abxi", f"data.source={folder}", *overrides]).data


def raises_at(folder, name, line, *fragments) -> DataError:
    with pytest.raises(DataError) as info:
        import_dataset(cfg(folder))
    assert (info.value.file, info.value.line) == (str(folder / name), line), str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return info.value


def edit_line(folder, number: int, edit) -> str:
    """Replace line ``number`` (1-based) of the sequence file by ``edit(tokens)`` (user_idx first); -> the new line."""
    lines = (folder / SEQ).read_text().splitlines()
    lines[number - 1] = " ".join(edit(lines[number - 1].split(" ")))
    (folder / SEQ).write_text("\n".join(lines) + "\n")
    return lines[number - 1]


def edit_map(folder, edit, one_entry_a_line=False) -> dict:
    item_map = json.loads((folder / ITEM_MAP).read_text())
    edit(item_map)
    text = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in item_map.items())
    (folder / ITEM_MAP).write_text("{\n" + text + "\n}" if one_entry_a_line else json.dumps(item_map))
    return item_map


def asin_of(folder, item_id: int) -> str:
    return next(a for a, (i, _) in json.loads((folder / ITEM_MAP).read_text()).items() if i == item_id)


# --- the sequence file ---------------------------------------------------------------------------------------

def test_malformed_token(folder):
    edit_line(folder, 4, lambda t: t[:3] + ["103-1384387200"] + t[4:])
    raises_at(folder, SEQ, 4, "expected tokens item|unix_ts of non-negative integers",
              "found '103-1384387200' (token 3)")
    edit_line(folder, 4, lambda t: t[:3] + ["103|13843x"] + t[4:])
    raises_at(folder, SEQ, 4, "found '103|13843x' (token 3)")
    edit_line(folder, 4, lambda t: t[:3] + ["103|1|2"] + t[4:])
    raises_at(folder, SEQ, 4, "found '103|1|2' (token 3)")


def test_item_missing_from_the_map(folder):
    edit_line(folder, 7, lambda t: t[:2] + ["792|1380067200"] + t[3:])
    raises_at(folder, SEQ, 7, f"expected item ids of {ITEM_MAP}", "found item 792 (token 2), not in it")
    edit_line(folder, 7, lambda t: t[:2] + ["0|1380067200"] + t[3:])        # 0 is ABXI's padding
    raises_at(folder, SEQ, 7, "found item 0 (token 2), not in it")


def test_timestamps_going_back(folder):
    line = edit_line(folder, 2, lambda t: t[:5] + [t[5].split("|")[0] + "|1300000000"] + t[6:])
    earlier = line.split(" ")[4].split("|")[1]
    raises_at(folder, SEQ, 2, "expected timestamps in file order (ABXI reads a line's order as its time order)",
              f"found 1300000000 after {earlier} (token 5)")


def test_a_millisecond_timestamp_among_seconds(folder):
    edit_line(folder, 3, lambda t: t[:-1] + [t[-1].split("|")[0] + "|1393804800000"])
    raises_at(folder, SEQ, 3, "expected unix timestamps in seconds", "1393804800000 (token 14)")


def test_user_lines(folder):
    edit_line(folder, 5, lambda t: ["u4"] + t[1:])
    raises_at(folder, SEQ, 5, "expected a user_idx (non-negative integer) first", "found 'u4'")
    edit_line(folder, 5, lambda t: ["3"] + t[1:])
    raises_at(folder, SEQ, 5, "expected each user_idx once", "found user_idx 3 again")
    edit_line(folder, 5, lambda t: ["77"] + t[1:])
    raises_at(folder, SEQ, 5, f"expected a user_idx of {USER_MAP}", "found user_idx 77, not in it")
    edit_line(folder, 5, lambda t: ["4"])
    raises_at(folder, SEQ, 5, "expected item|unix_ts tokens after the user_idx", "found none")


# --- the maps ------------------------------------------------------------------------------------------------

def test_domain_not_0_or_1_names_the_line_and_asin(folder):
    asin = asin_of(folder, 40)
    edit_map(folder, lambda m: m.__setitem__(asin, [40, 2]))
    raises_at(folder, ITEM_MAP, 1, "expected domain 0 (A) or 1 (B)", f"found domain 2 for ASIN '{asin}'")
    # a map written one entry a line: the entry's own line (line 1 is the opening brace)
    edit_map(folder, lambda m: None, one_entry_a_line=True)
    position = list(json.loads((folder / ITEM_MAP).read_text())).index(asin)
    raises_at(folder, ITEM_MAP, position + 2, f"found domain 2 for ASIN '{asin}'")


@pytest.mark.parametrize("value, found", [([40], "[40] for ASIN"), (["40", 0], '["40", 0] for ASIN'),
                                          ([40, True], "[40, true] for ASIN"), (40, "40 for ASIN"),
                                          ({"id": 40, "d": 0}, '{"id": 40, "d": 0} for ASIN')])
def test_entry_not_an_id_domain_pair(folder, value, found):
    asin = asin_of(folder, 40)
    edit_map(folder, lambda m: m.__setitem__(asin, value))
    raises_at(folder, ITEM_MAP, 1, "expected [item_id, domain] (two integers) for each ASIN", found)


def test_repeated_id_and_repeated_asin(folder):
    edit_map(folder, lambda m: m.__setitem__("B0REPEATED", [40, 0]))
    raises_at(folder, ITEM_MAP, 1, "expected each item_id once", "item_id 40 again, for ASIN 'B0REPEATED'")
    # json.load keeps the last of two equal keys; the importer refuses the second, on its own line
    asin_41 = asin_of(folder, 41)
    edit_map(folder, lambda m: m.__setitem__("B0REPEATED", [792, 1]), one_entry_a_line=True)   # line 793 of 794
    text = (folder / ITEM_MAP).read_text()
    (folder / ITEM_MAP).write_text(text.replace('"B0REPEATED"', json.dumps(asin_41)))
    raises_at(folder, ITEM_MAP, 793, "expected each ASIN once", f"ASIN '{asin_41}' again")


def test_domains_that_interleave_by_id_are_fatal_even_when_skipping(folder):
    first = asin_of(folder, 1)
    edit_map(folder, lambda m: m.__setitem__(first, [1, 1]))     # a B item below the A ids
    for skip in (False, True):
        with pytest.raises(DataError, match="above B item_id 1: ABXI would read items of one domain as the other"):
            import_dataset(cfg(folder, f"data.skip_bad_rows={skip}"))


def test_gaps_are_fatal_unless_bad_entries_explain_them(folder):
    edit_map(folder, lambda m: m.pop(asin_of(folder, 100)))
    raises_at(folder, ITEM_MAP, None, "expected item_ids 1..791 without gaps",
              "found 1 ids without an entry, first 100, more than its 0 bad entries")


def test_invalid_json_names_line_and_column(folder):
    text = (folder / ITEM_MAP).read_text()
    (folder / ITEM_MAP).write_text(text[:-1])                   # cut short: no closing brace
    raises_at(folder, ITEM_MAP, 1, f"found invalid JSON: Expecting ',' delimiter (column {len(text)})",
              "the file may be cut short")
    (folder / ITEM_MAP).write_text("[1, 2]")
    raises_at(folder, ITEM_MAP, 1, "found a JSON array")
    (folder / USER_MAP).write_text('{"A1": 0,\n"A2": "1"}')
    (folder / ITEM_MAP).write_text(text)
    raises_at(folder, USER_MAP, 2, "expected a non-negative integer user_idx", "found \"1\" for 'A2'")


# --- skip_bad_rows -------------------------------------------------------------------------------------------

def test_skip_bad_rows_quarantines_and_counts_each(folder):
    asin = asin_of(folder, 40)
    edit_map(folder, lambda m: m.__setitem__(asin, [40, 7]))       # quarantined: item 40 leaves the map
    uses_40 = [n for n, line in enumerate((folder / SEQ).read_text().splitlines(), 1)
               if "40|" in [t[:3] for t in line.split(" ")[1:]]]
    edit_line(folder, 10, lambda t: t[:2] + ["oops"] + t[3:])
    edit_line(folder, 12, lambda t: t[:2] + ["9999|1380067200"] + t[3:])
    ds = import_dataset(cfg(folder, "data.skip_bad_rows=true"))
    rows = ds.quarantine.to_pylist()
    where = [(r["file"].rsplit("/", 1)[-1], r["line"]) for r in rows]
    assert where[0] == (ITEM_MAP, 1) and "found domain 7 for ASIN" in rows[0]["reason"]
    expected_lines = sorted(set(uses_40) | {10, 12})
    assert sorted(line for name, line in where[1:] if name == SEQ) == expected_lines
    assert ds.meta.quarantined_rows == len(rows) == 1 + len(expected_lines)
    # 790 items, still dense; the users of the bad lines are left out, the others kept
    assert ds.meta.n_items == (284, 506) and ds.items.column("item_index").to_pylist() == list(range(790))
    assert ds.split("test").num_rows == 30 - len(expected_lines)
    assert ds.meta.extra["source_files"]["sequences"]["lines"] == 30
    assert ds.meta.extra["source_files"]["item_map"]["bad_entries"] == 1
