"""Domain names, resolved the same way by every importer and recorded in dataset.json (``extra.domain_names``).

1. ``data.domain_x`` / ``data.domain_y`` when set (both, or neither: one alone is a ConfigError);
2. else what the data says: the folder name (:func:`names_from_folder`), or the values of the interaction
   format's ``domain`` column (interactions.py), or a prepared dataset's ``dataset.json``;
3. else "X" and "Y".

The config has no default pair: a Food/Kitchen default would silently name any other pair Food and Kitchen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ...config import ConfigError
from ...config.data import DataConfig

UNNAMED = ("X", "Y")
FORMAT_TAGS = ("llmcdsr", "c2dsr")
# Folder names that are a pair without a format tag: the bundled sample's (importers.SAMPLE_NAME).
KNOWN_FOLDERS = {"food_kitchen": ("Food", "Kitchen")}
FROM_CONFIG = "config (data.domain_x, data.domain_y)"


@dataclass(frozen=True)
class DomainNames:
    names: tuple[str, str]
    origin: str          # where they came from, recorded as dataset.json extra.domain_names


def configured_names(cfg: DataConfig) -> tuple[str, str] | None:
    """The names set in the config, None when neither is set."""
    x, y = cfg.domain_x.strip(), cfg.domain_y.strip()
    if bool(x) != bool(y):
        given, other = ("data.domain_x", "data.domain_y") if x else ("data.domain_y", "data.domain_x")
        raise ConfigError(f"{other}: expected a name, as {given}={x or y!r} is set (set both or neither), "
                          "found none")
    return (x, y) if x else None


def names_from_folder(name: str) -> tuple[str, str] | None:
    """``Movie-Book`` (C2DSR's and LLMCDSR's naming) -> ("Movie", "Book"); ``llmcdsr_food_kitchen`` or
    ``c2dsr_movie_book`` (a format tag, then two words) -> ("Food", "Kitchen") / ("Movie", "Book"); the
    bundled sample's ``food_kitchen`` -> ("Food", "Kitchen"); anything else -> None. A bare ``<a>_<b>`` is
    not read as a pair: ``plain_sample`` or ``my_data`` would become domains."""
    parts = name.split("-")
    if len(parts) == 2 and all(p.strip() for p in parts):
        return parts[0].strip(), parts[1].strip()
    if name.lower() in KNOWN_FOLDERS:
        return KNOWN_FOLDERS[name.lower()]
    tags = "|".join(FORMAT_TAGS)
    match = re.fullmatch(rf"(?:{tags})_([a-z]+)_([a-z]+)", name, flags=re.IGNORECASE)
    if match:
        return match.group(1).capitalize(), match.group(2).capitalize()
    return None


def resolve_names(cfg: DataConfig, from_data: DomainNames | None) -> DomainNames:
    """Config, else ``from_data``, else X/Y."""
    configured = configured_names(cfg)
    if configured:
        return DomainNames(configured, FROM_CONFIG)
    if from_data is not None:
        return from_data
    return DomainNames(UNNAMED, "unknown: not set in data.domain_x / data.domain_y and not told by the data, "
                                "so named X and Y")


def folder_names(cfg: DataConfig, folder: Path) -> DomainNames:
    """:func:`resolve_names` for the folder formats (LLMCDSR, C2DSR): the data's word is the folder name."""
    names = names_from_folder(folder.name)
    return resolve_names(cfg, DomainNames(names, f"folder name {folder.name!r}") if names else None)
