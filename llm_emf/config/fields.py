"""Declaring config fields (``help_field``, ``section``) and reading a config class back: its dotted keys,
their annotations and ``--help`` text, and a field by dotted key."""

from __future__ import annotations

import dataclasses
import difflib
import textwrap
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """A config file or override is wrong; the message says where and what."""


def help_field(default: Any, help: str, *, choices: tuple | None = None, min: float | None = None,
               max: float | None = None, default_factory: typing.Callable[[], Any] | None = None,
               measured: str | None = None) -> Any:
    """A dataclass field carrying its help text and optional bounds (shown by ``--help``). A list or dict
    default comes from ``default_factory``, with ``default`` None: one of the two, never both.

    ``measured`` marks an ablation or an alternative measured against the default: what it was measured to
    do, in one clause. ``--help`` lists such keys after the others, under a heading of their own."""
    if default_factory is not None and default is not None:
        raise TypeError(f"help_field({default!r}, ...): give default or default_factory, not both")
    meta = {"help": help}
    if measured is not None:
        meta["measured"] = measured
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


def type_name(ann: Any) -> str:
    origin = get_origin(ann)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(ann))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(ann))
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join(type_name(a) for a in get_args(ann) if a is not Ellipsis)}]"
    if ann is type(None):
        return "null"
    return getattr(ann, "__name__", str(ann))


HELP_WIDTH = 110
ADVANCED_HEADING = ("advanced keys: ablations and alternatives measured against the defaults (docs/method.md);\n"
                    "FK = Food-Kitchen, seed 1; valid MRR = full-ranking validation MRR, mean of both domains:")


def _wrapped(text: str) -> str:
    return textwrap.fill(text, width=HELP_WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6,
                         break_on_hyphens=False, break_long_words=False)


def format_help(cfg_cls: type, only_prefixes: tuple[str, ...] | None = None) -> str:
    """Every field as ``key (type, default) help``, the way RecBole documents its YAML; the keys a user sets
    first, then the ``measured`` ones (ablations, rejected alternatives) under :data:`ADVANCED_HEADING`."""
    main, advanced = [], []
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
        entry = f"  {key} ({type_name(ann)}, default {default!r}){extra}\n" + _wrapped(f.metadata.get("help", ""))
        if "measured" in f.metadata:
            advanced.append(entry + "\n" + _wrapped(f"measured: {f.metadata['measured']}"))
        else:
            main.append(entry)
    if advanced:
        main += ["", ADVANCED_HEADING, *advanced]
    return "\n".join(main)


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
