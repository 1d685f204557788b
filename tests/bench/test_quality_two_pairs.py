"""bench/quality/two_pairs.py: the at-or-above-SASRec table and the ablation tables over several pairs."""

from __future__ import annotations

import json

import pytest

from bench.quality import two_pairs

pytestmark = pytest.mark.unit


def _run(variant: str, seed: int, ranks: dict[str, list[int]], valid: float = 0.1) -> dict:
    metrics = {"full": {d: {"MRR": sum(1 / r for r in rs) / len(rs), "NDCG@10": 0.0} for d, rs in ranks.items()}}
    return {"variant": variant, "seed": seed, "wall_s": 1.0, "test": {"metrics": metrics},
            "ranks": {"full": ranks}, "best": {d: {"epoch": 3, "valid_mrr": valid} for d in ranks}}


def _pair(dataset: str, model_ranks: dict, ablation_ranks: dict) -> dict:
    sasrec = {"A": [1, 2, 4, 8], "B": [2, 2, 2, 2]}
    return {"dataset": dataset, "common_overrides": ["x=1"], "commands": ["cmd"],
            "runs": [_run("sasrec", 1, sasrec), _run("id_only", 1, model_ranks),
                     _run("id_only_alt", 1, ablation_ranks)]}


def test_gate_rows_say_where_a_model_is_below_sasrec_and_ablations_sit_side_by_side(tmp_path):
    better = {"A": [1, 1, 2, 4], "B": [1, 2, 2, 2]}       # every case at or above sasrec
    worse = {"A": [2, 3, 5, 9], "B": [2, 2, 2, 2]}        # domain A below, B level
    for name, doc in (("p1", _pair("d1", better, worse)), ("p2", _pair("d2", worse, better))):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    out = tmp_path / "two"
    two_pairs.main(["--out", str(out), "--pair", f"P1={tmp_path / 'p1.json'}", "--pair", f"P2={tmp_path / 'p2.json'}",
                    "--models", "id_only", "--ablations", "id_only_alt", "--bootstrap", "200"])
    doc = json.loads((tmp_path / "two.json").read_text())
    verdict = {(r["pair"], r["domain"]): r["at_or_above"] for r in doc["gate"]}
    assert verdict == {("P1", "A"): True, ("P1", "B"): True, ("P2", "A"): False, ("P2", "B"): True}
    # NDCG@10 of ranks 1, 2, 4, 8 (sasrec, A) vs 2, 3, 5, 9 (worse): the mean difference by hand
    ndcg = lambda r: 1 / __import__("math").log2(r + 1)                          # noqa: E731
    by_hand = sum(ndcg(w) - ndcg(s) for w, s in zip([2, 3, 5, 9], [1, 2, 4, 8])) / 4
    p2a = next(r for r in doc["gate"] if (r["pair"], r["domain"]) == ("P2", "A"))
    assert p2a["diff"] == pytest.approx(by_hand)
    text = (tmp_path / "two.md").read_text()
    assert "| P2 | A | id_only |" in text and "**no**" in text
    assert "| id_only_alt |" in text                                             # one row, all pairs' columns
    assert doc["pairs"]["P1"]["vs_base"]["id_only_alt"]["full"]["A"]["NDCG@10"]["diff"] < 0


def test_validation_table_gives_each_variants_mean_best_validation_mrr_and_its_change_from_the_base(tmp_path):
    ranks = {"A": [1, 2], "B": [2, 2]}
    doc = {"dataset": "d", "common_overrides": [], "commands": ["cmd"],
           "runs": [_run("sasrec", 1, ranks, 0.08), _run("id_only", 1, ranks, 0.10), _run("id_only", 2, ranks, 0.12),
                    _run("id_only_alt", 1, ranks, 0.121)]}
    (tmp_path / "p.json").write_text(json.dumps(doc))
    two_pairs.main(["--out", str(tmp_path / "two"), "--pair", f"P={tmp_path / 'p.json'}", "--models", "id_only",
                    "--ablations", "id_only_alt", "--bootstrap", "50"])
    saved = json.loads((tmp_path / "two.json").read_text())["pairs"]["P"]["validation"]
    assert saved["id_only"]["A"] == pytest.approx(0.11) and saved["sasrec"]["B"] == pytest.approx(0.08)
    text = (tmp_path / "two.md").read_text()
    assert "| id_only | 0.1100 | 0.1100 |" in text                  # the base: value only
    assert "| id_only_alt | 0.1210 (+10.0%) | 0.1210 (+10.0%) |" in text
    assert "| sasrec | 0.0800 (-27.3%) | 0.0800 (-27.3%) |" in text
