"""Search spaces as data: a YAML file mapping dotted config keys to distributions.

    # tune_spaces/fusion.yaml
    model.fusion: {choice: [early, late]}
    model.text_weight: {uniform: [0.0, 2.0]}
    train.lr: {loguniform: [1.0e-4, 3.0e-3]}

Distributions: ``uniform [lo, hi]``, ``quniform [lo, hi, q]``, ``loguniform [lo, hi]``, ``randint [lo, hi)``,
``choice [a, b, ...]``, and ``grid [a, b, ...]`` (every value, in order, once per sample; a space with a
grid is searched by Tune's seeded variant generator instead of Optuna). Every key must exist in the config tree and every value the distribution can
produce must be valid for that field (type, bounds, choices); errors name the file and the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from llm_emf.config import Config, ConfigError
from llm_emf.config.checks import check_field_value
from llm_emf.config.fields import lookup_field
from llm_emf.config.loader import read_yaml_file, set_value
from llm_emf.config.renamed import current_keys

DISTRIBUTIONS = ("uniform", "quniform", "loguniform", "randint", "choice", "grid")


@dataclass(frozen=True)
class Param:
    key: str
    kind: str
    args: tuple

    def to_tune(self):
        from ray import tune

        if self.kind == "uniform":
            return tune.uniform(*self.args)
        if self.kind == "quniform":
            return tune.quniform(*self.args)
        if self.kind == "loguniform":
            return tune.loguniform(*self.args)
        if self.kind == "randint":
            return tune.randint(*self.args)
        if self.kind == "grid":
            return tune.grid_search(list(self.args))
        return tune.choice(list(self.args))


def _finite(number: int | float) -> bool:
    """A bound Tune can sample from: not nan/inf, and an int small enough to become a float."""
    try:
        return math.isfinite(float(number))
    except OverflowError:
        return False


def _where(path: str, key: str) -> str:
    return f"{path}: {key}"


def _parse_entry(path: str, key: str, spec: Any) -> Param:
    where = _where(path, key)
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{where}: expected one distribution such as {{uniform: [0.0, 1.0]}}, found {spec!r}")
    (kind, args), = spec.items()
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: expected a distribution in {list(DISTRIBUTIONS)}, found '{kind}'")
    if not isinstance(args, list) or not args:
        raise ConfigError(f"{where}: expected a non-empty list of arguments for {kind}, found {args!r}")
    want = {"uniform": 2, "loguniform": 2, "randint": 2, "quniform": 3}.get(kind)
    if want is not None:
        if len(args) != want or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
            raise ConfigError(f"{where}: {kind} expects {want} numbers, found {args!r}")
        if not all(_finite(a) for a in args):
            raise ConfigError(f"{where}: {kind} expects finite numbers, found {args!r}")
        if args[0] >= args[1]:
            raise ConfigError(f"{where}: {kind} expects low < high, found [{args[0]}, {args[1]}]")
        if kind == "quniform" and args[2] <= 0:
            raise ConfigError(f"{where}: quniform expects a step q > 0, found {args[2]}")
        if kind == "loguniform" and args[0] <= 0:
            raise ConfigError(f"{where}: loguniform expects low > 0, found {args[0]}")
    return Param(key, kind, tuple(args))


def _check_against_config(path: str, p: Param) -> None:
    """Every value the distribution can produce must be acceptable to the field."""
    f, ann = lookup_field(Config, p.key, where=path)
    where = _where(path, p.key)
    if p.kind in ("choice", "grid"):
        probes = list(p.args)
    elif p.kind == "randint":
        if not all(isinstance(a, int) for a in p.args[:2]):
            raise ConfigError(f"{where}: randint expects integer bounds, found {list(p.args)}")
        probes = [int(p.args[0]), int(p.args[1]) - 1]
    else:
        lo, hi = float(p.args[0]), float(p.args[1])
        probes = [lo, hi]
        # A continuous distribution produces floats: the field must accept them.
        check_field_value(f, ann, 0.5 * (lo + hi), where)
    for value in probes:
        check_field_value(f, ann, value, where)


def load_space(path: str | Path) -> dict[str, Param]:
    path = Path(path)
    mapping = read_yaml_file(path, "search space")
    if not isinstance(mapping, dict) or not mapping:
        raise ConfigError(f"{path}: expected a mapping of config keys to distributions, found {mapping!r}")
    space = {}
    for key, spec in current_keys([(str(k), v) for k, v in mapping.items()], str(path)):
        param = _parse_entry(str(path), key, spec)
        _check_against_config(str(path), param)
        space[param.key] = param
    return space


def has_grid(space: dict[str, Param]) -> bool:
    return any(p.kind == "grid" for p in space.values())


def n_trials(space: dict[str, Param], num_samples: int) -> int:
    """How many trials a sweep runs: every grid combination once per sample."""
    combos = 1
    for p in space.values():
        if p.kind == "grid":
            combos *= len(p.args)
    return num_samples * combos


def to_param_space(space: dict[str, Param]) -> dict[str, Any]:
    """Ray Tune's param_space. Dots are kept in the keys: trials get ``{'model.n_heads': 2, ...}``."""
    return {key: p.to_tune() for key, p in space.items()}


def apply_params(cfg: Config, params: dict[str, Any]) -> Config:
    """Set sampled values on a config (numbers arrive as numpy/float types from the searchers)."""
    for key, value in current_keys(params.items(), "trial"):    # a sweep resumed from an older version
        f, ann = lookup_field(Config, key)
        if ann is int and isinstance(value, float) and math.isclose(value, round(value)):
            value = int(round(value))
        if hasattr(value, "item"):
            value = value.item()
        set_value(cfg, key, value, where="trial")
    cfg.validate()
    return cfg
