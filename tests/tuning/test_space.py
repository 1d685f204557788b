"""Search-space files are data, validated against the config tree."""

from pathlib import Path

import pytest

from llm_emf.config import Config, ConfigError
from llm_emf.tuning.space import apply_params, load_space

pytestmark = pytest.mark.unit
SPACES = Path(__file__).resolve().parents[2] / "tune_spaces"


@pytest.mark.parametrize("name", ["fusion", "attention", "optim"])
def test_shipped_spaces_load(name):
    space = load_space(SPACES / f"{name}.yaml")
    assert space, name


def _space(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("model.n_head: {choice: [1, 2]}\n", r"space.yaml: unknown config key 'model.n_head'; did you mean 'model.n_heads'"),
    ("model.dropout: {uniform: [0.0, 1.5]}\n", r"space.yaml: model.dropout: expected a value <= 0.9, found 1.5"),
    ("model.n_heads: {uniform: [1, 4]}\n", r"space.yaml: model.n_heads: expected an integer, found 2.5"),
    ("model.fusion: {choice: [early, middle]}\n", r"model.fusion: expected one of \['early', 'late'\], found 'middle'"),
    ("train.lr: {loguniform: [0.0, 0.1]}\n", r"train.lr: loguniform expects low > 0"),
    ("train.lr: {uniform: [0.1, 0.01]}\n", r"train.lr: uniform expects low < high"),
    ("train.lr: {gaussian: [0.1, 0.01]}\n", r"train.lr: expected a distribution in"),
    ("train.lr: 0.1\n", r"train.lr: expected one distribution"),
    ("model: {choice: [1]}\n", r"'model' is a section"),
    ("- a\n- b\n", r"expected a mapping of config keys"),
])
def test_bad_space_names_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_space(_space(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_space(tmp_path / "none.yaml")


def test_apply_params_coerces_searcher_types():
    import numpy as np

    cfg = apply_params(Config(), {"model.n_blocks": np.int64(3), "train.lr": np.float64(0.002),
                                  "model.fusion": "late", "model.n_heads": 2.0})
    assert cfg.model.n_blocks == 3 and type(cfg.model.n_blocks) is int
    assert cfg.train.lr == 0.002 and cfg.model.fusion == "late" and cfg.model.n_heads == 2
