"""Load, override, check and save the typed config tree.

Values come from (lowest to highest precedence) the dataclass defaults, a YAML file, and dotted
command-line overrides such as ``model.n_heads=4``. Override values are parsed with
``yaml.safe_load`` (never ``eval``) and then type-checked against the field's annotation.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from .redact import redact_values


class ConfigError(ValueError):
    """A config file or override is wrong; the message says where and what."""


def help_field(default: Any, help: str, *, choices: tuple | None = None, min: float | None = None,
               max: float | None = None, default_factory: typing.Callable[[], Any] | None = None) -> Any:
    """A dataclass field carrying its help text and optional bounds (shown by ``--help``). A list or dict
    default comes from ``default_factory``, with ``default`` None: one of the two, never both."""
    if default_factory is not None and default is not None:
        raise TypeError(f"help_field({default!r}, ...): give default or default_factory, not both")
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if min is not None:
        meta["min"] = min
    if max is not None:
        meta["max"] = max
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type, help: str) -> Any:
    """A nested config section."""
    return dataclasses.field(default_factory=cls, metadata={"help": help})


# ---------------------------------------------------------------------------------------------
# Introspection

def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def iter_fields(cfg_cls: type, prefix: str = "") -> typing.Iterator[tuple[str, dataclasses.Field, Any]]:
    """Yield ``(dotted_key, field, annotation)`` for every leaf field of a config class."""
    hints = _hints(cfg_cls)
    for f in dataclasses.fields(cfg_cls):
        ann = hints[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(ann):
            yield from iter_fields(ann, key + ".")
        else:
            yield key, f, ann


def all_keys(cfg_cls: type) -> list[str]:
    return [k for k, _, _ in iter_fields(cfg_cls)]


def _type_name(ann: Any) -> str:
    origin = get_origin(ann)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(ann))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(ann))
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in get_args(ann) if a is not Ellipsis)}]"
    if ann is type(None):
        return "null"
    return getattr(ann, "__name__", str(ann))


def format_help(cfg_cls: type, only_prefixes: tuple[str, ...] | None = None) -> str:
    """Every field as ``key (type, default) help``, the way RecBole documents its YAML."""
    lines = []
    defaults = cfg_cls()
    for key, f, ann in iter_fields(cfg_cls):
        if only_prefixes and not any(key == p or key.startswith(p + ".") for p in only_prefixes):
            continue
        default = get_value(defaults, key)
        extra = ""
        if "choices" in f.metadata:
            extra += f" choices={list(f.metadata['choices'])}"
        if "min" in f.metadata or "max" in f.metadata:
            extra += f" range=[{f.metadata.get('min', '-inf')}, {f.metadata.get('max', 'inf')}]"
        lines.append(f"  {key} ({_type_name(ann)}, default {default!r}){extra}\n      {f.metadata.get('help', '')}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Type checking

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
        raise ConfigError(f"{where}: expected {_type_name(ann)}, found {value!r} ({type(value).__name__})")
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


# ---------------------------------------------------------------------------------------------
# Access by dotted key

def _unknown_key(key: str, cfg_cls: type, where: str) -> ConfigError:
    keys = all_keys(cfg_cls)
    sections = sorted({k.rsplit(".", 1)[0] for k in keys if "." in k})
    close = difflib.get_close_matches(key, keys + sections, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"{where}: unknown config key '{key}'{hint}")


def lookup_field(cfg_cls: type, key: str, where: str = "config") -> tuple[dataclasses.Field, Any]:
    """The field and annotation for a dotted leaf key, or a ConfigError suggesting the closest key."""
    cls = cfg_cls
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            raise _unknown_key(key, cfg_cls, where)
        ann = _hints(cls)[part]
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(ann):
                raise ConfigError(f"{where}: '{key}' is a section, not a value; set one of its keys, "
                                  f"e.g. '{key}.{dataclasses.fields(ann)[0].name}'")
            return fields[part], ann
        if not dataclasses.is_dataclass(ann):
            raise _unknown_key(key, cfg_cls, where)
        cls = ann
    raise _unknown_key(key, cfg_cls, where)


def get_value(cfg: Any, key: str) -> Any:
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


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
    """Apply a nested mapping (from YAML) to ``cfg``; keys are checked one by one."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, found {type(mapping).__name__}")
    for key, value in _flatten(type(cfg), mapping).items():
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
        raise ConfigError(f"{where}{line}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    except (ValueError, IndexError, TypeError, OverflowError, RecursionError) as e:
        raise ConfigError(f"{where}: not a valid YAML value ({e.__class__.__name__}: {e})") from None


def parse_override(text: str) -> tuple[str, Any]:
    """``'model.n_heads=4'`` -> ``('model.n_heads', 4)`` using YAML scalars, never eval."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected key=value (e.g. model.n_heads=4)")
    key, raw = text.split("=", 1)
    key = key.strip()
    value = safe_yaml_load(raw, f"override '{text}'") if raw.strip() else ""
    return key, value


def read_yaml_file(path: str | Path, what: str) -> Any:
    """A YAML file's content; a missing file, non-UTF-8 bytes or bad YAML is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} '{path}' does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: expected UTF-8 text, found undecodable byte at offset {e.start}") from None
    return safe_yaml_load(text, str(path))


def load_config(cfg_cls: type, path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Any:
    """Build a config: defaults, then the YAML file at ``path``, then the dotted ``overrides``."""
    cfg = cfg_cls()
    if path is not None:
        mapping = read_yaml_file(path, "config file") or {}
        apply_mapping(cfg, mapping, str(path))
    for text in overrides:
        key, value = parse_override(text)
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


def save_config(cfg: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_config(cfg), encoding="utf-8")
    return path


def from_dict(cfg_cls: type, mapping: dict, source: str = "mapping") -> Any:
    cfg = cfg_cls()
    apply_mapping(cfg, mapping, source)
    return cfg
