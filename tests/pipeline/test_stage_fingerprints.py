"""Never stale: a stage's key follows its input files and its code, and a skipped stage says why it holds."""

from __future__ import annotations

import gzip
import os
import shutil

import pytest

from llm_emf.config import load_config
from llm_emf.data.schema import Dataset
from llm_emf.pipeline import fingerprint
from llm_emf.pipeline.stages import run_stages
from llm_emf.pipeline.workflow import build_stages
from llm_emf.storage import Storage

pytestmark = pytest.mark.unit


def _prepare(source, storage, logs):
    cfg = load_config(None, [f"data.source={source}", f"pipeline.storage={storage}", "pipeline.stages=[prepare]"])
    summary = run_stages(cfg, build_stages(cfg), Storage(str(storage)), log=logs.append)
    return summary["prepare"]


def test_a_source_file_cut_short_is_prepared_again_not_served_stale(tmp_path, sample_dir):
    source, storage, logs = tmp_path / "source", tmp_path / "runs", []
    shutil.copytree(sample_dir, source)
    first = _prepare(source, storage, logs)
    assert not first["skipped"]
    again = _prepare(source, storage, logs)
    assert again["skipped"]
    # the skip line says what was compared: config, code and the input files' digest
    digest = fingerprint.input_fingerprint(source)["digest"]
    assert "input files unchanged" in logs[-1] and digest in logs[-1] and "code " in logs[-1]

    lines = gzip.decompress((source / "train_A.txt.gz").read_bytes()).splitlines(keepends=True)
    (source / "train_A.txt.gz").write_bytes(gzip.compress(b"".join(lines[:10])))
    cut = _prepare(source, storage, logs)
    assert not cut["skipped"] and cut["fingerprint"] != first["fingerprint"]
    [old, new] = sorted((storage / "prepare").iterdir(), key=lambda p: p.stat().st_mtime)
    assert Dataset.read(new).split("train").num_rows < Dataset.read(old).split("train").num_rows


def test_large_files_are_fingerprinted_by_size_time_and_sampled_content(tmp_path, monkeypatch):
    monkeypatch.setattr(fingerprint, "FULL_HASH_BYTES", 4096)
    monkeypatch.setattr(fingerprint, "SAMPLE_BYTES", 256)
    path = tmp_path / "reviews.jsonl"
    data = bytearray(os.urandom(16384))
    path.write_bytes(data)
    os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    base = fingerprint.input_fingerprint(path)

    def changed(edit) -> bool:
        new = bytearray(data)
        edit(new)
        path.write_bytes(new)
        os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))   # the time kept: content only
        return fingerprint.input_fingerprint(path)["digest"] != base["digest"]

    assert changed(lambda b: b.__setitem__(8192, b[8192] ^ 1))          # inside the middle sample
    assert changed(lambda b: b.__setitem__(16383, b[16383] ^ 1))        # inside the last sample
    assert changed(lambda b: b.extend(b"more"))                         # a new size
    assert not changed(lambda b: b.__setitem__(2000, b[2000] ^ 1))      # between samples, same size and time:
    path.write_bytes(data)                                               # the documented blind spot ...
    assert fingerprint.input_fingerprint(path)["digest"] != base["digest"]   # ... which a new time closes


def test_code_fingerprint_follows_the_stage_code_only(tmp_path, monkeypatch):
    package = tmp_path / "llm_emf"
    for rel in ("config/a.py", "data/importer.py", "features/embed.py", "files.py"):
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        (package / rel).write_text(f"# {rel}\n")
    monkeypatch.setattr(fingerprint, "PACKAGE", package)
    fingerprint.code_fingerprint.cache_clear()
    try:
        data_before = fingerprint.code_fingerprint(("data",))
        features_before = fingerprint.code_fingerprint(("features",))
        (package / "data" / "importer.py").write_text("# fixed importer\n")
        fingerprint.code_fingerprint.cache_clear()
        assert fingerprint.code_fingerprint(("data",)) != data_before
        assert fingerprint.code_fingerprint(("features",)) == features_before
        (package / "config" / "a.py").write_text("# shared by every stage\n")
        fingerprint.code_fingerprint.cache_clear()
        assert fingerprint.code_fingerprint(("features",)) != features_before
    finally:
        fingerprint.code_fingerprint.cache_clear()


def test_the_key_hashes_input_content_not_where_it_was_read(tmp_path, sample_dir, monkeypatch):
    """A Ray job reads the bundled sample from its own working_dir copy, at a new path per upload."""
    from llm_emf.data import importers
    from llm_emf.pipeline.stages import plan

    cfg = load_config(None, ["data.source=sample", "pipeline.stages=[prepare]"])
    here = plan(cfg, build_stages(cfg), Storage(str(tmp_path))).keys["prepare"]
    shutil.copytree(sample_dir, tmp_path / "copy" / "food_kitchen")
    monkeypatch.setattr(importers, "sample_path", lambda: tmp_path / "copy" / "food_kitchen")
    assert plan(cfg, build_stages(cfg), Storage(str(tmp_path))).keys["prepare"] == here
