"""bench/features/enrich_novelty.py: copied words and new words by hand, and one run over a small enriched
table through the real all-MiniLM-L6-v2 (installed offline)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.features import enrich_novelty as novelty

pytestmark = pytest.mark.unit


def test_copied_share_and_new_words_by_hand():
    # words of 4+ letters without labels ("Key terms") and function words: cast, iron, skillet, seasoned,
    # great, searing, steak (7); in the title: cast, iron, skillet (3)
    row = novelty.item_novelty("Lodge Cast Iron Skillet, 10 inch",
                               "Key terms: cast iron skillet, seasoned; great for searing steak")
    assert row["copied"] == pytest.approx(3 / 7)
    assert row["new_words"] == ["great", "searing", "seasoned", "steak"]
    assert novelty.item_novelty("Tea", None) == {"copied": None, "new_words": []}


@pytest.mark.integration          # loads the sentence encoder: ~10 s on 2 cores
def test_whole_script_on_a_small_table(tmp_path):
    titles = ["Lodge Cast Iron Skillet", "Organic Green Tea, 100 bags"]
    enrichments = ["Lodge Cast Iron Skillet", "Summary: a calming drink rich in antioxidants for mornings"]
    path = tmp_path / "enriched.parquet"
    pq.write_table(pa.table({"item_id": ["a", "b", "c"], "title": [*titles, "Kettle"],
                             "enrichment": [*enrichments, None],          # not enriched: left out
                             "text": [f"{t} {e}" for t, e in zip(titles, enrichments)] + ["Kettle"]}), path)
    out = tmp_path / "novelty"
    summary = novelty.main(["--enriched", str(path), "--out", str(out)])
    doc = json.loads(out.with_suffix(".json").read_text())
    assert summary["items"] == 2 and [r["item_id"] for r in doc["items"]] == ["a", "b"]
    copy_row, new_row = doc["items"]
    assert copy_row["copied"] == 1.0 and copy_row["new_words"] == []
    assert new_row["copied"] == 0.0 and "antioxidants" in new_row["new_words"]
    # repeating the title moves its vector less than adding new content does
    assert copy_row["cosine"] > new_row["cosine"] and copy_row["cosine"] > 0.9
    assert f"Command: `python -m bench.features.enrich_novelty --enriched {path}" in out.with_suffix(".md").read_text()
