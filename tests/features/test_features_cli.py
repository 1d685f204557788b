"""The ``llm-emf enrich`` / ``embed`` commands: catalog selection, summaries, clean errors."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from llm_emf.cli.main import main


@pytest.mark.integration
def test_cli_enrich_then_embed_on_a_dataset_folder(local_ray, catalog, tmp_path, capsys):
    out = tmp_path / "out"
    common = [f"features.enrich.output={out / 'e.parquet'}", f"features.embed.output={out / 'f.parquet'}"]
    assert main(["enrich", "--dataset", str(catalog.parent), "features.enrich.backend=none",
                 "--summary-json", str(tmp_path / "s.json"), *common]) == 0
    assert "enrich: 8 items: 8 done, 0 skipped (cached), 0 failed" in capsys.readouterr().out
    assert json.loads((tmp_path / "s.json").read_text())["counters"]["no_title"] == 1
    assert main(["embed", "--items", str(catalog), "features.embed.clip_model=tiny-clip-64",
                 "features.embed.text_backend=clip", *common]) == 0
    printed = capsys.readouterr().out
    assert f"text from: {out / 'e.parquet'}" in printed and "embed: 8 items: 8 done" in printed
    assert pq.read_metadata(out / "f.parquet").num_rows == 8


@pytest.mark.unit
def test_cli_missing_catalog_is_a_clean_error(tmp_path, capsys):
    assert main(["enrich", "--dataset", str(tmp_path / "nowhere"), "features.enrich.backend=none"]) == 2
    err = capsys.readouterr().err
    assert "nowhere/items.parquet: expected an items.parquet catalog" in err and "no such file" in err
    assert main(["embed", "--items", str(tmp_path / "x.parquet"), "features.embed.use_images=false"]) == 2
    assert "x.parquet: expected an items.parquet catalog" in capsys.readouterr().err
