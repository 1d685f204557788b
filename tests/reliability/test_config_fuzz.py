"""Fuzzing the config loader and the search-space loader: any YAML document or override string either
loads into a config whose every value passes its own field check, or ends in a ConfigError."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_emf.config import Config, ConfigError, flatten_config, load_config
from llm_emf.config.checks import check_field_value
from llm_emf.config.fields import all_keys, lookup_field
from llm_emf.tuning.space import load_space

from helpers.fuzz import examples

pytestmark = pytest.mark.unit
KEYS = all_keys(Config)
SECTIONS = sorted({k.rsplit(".", 1)[0] for k in KEYS if "." in k})

# YAML scalars that are known to trip YAML constructors or numeric code: impossible dates, huge ints,
# nan/inf, binary, merge keys, deep nesting.
NASTY = ["2001-13-45", "2001-02-30", "2001-12-14 25:61:00", "1e999", "-.inf", ".nan", "0x1F", "0o17", "1_000",
         "99999999999999999999999999999999999999", "!!binary AAAA", "!!float abc", "!!int 1.5", "~", "[]", "{}",
         "[[[[[[[[[[1]]]]]]]]]]", "<<: {a: 1}", "&a [*a]", "*undefined", "'unterminated", "{a: 1", "true",
         "yes", "0", "-1", "1.5", "null", "é", "\t", ": :", "- - -", "!!python/object:os.system ls"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(NASTY))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=8)
keys = st.one_of(st.sampled_from(KEYS), st.sampled_from(SECTIONS), st.text(max_size=15),
                 st.sampled_from(KEYS).map(lambda k: k + "x"), st.sampled_from(KEYS).map(lambda k: k.upper()))


def nest(flat: dict) -> dict:
    """{'model.n_heads': 2} -> {'model': {'n_heads': 2}} (later keys win over a scalar in the way)."""
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = str(key).split(".")
        for p in parents:
            node = node.setdefault(p, {}) if isinstance(node.get(p), dict) else node.__setitem__(p, {}) or node[p]
        node[leaf] = value
    return out


def assert_type_correct(cfg: Config) -> None:
    for key, value in flatten_config(cfg).items():
        f, ann = lookup_field(Config, key)
        check_field_value(f, ann, value, key)   # raises if the loader let a wrong value through
    cfg.validate()


raw_documents = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(NASTY + ["model:", "  n_heads: 2", "train:", "  lr: 0.1", "- a", "seed: 7", "\t"]),
             max_size=6).map("\n".join),
)
structured_documents = st.dictionaries(keys, values, max_size=4).map(nest).map(
    lambda d: yaml.safe_dump(d, allow_unicode=True))


def load_document(text: str, overrides=()) -> Config | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cfg.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            return load_config(path, overrides)
        except ConfigError as e:
            assert str(e)
            return None


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(raw_documents, structured_documents))
def test_any_yaml_document_loads_type_correct_or_raises_config_error(text):
    cfg = load_document(text)
    if cfg is not None:
        assert_type_correct(cfg)


override_values = st.one_of(st.text(max_size=15), st.sampled_from(NASTY))
overrides = st.one_of(
    st.tuples(keys, override_values).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.text(max_size=25),
)


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(overrides, max_size=3))
def test_any_override_loads_type_correct_or_raises_config_error(texts):
    try:
        cfg = load_config(None, texts)
    except ConfigError as e:
        assert str(e)
        return
    assert_type_correct(cfg)


def test_impossible_date_in_override_and_file_is_a_config_error(tmp_path):
    # YAML reads 2001-13-45 as a timestamp and datetime raises ValueError; the loader must translate it.
    with pytest.raises(ConfigError, match="data.source"):
        load_config(None, ["data.source=2001-13-45"])
    path = tmp_path / "c.yaml"
    path.write_text("seed: 1\ndata:\n  source: 2001-13-45\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.yaml"):
        load_config(path)


def test_nan_for_a_bounded_number_is_a_config_error():
    # .nan passes `value < min` and `value > max` alike; a nan learning rate must not reach training.
    with pytest.raises(ConfigError, match=r"train.lr: expected a number in \[.*\], found nan"):
        load_config(None, ["train.lr=.nan"])


# ---------------------------------------------------------------------------------------------------------
# Search spaces

DIST = st.sampled_from(["uniform", "quniform", "loguniform", "randint", "choice", "grid", "normal", ""])
space_entries = st.one_of(st.dictionaries(DIST, st.one_of(st.lists(scalars, max_size=4), scalars),
                                          min_size=0, max_size=2), scalars)
# Well-formed entries on real keys with hostile numbers: nan, inf, ints too large for a float, q <= 0.
numbers = st.one_of(st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True), st.just(10**400))
numeric_entries = st.tuples(st.sampled_from(["uniform", "quniform", "loguniform", "randint"]),
                            st.lists(numbers, min_size=2, max_size=3)).map(lambda t: {t[0]: t[1]})
space_documents = st.one_of(
    st.dictionaries(keys, space_entries, max_size=3).map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
    st.dictionaries(st.sampled_from(["train.lr", "model.n_heads", "model.text_weight", "train.batch_size"]),
                    numeric_entries, min_size=1, max_size=2).map(yaml.safe_dump),
    raw_documents,
)


@settings(max_examples=examples(250), deadline=None)
@given(space_documents)
def test_any_search_space_loads_checked_params_or_raises_config_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "space.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            space = load_space(path)
        except ConfigError as e:
            assert str(path) in str(e)      # every error names the space file
            return
    assert space
    for key, p in space.items():
        f, ann = lookup_field(Config, key)
        if p.kind in ("choice", "grid"):
            for v in p.args:
                check_field_value(f, ann, v, key)
        else:
            assert all(math.isfinite(float(a)) for a in p.args) and p.args[0] < p.args[1]
            assert p.kind != "quniform" or p.args[2] > 0


@pytest.mark.parametrize("entry, message", [
    ("model.n_heads: {randint: [1.5, .inf]}", "finite numbers"),
    ("model.n_heads: {randint: [.nan, 3]}", "finite numbers"),
    (f"train.lr: {{uniform: [0, {10**400}]}}", "finite numbers"),
    ("train.lr: {quniform: [0.1, 1, 0]}", "step q > 0"),
    ("train.lr: !!float", "not a valid YAML value"),
])
def test_hostile_numbers_in_a_space_are_config_errors_naming_the_key(tmp_path, entry, message):
    path = tmp_path / "space.yaml"
    path.write_text(entry + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as e:
        load_space(path)
    assert "space.yaml" in str(e.value)
