"""Type checking of config values against a field's annotation and its bounds (choices, min, max)."""

from __future__ import annotations

import dataclasses
import re
import types
from typing import Any, Literal, Union, get_args, get_origin

from .fields import ConfigError, type_name

# A number as YAML 1.2 (and JSON, and Python) writes it. PyYAML follows YAML 1.1, whose float needs a dot
# ("1.0e-3"): it reads 1e-3, 5E4 or 1e+2 as strings. A float field takes these as the numbers they are.
_YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def _check_type(value: Any, ann: Any, where: str) -> Any:
    """Return ``value`` converted to ``ann`` where the conversion is lossless; else raise."""
    origin = get_origin(ann)
    if ann is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in get_args(ann):
            try:
                return _check_type(value, option, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {type_name(ann)}, found {value!r} ({type(value).__name__})")
    if ann is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, found {value!r}")
    if origin is Literal:
        if value in get_args(ann):
            return value
        raise ConfigError(f"{where}: expected one of {list(get_args(ann))}, found {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, found {value!r} ({type(value).__name__})")
        (item_ann, *_) = get_args(ann) or (Any,)
        return [_check_type(v, item_ann, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, found {value!r} ({type(value).__name__})")
        k_ann, v_ann = get_args(ann) or (Any, Any)
        return {_check_type(k, k_ann, where): _check_type(v, v_ann, f"{where}.{k}") for k, v in value.items()}
    if ann is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected a boolean (true/false), found {value!r} ({type(value).__name__})")
    if ann is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, found {value!r} ({type(value).__name__})")
    if ann is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _YAML12_FLOAT.fullmatch(value.strip()):
            return float(value)
        raise ConfigError(f"{where}: expected a number, found {value!r} ({type(value).__name__})")
    if ann is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, found {value!r} ({type(value).__name__})")
    raise ConfigError(f"{where}: unsupported annotation {ann!r}")


def check_field_value(f: dataclasses.Field, ann: Any, value: Any, where: str) -> Any:
    value = _check_type(value, ann, where)
    meta = f.metadata
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{where}: expected one of {list(meta['choices'])}, found {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if ("min" in meta or "max" in meta) and value != value:   # nan passes every < / > comparison
            raise ConfigError(f"{where}: expected a number in [{meta.get('min', '-inf')}, {meta.get('max', 'inf')}], "
                              f"found nan")
        if "min" in meta and value < meta["min"]:
            raise ConfigError(f"{where}: expected a value >= {meta['min']}, found {value!r}")
        if "max" in meta and value > meta["max"]:
            raise ConfigError(f"{where}: expected a value <= {meta['max']}, found {value!r}")
    return value
