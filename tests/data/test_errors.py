"""Every error path names the file and the 1-based line; --skip-bad-rows quarantines exactly the bad rows."""

from __future__ import annotations

import gzip
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_emf.config import ConfigError, load_config
from llm_emf.data.importers import import_dataset
from llm_emf.data.schema import DataError

pytestmark = pytest.mark.unit


def data_cfg(*overrides: str):
    return load_config(None, list(overrides)).data


def insert_line(path, at: int, text: str | bytes) -> None:
    """Insert ``text`` so that it becomes 1-based line ``at`` of ``path``."""
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(at - 1, (text.encode() if isinstance(text, str) else text) + b"\n")
    path.write_bytes(b"".join(lines))


def expect_error(cfg, path, line, *fragments) -> DataError:
    with pytest.raises(DataError) as info:
        import_dataset(cfg)
    message = str(info.value)
    where = f"{path}, line {line}" if line is not None else str(path)
    assert message.startswith(where), message
    assert (info.value.file, info.value.line) == (str(path), line)
    for fragment in fragments:
        assert fragment in message, message
    return info.value


# --- LLMCDSR -------------------------------------------------------------------------------------

@pytest.mark.parametrize("stem, at, text, fragments", [
    ("train_overlap", 3, "17 1,2,3", ("2 tab-separated fields", "found 1")),
    ("valid", 5, "900\t1,2,x", ("integer item ids", "'x'")),
    ("test", 2, "901\t1,2,500", ("item ids in [0, 500)", "found 500")),
    ("train_A", 4, "77\t1,2,175", ("only domain A items ([0, 175))", "item 175 of domain B")),
    ("train_B", 1, "78\t175,3", ("only domain B items ([175, 500))", "item 3 of domain A")),
    ("train_B", 2, "79\t", ("at least 1 item ids", "found 0")),
    ("test", 3, "902\t7", ("at least 2 item ids",)),
])
def test_llmcdsr_bad_sequence_line(plain_sample, stem, at, text, fragments):
    path = plain_sample / f"{stem}.txt"
    insert_line(path, at, text)
    expect_error(data_cfg(f"data.source={plain_sample}"), path, at, *fragments)


def test_llmcdsr_duplicate_user_in_a_file(plain_sample):
    path = plain_sample / "valid.txt"
    user = path.read_text().splitlines()[0].split("\t")[0]
    insert_line(path, 4, f"{user}\t1,2,3")
    expect_error(data_cfg(f"data.source={plain_sample}"), path, 4, "each user once per file", f"user {user} again")


def test_llmcdsr_duplicate_item_ids(plain_sample):
    path = plain_sample / "items_B.tsv"
    asin = (plain_sample / "items_A.tsv").read_text().splitlines()[1].split("\t")[1]
    lines = path.read_text().splitlines()
    lines[3] = "\t".join([lines[3].split("\t")[0], asin, "same asin as A's first item"])
    path.write_text("\n".join(lines) + "\n")
    expect_error(data_cfg(f"data.source={plain_sample}"), path, 4, "each item id (asin) once", f"{asin} again")


def test_llmcdsr_duplicate_item_idx(plain_sample):
    path = plain_sample / "items_A.tsv"
    insert_line(path, 3, "0\tNEWASIN\ta title")
    expect_error(data_cfg(f"data.source={plain_sample}"), path, 3, "each item_idx once", "item_idx 0 again")


def test_non_utf8_line(plain_sample):
    path = plain_sample / "items_B.tsv"
    insert_line(path, 6, b"7\tB00BADBYTE\tCaf\xe9 mug")
    expect_error(data_cfg(f"data.source={plain_sample}"), path, 6, "expected UTF-8 text", "byte 0xe9 at column 17")


def test_missing_files(plain_sample):
    (plain_sample / "num.txt").unlink()
    expect_error(data_cfg(f"data.source={plain_sample}"), plain_sample / "num.txt", None,
                 "the file num.txt (or num.txt.gz)", "no such file")
    with pytest.raises(DataError, match="no such file or folder"):
        import_dataset(data_cfg(f"data.source={plain_sample / 'nowhere'}"))


def test_num_txt_malformed(plain_sample):
    (plain_sample / "num.txt").write_text("175\nmany\n")
    expect_error(data_cfg(f"data.source={plain_sample}"), plain_sample / "num.txt", 2, "a non-negative item count")


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("num, where, fragments", [
    # |A| too small: items_A.tsv's rows 170-174 are beyond it, and every B id (|A| + local) would shift by 5
    ("170\n325\n", ("items_A.tsv", "first idx 170"), ("an item_idx in [0, 170) (num.txt: |A| = 170)",
                                                      "item_idx 170: num.txt and items_A.tsv disagree",
                                                      "fatal even with skip_bad_rows")),
    # |A| too large: 5 rows missing at the end of items_A.tsv, and B ids would shift the other way
    ("180\n325\n", ("items_A.tsv", None), ("rows up to item_idx 179 (num.txt: |A| = 180)",
                                            "rows up to item_idx 174 only: 5 missing at the end, more than its 0 "
                                            "bad rows",
                                            "fatal even with skip_bad_rows")),
    ("175\n300\n", ("items_B.tsv", "first idx 300"), ("an item_idx in [0, 300) (num.txt: |B| = 300)",)),
])
def test_llmcdsr_num_txt_that_disagrees_with_an_item_table_stops_even_when_skipping(plain_sample, skip, num, where,
                                                                                    fragments):
    """Issue 24: with |A| 8661 -> 8600 and --skip-bad-rows, 47,498 sequences pointed at other products."""
    (plain_sample / "num.txt").write_text(num)
    path = plain_sample / where[0]
    line = None
    if where[1]:
        idx = int(where[1].split()[-1])
        line = next(n for n, text in enumerate(path.read_text().splitlines(), start=1)
                    if text.split("\t")[0] == str(idx))
    expect_error(data_cfg(f"data.source={plain_sample}", f"data.skip_bad_rows={skip}"), path, line, *fragments)


def test_llmcdsr_a_bad_last_item_row_is_still_a_placeholder_when_skipping(plain_sample):
    path = plain_sample / "items_A.tsv"
    lines = path.read_text().splitlines()
    assert lines[-1].startswith("174\t")
    path.write_text("\n".join(lines[:-1] + ["174\t\tno asin"]) + "\n")
    ds = import_dataset(data_cfg(f"data.source={plain_sample}", "data.skip_bad_rows=true"))
    assert ds.items.column("item_id")[174].as_py() == "A#174" and ds.meta.n_items == (175, 325)
    assert [r["line"] for r in ds.quarantine.to_pylist()] == [len(lines), 0]     # the row, then "no row for 174"


@pytest.mark.parametrize("fmt, name", [("llmcdsr", "train_A.txt"), ("c2dsr", "validdata_new.txt")])
def test_a_plain_file_beside_a_gzip_twin_is_refused(plain_sample, c2dsr_copy, fmt, name):
    """Issue 24: train_A.txt next to a different train_A.txt.gz: the plain one was read without a word."""
    folder = plain_sample if fmt == "llmcdsr" else c2dsr_copy
    text = (folder / name).read_text()
    (folder / f"{name}.gz").write_bytes(gzip.compress("\n".join(text.splitlines()[:3]).encode() + b"\n"))
    for skip in (False, True):
        expect_error(data_cfg(f"data.format={fmt}", f"data.source={folder}", f"data.skip_bad_rows={skip}"),
                     folder / name, None, f"expected one file {name} or {name}.gz",
                     f"found 2: ['{name}', '{name}.gz'] (they may differ")


# --- C2DSR ---------------------------------------------------------------------------------------

@pytest.fixture
def c2dsr_copy(tmp_path, fixtures_dir):
    return shutil.copytree(fixtures_dir / "c2dsr_fk_mini", tmp_path / "c2dsr")


def test_c2dsr_bad_token_and_missing_files(c2dsr_copy):
    path = c2dsr_copy / "testdata_new.txt"
    insert_line(path, 2, "99\t3\t1|100|x|\t5|oops|y|")
    expect_error(data_cfg("data.format=c2dsr", f"data.source={c2dsr_copy}"), path, 2,
                 "tokens item|unix_ts|date", "token '5|oops|y|'")
    path.unlink()
    (c2dsr_copy / "validdata_new.txt").unlink()
    expect_error(data_cfg("data.format=c2dsr", f"data.source={c2dsr_copy}"), c2dsr_copy, None,
                 "at least one of traindata_new.txt, validdata_new.txt, testdata_new.txt")
    (c2dsr_copy / "Blist.txt").unlink()
    expect_error(data_cfg("data.format=c2dsr", f"data.source={c2dsr_copy}"), c2dsr_copy / "Blist.txt", None)


def test_c2dsr_item_out_of_range(c2dsr_copy):
    path = c2dsr_copy / "validdata_new.txt"
    insert_line(path, 6, "98\t3\t1|100|x|\t141|200|y|")
    expect_error(data_cfg("data.format=c2dsr", f"data.source={c2dsr_copy}", "data.skip_bad_rows=true"), path, 6,
                 "item ids in [0, 141)", "found item 141")      # fatal even when skipping: ids may be shifted


# --- interactions ------------------------------------------------------------------------------------

@pytest.fixture
def log_files(tmp_path):
    (tmp_path / "items.csv").write_text("item,domain,title\na,Food,Apple\nb,Food,Bread\nk,Kitchen,Knife\n")
    (tmp_path / "log.csv").write_text("user,item,domain,timestamp\nu1,a,Food,1\nu1,b,Food,2\nu1,k,Kitchen,3\n")
    return tmp_path


def log_cfg(folder):
    return data_cfg("data.format=interactions", f"data.source={folder / 'log.csv'}",
                    f"data.items={folder / 'items.csv'}")


@pytest.mark.parametrize("text, fragments", [
    ("u2,z,Food,4", ("an item listed in items.csv", "unknown item 'z'")),
    ("u2,k,Food,4", ("domain 'Kitchen' (item k in items.csv)", "'Food'")),
    ("u2,a,Food,yesterday", ("an integer unix timestamp", "'yesterday'")),
    ("u2,a,Food", ("4 comma-separated fields", "found 3")),
])
def test_interactions_bad_log_row(log_files, text, fragments):
    insert_line(log_files / "log.csv", 3, text)
    expect_error(log_cfg(log_files), log_files / "log.csv", 3, *fragments)


def test_interactions_item_table_errors(log_files):
    insert_line(log_files / "items.csv", 4, "a,Food,Apple again")
    expect_error(log_cfg(log_files), log_files / "items.csv", 4, "each item once", "item a again")
    (log_files / "items.csv").write_text("item,domain\na,Food\n")
    expect_error(log_cfg(log_files), log_files / "items.csv", 1, "columns item, domain, title", "missing title")
    with pytest.raises(ConfigError, match="data.items"):
        import_dataset(data_cfg("data.format=interactions", f"data.source={log_files / 'log.csv'}"))


# --- canonical: timestamps must not go backwards ------------------------------------------------------

def test_canonical_timestamps_backwards(tmp_path, fixtures_dir):
    import_dataset(data_cfg("data.format=c2dsr", f"data.source={fixtures_dir / 'c2dsr_fk_mini'}")).write(tmp_path)
    table = pq.read_table(tmp_path / "sequences.parquet")
    stamps = table.column("timestamps").to_pylist()
    stamps[2] = list(reversed(stamps[2]))
    table = table.set_column(3, "timestamps", pa.array(stamps, pa.list_(pa.int64())))
    pq.write_table(table, tmp_path / "sequences.parquet")
    expect_error(data_cfg("data.format=canonical", f"data.source={tmp_path}"), tmp_path / "sequences.parquet", 3,
                 "non-decreasing timestamps", "at position 2")


# --- skip_bad_rows: every bad row quarantined, every good row kept -------------------------------------

def test_skip_bad_rows_loses_no_good_row(plain_sample):
    clean = import_dataset(data_cfg(f"data.source={plain_sample}"))
    injected = [("train_A.txt", 2, "77\t1,2,175"), ("train_overlap.txt", 5, "nonsense"),
                ("valid.txt", 1, "900\t1,2,x"), ("items_B.tsv", 3, b"7\tB0\t\xff")]
    for name, at, text in injected:
        insert_line(plain_sample / name, at, text)
    with pytest.raises(DataError):
        import_dataset(data_cfg(f"data.source={plain_sample}"))
    ds = import_dataset(data_cfg(f"data.source={plain_sample}", "data.skip_bad_rows=true"))
    assert ds.sequences.equals(clean.sequences) and ds.items.equals(clean.items)
    quarantined = sorted((r["file"], r["line"]) for r in ds.quarantine.to_pylist())
    assert quarantined == sorted((str(plain_sample / name), at) for name, at, _ in injected)
    assert ds.meta.quarantined_rows == 4
    assert "nonsense" in {r["content"] for r in ds.quarantine.to_pylist()}
