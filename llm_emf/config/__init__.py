"""Typed configuration: ``load_config(path, overrides)`` returns a :class:`Config`."""

from .fields import ConfigError, format_help
from .loader import dump_config, flatten_config, save_config
from .loader import load_config as _load
from .redact import redact_uri
from .tree import Config


def load_config(path=None, overrides=()) -> Config:
    return _load(Config, path, overrides)


__all__ = ["Config", "ConfigError", "load_config", "save_config", "dump_config", "flatten_config", "format_help",
           "redact_uri"]
