"""``llm-emf evaluate --run`` of a trained run gives the same evaluation.json with one-item chunks as with one
chunk for the whole domain."""

from __future__ import annotations

import json

import pytest

import llm_emf.model.item_scores as item_scores
from llm_emf.cli.main import main

pytestmark = pytest.mark.integration


def test_evaluation_json_does_not_depend_on_the_chunk_size(trained_run, tmp_path, monkeypatch, capsys):
    run, _ = trained_run
    results = {}
    for name, budget in (("one chunk", 1 << 40), ("one item per chunk", 1), ("three items per chunk", None)):
        if budget is None:           # 3 items of fp32 per row of the largest batch (all test users: < 64)
            monkeypatch.setattr(item_scores, "SCORE_CHUNK_BYTES", 4 * 64 * 3)
            monkeypatch.setattr(item_scores, "MIN_CHUNK_ITEMS", 3)
        else:
            monkeypatch.setattr(item_scores, "SCORE_CHUNK_BYTES", budget)
            monkeypatch.setattr(item_scores, "MIN_CHUNK_ITEMS", 1)
        out = tmp_path / f"{len(results)}.json"
        assert main(["evaluate", "--run", str(run), f"eval.output={out}", "eval.exclude_seen=true"]) == 0
        results[name] = json.loads(out.read_text())
    capsys.readouterr()
    reference = results.pop("one chunk")
    assert reference["splits"]["test"]["metrics"]["full"]            # both protocols were evaluated
    for name, result in results.items():
        assert result == reference, name
