"""configs/amazon_demo.yaml end to end: ``llm-emf prepare`` and ``llm-emf stats`` on the bundled synthetic slices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_emf.cli.main import main
from llm_emf.data.schema import Dataset

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "amazon_demo.yaml"


@pytest.mark.parametrize("schema", ["2023", "2018"])
def test_demo_config_prepares_both_schema_slices(tmp_path, capsys, schema):
    out = tmp_path / "ds"
    source = ROOT / "llm_emf" / "sample_data" / f"amazon_{schema}_demo"
    assert main(["prepare", "--config", str(CONFIG), f"data.source={source}", f"data.dataset={out}"]) == 0
    capsys.readouterr()
    ds = Dataset.read(out)
    r = ds.meta.extra["recipe"]
    # numbers of the slice, as SOURCE.md states them; the two schemas carry the same draws
    assert ds.meta.domains == ("Food", "Kitchen") and ds.meta.n_items == (16, 20)
    assert [c["interactions"] for c in r["read"]] == [450, 450]
    assert r["split"]["users"] == 14 and r["split"]["test_cases"] == [14, 14]
    assert ds.meta.extra["items_missing_metadata"] == [1, 1]
    # per-domain cases: each user has one valid and one test case per domain, train keeps the rest
    train_rows = sum(len(s) for s in ds.split("train").column("items").to_pylist())
    assert train_rows == sum(c["interactions"] for c in r["overlap"]) - 4 * 14
    assert main(["stats", "--dataset", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["recipe"]["k_core"] == r["k_core"] and s["items_missing_metadata"] == [1, 1]
    assert main(["stats", "--dataset", str(out)]) == 0
    text = capsys.readouterr().out
    assert "5-core" in text and "users in both domains: 14" in text and "items without metadata" in text
