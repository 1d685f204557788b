"""Load, override, check and save the typed config tree.

Values come from (lowest to highest precedence) the dataclass defaults, a YAML file, and dotted
command-line overrides such as ``model.n_heads=4``. Override values are parsed with
``yaml.safe_load`` (never ``eval``) and then type-checked against the field's annotation.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any, get_origin

import yaml

from .checks import check_field_value
from .fields import ConfigError, all_keys, get_value, lookup_field
from .redact import redact_values
from .renamed import current_keys


def set_value(cfg: Any, key: str, value: Any, where: str = "override") -> None:
    f, ann = lookup_field(type(cfg), key, where)
    value = check_field_value(f, ann, value, f"{where}: {key}")
    *parents, leaf = key.split(".")
    obj = cfg
    for part in parents:
        obj = getattr(obj, part)
    setattr(obj, leaf, value)


# ---------------------------------------------------------------------------------------------
# YAML in and out

def _is_dict_field(cfg_cls: type, key: str) -> bool:
    try:
        _, ann = lookup_field(cfg_cls, key)
    except ConfigError:
        return False
    return get_origin(ann) is dict or ann is dict


def _flatten(cfg_cls: type, mapping: dict, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys. The value of a dict-typed field (e.g. engine kwargs) stays one value."""
    out: dict[str, Any] = {}
    for k, v in mapping.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and not _is_dict_field(cfg_cls, key):
            out.update(_flatten(cfg_cls, v, key + "."))
        else:
            out[key] = v
    return out


def apply_mapping(cfg: Any, mapping: dict, source: str) -> None:
    """Apply a nested mapping (from YAML, or a config saved by a run) to ``cfg``; keys are checked one by one,
    old names of renamed keys read as the new ones (renamed.py)."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, found {type(mapping).__name__}")
    for key, value in current_keys(_flatten(type(cfg), mapping).items(), source):
        set_value(cfg, key, value, where=source)


def safe_yaml_load(text: str, where: str) -> Any:
    """``yaml.safe_load`` whose every failure is a ConfigError naming ``where`` (and the line when known).

    PyYAML's constructors raise plain ValueError / IndexError on scalars such as ``2001-13-45``, ``!!int``
    or ``!!float x``, and RecursionError on absurdly deep nesting; a user must see a config error, not a trace.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = str(getattr(e, "problem", None) or e)
        tag = re.search(r"constructor for the tag '([^']*)'", problem)
        if tag:      # !!python/object and friends: a safe loader builds plain values only, never objects
            shown = tag[1].replace("tag:yaml.org,2002:", "!!")
            raise ConfigError(f"{where}{line}: expected plain YAML (mappings, lists, strings, numbers, booleans), "
                              f"found the tag '{shown}', which is never loaded ("
                              + ("it would build Python objects or run code)" if "python/" in shown else
                                 "not a tag safe YAML knows)")) from None
        raise ConfigError(f"{where}{line}: not valid YAML: {problem}") from None
    except (ValueError, IndexError, TypeError, OverflowError, RecursionError) as e:
        raise ConfigError(f"{where}: not a valid YAML value ({e.__class__.__name__}: {e})") from None


LINE_BREAKS = {"\n": "\\n", "\r": "\\r", "\x85": "\\x85", "\u2028": "\\u2028", "\u2029": "\\u2029"}   # YAML's


def parse_override(text: str) -> tuple[str, Any]:
    """``'model.n_heads=4'`` -> ``('model.n_heads', 4)`` using YAML scalars, never eval.

    An override is one line: YAML would fold a line break inside it into a space (``a\\nb`` -> ``'a b'``),
    silently changing a path or a name, so a line break is refused."""
    breaks = [(i, c) for i, c in enumerate(text) if c in LINE_BREAKS]
    if breaks:
        i, c = breaks[0]
        raise ConfigError(f"override {text!r}: expected key=value on one line, found a line break ({LINE_BREAKS[c]}) "
                          f"at character {i + 1}, which YAML would fold into a space; remove it, or put a value "
                          f"that must hold line breaks in a --config YAML file (e.g. as a '|' block)")
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected key=value (e.g. model.n_heads=4)")
    key, raw = text.split("=", 1)
    key = key.strip()
    value = safe_yaml_load(raw, f"override '{text}'") if raw.strip() else ""
    return key, value


def read_yaml_file(path: str | Path, what: str) -> Any:
    """A YAML file's content (a local path or an object-store URI, e.g. a sweep's best_config.yaml in its
    bucket); a missing file, non-UTF-8 bytes or bad YAML is a ConfigError naming it."""
    from llm_emf import files

    path = str(path)
    if not files.is_file(path):
        raise ConfigError(f"{what} '{path}' does not exist")
    try:
        text = files.read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: expected UTF-8 text, found undecodable byte at offset {e.start}") from None
    return safe_yaml_load(text, str(path))


def load_config(cfg_cls: type, path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Any:
    """Build a config: defaults, then the YAML file at ``path``, then the dotted ``overrides``."""
    cfg = cfg_cls()
    if path is not None:
        mapping = read_yaml_file(path, "config file") or {}
        apply_mapping(cfg, mapping, str(path))
    for key, value in current_keys([parse_override(text) for text in overrides], "override"):
        set_value(cfg, key, value, where="override")
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def flatten_config(cfg: Any) -> dict[str, Any]:
    """``{'model.n_heads': 1, ...}``: what MLflow logs as params and results.json records. A record, so
    passwords in URIs are redacted (``http://user:***@host``); pass ``to_dict(cfg)`` to other processes."""
    return {k: redact_values(get_value(cfg, k)) for k in all_keys(type(cfg))}


def dump_config(cfg: Any) -> str:
    """The config as YAML, passwords in URIs redacted: a saved config.yaml never holds a secret."""
    return yaml.safe_dump(redact_values(to_dict(cfg)), sort_keys=False)


def save_config(cfg: Any, path: str | Path) -> str:
    """Write the resolved config as YAML to a local path or an object-store URI; returns where."""
    from llm_emf import files

    files.write_text(path, dump_config(cfg))
    return str(path)


def from_dict(cfg_cls: type, mapping: dict, source: str = "mapping") -> Any:
    cfg = cfg_cls()
    apply_mapping(cfg, mapping, source)
    return cfg
