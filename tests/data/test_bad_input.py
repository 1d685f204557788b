"""Bad input never changes data silently: mixed time units, negative times, files cut short, empty required
files, and CSV that only a real CSV parser reads right (quoted newlines, a BOM, old-Mac line endings, NUL)."""

from __future__ import annotations

import shutil

import pytest

from llm_emf.config import load_config
from llm_emf.data.importers import import_dataset
from llm_emf.data.importers.interactions import read_item_table
from llm_emf.data.schema import DataError
from llm_emf.data.textio import BadRows, TruncatedFileWarning

pytestmark = pytest.mark.unit


def data_cfg(*overrides: str):
    return load_config(None, list(overrides)).data


@pytest.fixture
def c2dsr(tmp_path, fixtures_dir):
    return shutil.copytree(fixtures_dir / "c2dsr_fk_mini", tmp_path / "c2dsr")


def c2dsr_cfg(folder, *overrides):
    return data_cfg("data.format=c2dsr", f"data.source={folder}", *overrides)


ITEMS = "item,domain,title\na,Food,Apple\nb,Food,Bread\nk,Kitchen,Knife\n"
LOG = "user,item,domain,timestamp\nu1,a,Food,100\nu1,b,Food,200\nu1,k,Kitchen,300\nu2,k,Kitchen,150\n" \
      "u2,a,Food,250\nu2,b,Food,350\n"


@pytest.fixture
def log_files(tmp_path):
    (tmp_path / "items.csv").write_text(ITEMS)
    (tmp_path / "log.csv").write_text(LOG)
    return tmp_path


def log_cfg(folder, *overrides):
    return data_cfg("data.format=interactions", f"data.source={folder / 'log.csv'}",
                    f"data.items={folder / 'items.csv'}", *overrides)


def raises_at(cfg, path, line, *fragments) -> DataError:
    with pytest.raises(DataError) as info:
        import_dataset(cfg)
    assert (info.value.file, info.value.line) == (str(path), line), str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return info.value


# --- point 3: targets never change without a word ----------------------------------------------------------

def token_at(line: str, k: int) -> tuple[str, str]:
    item, ts, *_ = line.split("\t")[2 + k].split("|")
    return item, ts


def test_c2dsr_millisecond_timestamp_among_seconds(c2dsr):
    path = c2dsr / "validdata_new.txt"
    lines = path.read_text().splitlines()
    item, ts = token_at(lines[2], 0)      # in seconds; * 1000 would make it the line's last = its target
    lines[2] = lines[2].replace(f"{item}|{ts}|", f"{item}|{int(ts) * 1000}|", 1)
    path.write_text("\n".join(lines) + "\n")
    raises_at(c2dsr_cfg(c2dsr), path, 3, "expected unix timestamps in seconds, like most of the file",
              f"found {int(ts) * 1000} (token 1), which looks like milliseconds")
    ds = import_dataset(c2dsr_cfg(c2dsr, "data.skip_bad_rows=true"))
    assert ds.split("valid").num_rows == 5 and [r["line"] for r in ds.quarantine.to_pylist()] == [3]
    assert "looks like milliseconds" in ds.quarantine.column("reason")[0].as_py()


def test_c2dsr_negative_timestamp(c2dsr):
    path = c2dsr / "testdata_new.txt"
    lines = path.read_text().splitlines()
    item, ts = token_at(lines[1], 1)
    lines[1] = lines[1].replace(f"{item}|{ts}|", f"{item}|-{ts}|", 1)
    path.write_text("\n".join(lines) + "\n")
    raises_at(c2dsr_cfg(c2dsr), path, 2, "tokens item|unix_ts|date of non-negative integers",
              "with a negative timestamp")


def test_csv_millisecond_timestamp_among_seconds(log_files):
    (log_files / "log.csv").write_text(LOG.replace("u2,a,Food,250", "u2,a,Food,1700000000250"))
    raises_at(log_cfg(log_files), log_files / "log.csv", 6, "unix timestamps in seconds",
              "1700000000250, which looks like milliseconds")
    ds = import_dataset(log_cfg(log_files, "data.skip_bad_rows=true"))
    assert [r["line"] for r in ds.quarantine.to_pylist()] == [6]
    assert ds.meta.extra["short_users"]["first"] == ["u2"]           # left with 2 interactions, and counted
    assert ds.meta.extra["time_unit"] == "seconds"


def test_csv_log_all_in_milliseconds_is_converted_to_seconds(log_files):
    (log_files / "log.csv").write_text("user,item,domain,timestamp\nu1,a,Food,1700000000999\n"
                                       "u1,b,Food,1700000000001\nu1,k,Kitchen,1700000005000\n")
    ds = import_dataset(log_cfg(log_files))
    test = ds.split("test").to_pylist()[0]
    assert test["items"] == [1, 0, 2] and test["timestamps"] == [1700000000, 1700000000, 1700000005]
    assert ds.meta.extra["time_unit"] == "milliseconds"


def test_a_file_cut_mid_number_warns(c2dsr, log_files):
    path = c2dsr / "testdata_new.txt"
    path.write_text(path.read_text()[:-30])            # the last line, cut mid-token
    with pytest.warns(TruncatedFileWarning, match=rf"{path}: line 6, the last line, has no line ending"):
        import_dataset(c2dsr_cfg(c2dsr, "data.skip_bad_rows=true"))
    (log_files / "log.csv").write_text(LOG.rstrip("\n"))
    with pytest.warns(TruncatedFileWarning, match=r"log\.csv: line 7"):
        import_dataset(log_cfg(log_files))


# --- point 4: an empty required file is an error ---------------------------------------------------------

@pytest.mark.parametrize("name", ["train_A.txt", "valid.txt", "test.txt", "items_B.tsv"])
def test_llmcdsr_empty_required_file(plain_sample, name):
    (plain_sample / name).write_text("" if name.endswith(".txt") else "item_idx\tasin\ttitle\n")
    raises_at(data_cfg(f"data.source={plain_sample}", "data.skip_bad_rows=true"), plain_sample / name, None,
              "found an empty file")


@pytest.mark.parametrize("name", ["testdata_new.txt", "traindata_new.txt", "Alist.txt"])
def test_c2dsr_empty_file(c2dsr, name):
    (c2dsr / name).write_text("\n")                 # a missing traindata_new.txt is fine, an empty one is not
    raises_at(c2dsr_cfg(c2dsr, "data.skip_bad_rows=true"), c2dsr / name, None, "found an empty file")


def test_csv_empty_log(log_files):
    (log_files / "log.csv").write_text("")
    raises_at(log_cfg(log_files), log_files / "log.csv", None,
              "expected a header row with columns user, item, domain, timestamp, found an empty file")


# --- point 7: CSV read by a CSV parser ---------------------------------------------------------------------

def test_quoted_newline_is_one_field_and_later_lines_keep_their_numbers(log_files):
    (log_files / "items.csv").write_text('item,domain,title\na,Food,"Apple\npie, 2 pack"\nb,Food,Bread\n'
                                         "k,Kitchen,Knife\nz,Toys,Ball\n")
    bad = BadRows(skip=True)
    x, _, _ = read_item_table(log_files / "items.csv", ("Food", "Kitchen"), bad)
    assert x.titles == ["Apple\npie, 2 pack", "Bread"]
    assert [(r["line"], r["content"]) for r in bad.rows] == [(6, "z,Toys,Ball")]   # physical line 6


def test_unclosed_quote_names_the_line_it_opened_on(log_files):
    (log_files / "log.csv").write_text(LOG.replace("u1,b,Food,200", 'u1,b,"Food,200'))
    raises_at(log_cfg(log_files), log_files / "log.csv", 3, 'expected a closing quote (") for every quoted field',
              "found a quoted field opened on line 3 still open at the end of the file (line 7)")


def test_quote_closed_lines_later_names_the_lines_it_swallowed(log_files):
    (log_files / "log.csv").write_text(LOG.replace("u1,b,Food,200", 'u1,b,"Food,200')
                                       .replace("u2,b,Food,350", 'u2,b,Food,350"'))
    raises_at(log_cfg(log_files), log_files / "log.csv", 3, "expected 4 comma-separated fields",
              "found 3 in one record over lines 3-7 (an unclosed quote?)")


def test_byte_order_mark_is_not_part_of_a_value(log_files, c2dsr):
    (log_files / "log.csv").write_text("\ufeff" + LOG, encoding="utf-8")
    ds = import_dataset(log_cfg(log_files))
    assert sorted(ds.split("test").column("user_id").to_pylist()) == ["u1", "u2"]
    path = c2dsr / "validdata_new.txt"
    path.write_text("\ufeff" + path.read_text(), encoding="utf-8")
    assert import_dataset(c2dsr_cfg(c2dsr)).split("valid").column("user_id")[0].as_py() == "valid:7"


def test_old_mac_line_endings(log_files):
    clean = import_dataset(log_cfg(log_files))
    (log_files / "log.csv").write_bytes(LOG.replace("\n", "\r").encode())
    (log_files / "items.csv").write_bytes(ITEMS.replace("\n", "\r").encode())
    ds = import_dataset(log_cfg(log_files))
    assert ds.sequences.equals(clean.sequences) and ds.items.equals(clean.items)


def test_nul_byte_is_a_bad_row(log_files):
    (log_files / "log.csv").write_text(LOG.replace("u2,k,Kitchen,150", "u\x002,k,Kitchen,150"))
    raises_at(log_cfg(log_files), log_files / "log.csv", 5, "expected text without NUL bytes",
              "a NUL byte at column 2")
    (log_files / "items.csv").write_text(ITEMS.replace("Bread", "Bre\x00ad"))
    bad = BadRows(skip=True)
    x, _, _ = read_item_table(log_files / "items.csv", ("Food", "Kitchen"), bad)
    assert x.item_ids == ["a"] and [r["line"] for r in bad.rows] == [3]
    assert bad.rows[0]["content"] == "b,Food,Bre\\0ad"


# --- issue 24: old-Mac (CR-only) line endings in the line readers ------------------------------------------------

def to_cr(path) -> None:
    path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r"))


def test_cr_only_files_read_line_by_line_in_every_format(plain_sample, c2dsr, tmp_path, fixtures_dir):
    """Before: a CR-only train_A.txt was one line ("found 5473 fields" on the full release)."""
    clean = import_dataset(data_cfg(f"data.source={plain_sample}"))
    to_cr(plain_sample / "train_A.txt")
    to_cr(plain_sample / "items_B.tsv")
    ds = import_dataset(data_cfg(f"data.source={plain_sample}"))
    assert ds.sequences.equals(clean.sequences) and ds.items.equals(clean.items)

    clean = import_dataset(c2dsr_cfg(c2dsr))
    to_cr(c2dsr / "validdata_new.txt")
    assert import_dataset(c2dsr_cfg(c2dsr)).sequences.equals(clean.sequences)

    amazon = shutil.copytree(fixtures_dir / "amazon_2023_mini", tmp_path / "amazon")
    cfg = data_cfg("data.format=amazon", f"data.source={amazon}", "data.amazon.k_core=2")
    clean = import_dataset(cfg)
    to_cr(amazon / "Food.jsonl")
    assert import_dataset(cfg).sequences.equals(clean.sequences)


def test_cr_only_file_keeps_line_numbers_and_the_cut_warning(plain_sample):
    path = plain_sample / "train_A.txt"
    lines = path.read_text().splitlines()
    lines.insert(2, "77\t1,oops")
    path.write_bytes("\r".join(lines).encode() + b"\r")
    raises_at(data_cfg(f"data.source={plain_sample}"), path, 3, "expected integer item ids", "'oops'")
    del lines[2]
    path.write_bytes("\r".join(lines).encode())                         # no final line ending
    with pytest.warns(TruncatedFileWarning, match=rf"line {len(lines)}, the last line"):
        import_dataset(data_cfg(f"data.source={plain_sample}"))


def test_a_carriage_return_inside_a_line_is_named_in_the_message(plain_sample):
    path = plain_sample / "train_overlap.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:4] + [lines[4] + "\r" + lines[5]] + lines[6:]) + "\n")
    raises_at(data_cfg(f"data.source={plain_sample}"), path, 5, "expected 2 tab-separated fields",
              "found 3 fields (the line holds 1 carriage return(s) (\\r): a file with mixed line endings")
