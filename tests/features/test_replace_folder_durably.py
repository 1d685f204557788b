"""jobs.durable.replace_folder_durably: a finished folder replaces the old one whole, after every file in it
has been flushed (the converted-model cache trusts file names once they are in place)."""

import os

import pytest

from llm_emf.jobs import durable

pytestmark = pytest.mark.unit


def test_a_folder_is_flushed_file_by_file_then_replaces_the_old_one(tmp_path, monkeypatch):
    old = tmp_path / "model"
    old.mkdir()
    (old / "stale.bin").write_bytes(b"old")
    new = tmp_path / "model.partial"
    (new / "sub").mkdir(parents=True)
    (new / "weights.safetensors").write_bytes(b"w" * 10)
    (new / "sub" / "tokenizer.json").write_text("{}")
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(durable.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                         real_fsync(fd)))
    durable.replace_folder_durably(new, old)
    assert sorted(p.name for p in old.rglob("*")) == ["sub", "tokenizer.json", "weights.safetensors"]
    assert not new.exists() and (old / "weights.safetensors").read_bytes() == b"w" * 10
    # every file and folder of the new tree, before the rename (still under .partial), then the parent after it
    assert {str(new / "weights.safetensors"), str(new / "sub" / "tokenizer.json"), str(new / "sub"),
            str(new)} <= set(synced)
    assert synced[-1] == str(tmp_path)
