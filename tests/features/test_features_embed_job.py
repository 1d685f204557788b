"""``embed`` end to end on a local Ray with the tiny open_clip config (and the offline MiniLM)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features_fixtures import feature_config
from llm_emf.features.embed import run_embed
from llm_emf.features.enrich import run_enrich
from llm_emf.features.schema import FEATURE_SCHEMA

pytestmark = pytest.mark.integration


def test_embed_end_to_end_counts_bad_images_then_rerun_does_nothing(local_ray, catalog, tmp_path):
    cfg = feature_config(tmp_path)
    first = run_embed(cfg, catalog)
    assert (first.total, first.done, first.skipped_cached) == (8, 8, 0)
    # fixture: Y0 corrupt file, Y1 path that does not exist, Y2 no URI; X3 has no title (raw-title mode)
    assert first.counters["image_unreadable"] == 1 and first.counters["image_missing"] == 2
    assert first.counters["no_text"] == 1
    assert list(first.nodes.values()) == [8]          # every row computed on this machine's one Ray node

    out = pq.read_table(cfg.features.embed.output)
    assert out.schema.equals(FEATURE_SCHEMA) and out.num_rows == 8
    rows = {r["item_id"]: r for r in out.to_pylist()}
    items = pq.read_table(catalog).to_pylist()
    expect_image = [True, True, True, True, False, False, False, True]  # Y3 is a file:// URL
    for item, has_image in zip(items, expect_image):
        r = rows[item["item_id"]]
        assert r["has_image"] is has_image
        assert np.linalg.norm(r["image_embedding"]) == pytest.approx(1.0 if has_image else 0.0, abs=1e-5)
        assert len(r["image_embedding"]) == len(r["text_embedding"]) == 64
        assert r["has_text"] is (item["title"] is not None)
        assert r["text_model"] == r["image_model"] == "open_clip:tiny-clip-64:random(seed=42)"
    problems = pq.read_table(tmp_path / "out" / "features.image_problems.parquet").to_pylist()
    assert sorted(p["status"] for p in problems) == ["missing", "missing", "unreadable"]

    again = run_embed(cfg, catalog)
    assert (again.done, again.skipped_cached) == (0, 8)
    assert pq.read_table(cfg.features.embed.output).sort_by("item_id").equals(out.sort_by("item_id"))

    # fixing the corrupt image re-embeds that item only; the other two problems stay listed
    from features_fixtures import synthetic_image
    corrupt = next(i for i in items if i["image_uri"] and i["image_uri"].endswith("corrupt.jpg"))
    outside, fixed_png = tmp_path / "outside.png", Path(catalog).parent / "fixed.png"
    synthetic_image(outside, 99)
    synthetic_image(fixed_png, 99)
    table = pq.read_table(catalog)

    def point_corrupt_item_at(path):
        uris = [str(path) if u == corrupt["image_uri"] else u for u in table.column("image_uri").to_pylist()]
        pq.write_table(table.set_column(table.schema.get_field_index("image_uri"), table.schema.field("image_uri"),
                                        pa.array(uris, pa.string())), catalog)
    # A local image outside the dataset folder (and features.embed.image_roots) is refused, and listed why.
    point_corrupt_item_at(outside)
    refused = run_embed(cfg, catalog)
    assert (refused.done, refused.counters.get("image_unreadable", 0)) == (1, 1)
    why = [p["error"] for p in pq.read_table(tmp_path / "out" / "features.image_problems.parquet").to_pylist()
           if p["status"] == "unreadable"]
    assert len(why) == 1 and "ImageRefused" in why[0] and "outside.png" in why[0]
    point_corrupt_item_at(fixed_png)
    fixed = run_embed(cfg, catalog)
    assert (fixed.done, fixed.skipped_cached, fixed.counters.get("image_unreadable", 0)) == (1, 7, 0)
    problems = pq.read_table(tmp_path / "out" / "features.image_problems.parquet").to_pylist()
    assert sorted(p["status"] for p in problems) == ["missing", "missing"]
    assert {r["item_id"]: r for r in pq.read_table(cfg.features.embed.output).to_pylist()}[corrupt["item_id"]]["has_image"]


@pytest.mark.slow
def test_embed_reads_enriched_text_with_minilm(local_ray, catalog, tmp_path):
    cfg = feature_config(tmp_path, **{"features.enrich.backend": "none", "features.embed.text_backend": "minilm",
                                      "features.embed.use_images": "false"})
    run_enrich(cfg, catalog, ("Food", "Kitchen"))
    summary = run_embed(cfg, catalog, cfg.features.enrich.output)
    assert summary.done == 8 and summary.counters.get("text_from_title") == 1  # the untitled item
    out = pq.read_table(cfg.features.embed.output).to_pylist()
    for r in out:
        assert r["text_model"] == "sentence-transformers/all-MiniLM-L6-v2" and r["image_model"] is None
        assert r["prompt_version"].startswith("enrich_v1@") and r["has_image"] is False
        assert r["image_embedding"] is None and len(r["text_embedding"]) == 384
    by_id = {r["item_id"]: np.array(r["text_embedding"]) for r in out}
    formula = [by_id[k] for k in list(by_id)[:3]]  # three infant-formula titles vs a whisk
    whisk = [v for k, v in by_id.items() if k not in list(by_id)[:4]][-1]
    assert formula[0] @ formula[1] > formula[0] @ whisk  # a real pretrained encoder groups similar titles
