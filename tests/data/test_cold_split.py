"""data.cold_items: a seeded share of each domain's items withheld from training, every eval case kept."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.compute as pc
import pytest

from llm_emf.cli.main import main as cli_main
from llm_emf.config import load_config
from llm_emf.data.cold import cold_report, trained_items
from llm_emf.data.prepare import prepare_dataset
from llm_emf.data.schema import Dataset

pytestmark = pytest.mark.unit


def _prepare(tmp_path, name, *extra):
    return prepare_dataset(load_config(None, ["data.source=sample", f"data.dataset={tmp_path / name}", *extra]))[0]


def _rows(ds, split):
    t = ds.split(split)
    return list(zip(t.column("user_id").to_pylist(), t.column("items").to_pylist()))


def test_withheld_items_leave_training_and_every_eval_case_stays(tmp_path):
    full = _prepare(tmp_path, "full")
    cold = _prepare(tmp_path, "cold", "data.cold_items=0.1", "seed=7")
    report = json.loads((tmp_path / "cold/dataset.json").read_text())["extra"]["cold_items"]
    withheld = np.array(report["item_index"])
    assert report["withheld"] == [round(0.1 * full.n_x), round(0.1 * full.n_y)]
    assert ((withheld < full.n_x).sum(), (withheld >= full.n_x).sum()) == tuple(report["withheld"])

    train_items = pc.list_flatten(cold.split("train").column("items")).to_numpy()
    assert not np.isin(train_items, withheld).any()
    # Every training sequence keeps the rest of its items, in order.
    for (user, before), (user2, after) in zip(_rows(full, "train"), _rows(cold, "train")):
        assert user == user2 and after == [i for i in before if i not in set(withheld.tolist())]
    before = pc.list_flatten(full.split("train").column("items")).to_numpy()
    removed = before[np.isin(before, withheld)]
    assert report["train_interactions_removed"] == [int((removed < full.n_x).sum()), int((removed >= full.n_x).sum())]
    for split in ("valid", "test"):                       # no case lost, none changed
        assert _rows(cold, split) == _rows(full, split)
        targets = np.array([items[-1] for _, items in _rows(full, split)])
        hit = np.isin(targets, withheld)
        assert report[f"{split}_cases_withheld"] == [int((hit & (targets < full.n_x)).sum()),
                                                     int((hit & (targets >= full.n_x)).sum())]
    assert sum(report["test_cases_withheld"]) > 0
    assert cold.meta.fingerprint != full.meta.fingerprint
    assert not trained_items(cold)[withheld].any()


def test_the_seed_fixes_the_split(tmp_path):
    a = _prepare(tmp_path, "a", "data.cold_items=0.2", "seed=1").meta.extra["cold_items"]["item_index"]
    b = _prepare(tmp_path, "b", "data.cold_items=0.2", "seed=1").meta.extra["cold_items"]["item_index"]
    c = _prepare(tmp_path, "c", "data.cold_items=0.2", "seed=2").meta.extra["cold_items"]["item_index"]
    assert a == b and a != c


def test_a_sequence_made_only_of_withheld_items_is_dropped_and_counted(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluation"))
    from eval_tiny_dataset import make_dataset

    from llm_emf.data.cold import withhold_items

    ds = make_dataset()
    for seed in range(50):                   # a seed that withholds item 6, u4's whole training sequence
        out, report = withhold_items(ds, 0.34, seed)
        if 6 in report["item_index"]:
            break
    assert report["withheld"] == [1, 1]
    assert report["train_sequences_dropped"] >= 1
    assert "u4" not in out.split("train").column("user_id").to_pylist()
    assert out.split("test").num_rows == ds.split("test").num_rows
    with pytest.raises(ValueError, match=r"data.cold_items: expected a fraction in \(0, 1\), found 1.0"):
        withhold_items(ds, 1.0, 0)


def test_stats_reports_what_the_split_touched(tmp_path, capsys):
    _prepare(tmp_path, "cold", "data.cold_items=0.1")
    assert cli_main(["stats", f"data.dataset={tmp_path / 'cold'}", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    ds = Dataset.read(tmp_path / "cold")
    assert stats["withheld"]["withheld"] == ds.meta.extra["cold_items"]["withheld"]
    assert stats["cold"] == cold_report(ds)
    # Cold = in no training sequence: the withheld items plus those that only ever occur in valid/test.
    assert stats["cold"]["items"][0] >= stats["withheld"]["withheld"][0]
    assert cli_main(["stats", f"data.dataset={tmp_path / 'cold'}"]) == 0
    out = capsys.readouterr().out
    assert "withheld for cold-start (data.cold_items=0.1, seed 42): items Food 18 / Kitchen 32" in out
    assert "cold items (in no training sequence): Food " in out
