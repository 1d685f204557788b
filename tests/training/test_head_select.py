"""model.head=select through training: both heads validated every epoch, each domain's best state carries its
head, and test metrics and recommendations use it."""

import json
from pathlib import Path

import pytest

from llm_emf.evaluation import evaluate
from llm_emf.serving.run import load_models
from llm_emf.serving.scoring import make_scorer
from llm_emf.training import train

from train_tiny_dataset import tiny_train_config

pytestmark = pytest.mark.unit


def test_select_records_a_head_per_domain_and_tests_with_it(tmp_path, dataset_dir):
    cfg = tiny_train_config(tmp_path, epochs=3, run_name="select")
    cfg.model.head = "select"
    result = train(cfg)
    saved = json.loads((Path(result.run_dir) / "results.json").read_text())
    heads = {d: b["head"] for d, b in saved["best"].items()}
    assert set(heads) == {"Food", "Kitchen"} and set(heads.values()) <= {"combined", "single"}
    for epoch in result.history:
        assert {epoch["valid_head/Food"], epoch["valid_head/Kitchen"]} <= {0.0, 1.0}
    _, dataset, models = load_models(result.checkpoint)
    for index, name in enumerate(("Food", "Kitchen")):
        model = models[index]
        assert bool(model.head_single[index]) == (heads[name] == "single")
        again = evaluate(make_scorer(model), dataset, "test", cfg)
        assert again.metrics["full"][name] == result.test.metrics["full"][name]


def test_combined_head_trains_as_before(tmp_path, dataset_dir):
    """The default head validates once per epoch and records no head metrics."""
    result = train(tiny_train_config(tmp_path, epochs=1, run_name="combined"))
    assert not any(k.startswith("valid_head/") for k in result.history[0])
    assert {b.get("head") for b in result.best.values()} == {"combined"}
