"""Prepare with data.dataset and data.source on an object store (a real S3 API: moto server, tests/helpers/s3.py).

The prepared folder read back from the bucket equals a local prepare; synthetic images are objects; a remote
source imports like a local one and every error, warning, quarantined row and meta field names the s3:// URI,
never the temporary local copy; nothing lands in the working directory (``Path("s3://b")`` would make ``s3:/b``).
"""

from __future__ import annotations

import shutil

import pytest

from llm_emf import files
from llm_emf.cli.main import main
from llm_emf.config import ConfigError, load_config
from llm_emf.data.importers import import_dataset
from llm_emf.data.prepare import prepare_dataset
from llm_emf.data.schema import DataError, Dataset
from llm_emf.data.synthetic_images import draw_item_image
from llm_emf.data.textio import TruncatedFileWarning

pytestmark = [pytest.mark.cluster, pytest.mark.integration]

DATASET_FILES = ["config.yaml", "dataset.json", "items.parquet", "sequences.parquet"]


@pytest.fixture
def cwd(empty_cwd):
    return empty_cwd


def data_cfg(*overrides: str):
    return load_config(None, list(overrides)).data


def prepared(*overrides: str):
    return prepare_dataset(load_config(None, list(overrides)))[0]


def keys(s3_server, uri: str) -> list[str]:
    """The object keys under ``uri`` (s3://bucket/prefix), relative to the prefix."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return [k[len(prefix) + 1:] for k in s3_server.keys(bucket, prefix)]


def assert_same_dataset(a: Dataset, b: Dataset) -> None:
    assert a.meta.fingerprint == b.meta.fingerprint
    assert a.items.equals(b.items) and a.sequences.equals(b.sequences)


def test_prepare_sample_into_bucket_reads_back_like_local(s3_bucket, s3_server, cwd, tmp_path):
    local = prepared("data.source=sample", f"data.dataset={tmp_path / 'local'}")
    out = f"{s3_bucket}/prep"
    remote = prepared("data.source=sample", f"data.dataset={out}")
    assert sorted(keys(s3_server, out)) == DATASET_FILES          # no quarantine.parquet when nothing is bad
    back = Dataset.read(out)
    assert_same_dataset(back, Dataset.read(tmp_path / "local"))
    assert back.meta == local.meta == remote.meta
    assert f"dataset: {out}" in files.read_text(f"{out}/config.yaml")
    again = import_dataset(data_cfg("data.format=canonical", f"data.source={out}"))   # a prepared folder as source
    assert again.meta.fingerprint == local.meta.fingerprint and again.meta.source == local.meta.source
    assert list(cwd.iterdir()) == []


def test_synthetic_images_are_objects(s3_bucket, s3_server, cwd, capsys):
    out = f"{s3_bucket}/prep"
    assert main(["prepare", "data.source=sample", f"data.dataset={out}", "data.synthetic_images=true",
                 "data.image_size=16"]) == 0
    printed = capsys.readouterr().out
    assert f"into {out}:" in printed and f"synthetic images under {out}/images" in printed
    items = Dataset.read(out).items
    uris = items.column("image_uri").to_pylist()
    assert uris == [f"{out}/images/{i}.png" for i in items.column("item_index").to_pylist()]
    assert sorted(keys(s3_server, out)) == sorted(DATASET_FILES + [u.removeprefix(f"{out}/") for u in uris])
    first = items.slice(0, 1).to_pylist()[0]
    assert files.read_bytes(uris[0]) == draw_item_image(first["item_id"], first["domain"], first["title"], 16,
                                                       load_config(None, []).seed)
    assert list(cwd.iterdir()) == []


def test_remote_source_prepares_like_local(s3_bucket, sample_dir, cwd, tmp_path):
    source = f"{s3_bucket}/raw/food_kitchen"
    files.upload(sample_dir, source)
    local_copy = shutil.copytree(sample_dir, tmp_path / "food_kitchen")
    local = prepared(f"data.source={local_copy}", f"data.dataset={tmp_path / 'a'}")
    remote = prepared(f"data.source={source}", f"data.dataset={s3_bucket}/prep")
    assert_same_dataset(remote, local)
    assert remote.meta.source == source and remote.meta.name == local.meta.name == "food_kitchen"
    assert "llm-emf-in-" not in files.read_text(f"{s3_bucket}/prep/dataset.json")
    assert list(cwd.iterdir()) == []


def test_remote_interactions_file_and_item_table(s3_bucket, fixtures_dir):
    folder = fixtures_dir / "interactions_afk_mini"
    for name in ("interactions.csv", "items.csv"):
        files.upload(folder / name, f"{s3_bucket}/afk/{name}")
    local = import_dataset(data_cfg("data.format=interactions", f"data.source={folder / 'interactions.csv'}",
                                    f"data.items={folder / 'items.csv'}"))
    remote = import_dataset(data_cfg("data.format=interactions", f"data.source={s3_bucket}/afk/interactions.csv",
                                     f"data.items={s3_bucket}/afk/items.csv"))
    assert local.meta.extra["items_file"] == str(folder / "items.csv")
    assert remote.meta.extra["items_file"] == f"{s3_bucket}/afk/items.csv"
    assert remote.meta.source == f"{s3_bucket}/afk/interactions.csv" and remote.meta.name == "interactions"
    assert remote.items.equals(local.items) and remote.sequences.equals(local.sequences)
    with pytest.raises(DataError) as info:     # a missing remote item table: the importer's own error, named
        import_dataset(data_cfg("data.format=interactions", f"data.source={s3_bucket}/afk/interactions.csv",
                                f"data.items={s3_bucket}/afk/nowhere.csv"))
    assert info.value.file == f"{s3_bucket}/afk/nowhere.csv" and "no such file" in str(info.value)


def test_bad_line_in_remote_source_names_the_uri(s3_bucket, s3_server, plain_sample, tmp_path):
    path = plain_sample / "train_A.txt"
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(3, b"77\t1,2,175\n")                      # line 4: a domain-B item in the A file
    path.write_bytes(b"".join(lines))
    source = f"{s3_bucket}/raw"
    files.upload(plain_sample, source)
    with pytest.raises(DataError) as info:
        import_dataset(data_cfg(f"data.source={source}"))
    assert (info.value.file, info.value.line) == (f"{source}/train_A.txt", 4)
    assert str(info.value).startswith(f"{source}/train_A.txt, line 4: expected only domain A items")

    out = f"{s3_bucket}/prep"
    ds = prepared(f"data.source={source}", f"data.dataset={out}", "data.skip_bad_rows=true")
    assert ds.meta.quarantined_rows == 1
    quarantine = Dataset.read(out).quarantine.to_pylist()
    assert [(r["file"], r["line"]) for r in quarantine] == [(f"{source}/train_A.txt", 4)]
    assert "quarantine.parquet" in keys(s3_server, out)

    path.write_bytes(b"".join(lines[:3] + lines[4:]))      # fixed: a rewrite drops the old quarantine
    files.upload(path, f"{source}/train_A.txt")
    assert prepared(f"data.source={source}", f"data.dataset={out}").meta.quarantined_rows == 0
    assert "quarantine.parquet" not in keys(s3_server, out) and Dataset.read(out).quarantine is None


def test_cut_remote_file_warning_names_the_uri(s3_bucket, plain_sample):
    path = plain_sample / "valid.txt"
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    files.upload(plain_sample, f"{s3_bucket}/raw")
    with pytest.warns(TruncatedFileWarning) as caught:
        import_dataset(data_cfg(f"data.source={s3_bucket}/raw"))
    messages = [str(w.message) for w in caught if issubclass(w.category, TruncatedFileWarning)]
    assert messages and all(m.startswith(f"{s3_bucket}/raw/valid.txt: line ") for m in messages), messages


def test_missing_remote_source_and_dataset_name_the_uri(s3_bucket, cwd):
    with pytest.raises(DataError) as info:
        import_dataset(data_cfg(f"data.source={s3_bucket}/nowhere"))
    assert info.value.file == f"{s3_bucket}/nowhere" and "no such file or folder" in str(info.value)
    files.write_text(f"{s3_bucket}/afile", "x")
    with pytest.raises(DataError, match=f"^{s3_bucket}/afile: expected a folder in the llmcdsr format"):
        import_dataset(data_cfg(f"data.source={s3_bucket}/afile"))
    with pytest.raises(ConfigError, match=f"found the file '{s3_bucket}/afile'"):
        prepared("data.source=sample", f"data.dataset={s3_bucket}/afile")
    with pytest.raises(DataError) as info:
        Dataset.read(f"{s3_bucket}/nowhere")
    assert info.value.file == f"{s3_bucket}/nowhere/items.parquet" and "llm-emf prepare" in str(info.value)
    files.write_text(f"{s3_bucket}/broken/items.parquet", "not parquet")
    files.write_text(f"{s3_bucket}/broken/sequences.parquet", "not parquet")
    files.write_text(f"{s3_bucket}/broken/dataset.json", "{}")
    with pytest.raises(DataError, match=f"^{s3_bucket}/broken/items.parquet: expected a readable Parquet file"):
        Dataset.read(f"{s3_bucket}/broken")
    assert list(cwd.iterdir()) == []
