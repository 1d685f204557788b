"""Importers into the canonical dataset, chosen by ``data.format``.

Each importer is ``fn(source: Path, cfg: DataConfig, bad: BadRows) -> Dataset``; :func:`import_dataset`
resolves the source, runs the importer, attaches the quarantined rows and checks the canonical invariants.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Callable

import pyarrow.fs as pafs

from llm_emf import files

from ...config import ConfigError
from ...config.data import DataConfig
from ..schema import SEQUENCE_SCHEMA, DataError, Dataset
from ..textio import BadRows
from ..validate import check_dataset
from .abxi import import_abxi
from .amazon import import_amazon
from .c2dsr import import_c2dsr
from .canonical import import_canonical
from .interactions import import_interactions
from .llmcdsr import import_llmcdsr
from .remote import local_inputs

SAMPLE_NAME = "food_kitchen"


IMPORTERS: dict[str, Callable[[Path, DataConfig, BadRows], Dataset]] = {
    "llmcdsr": import_llmcdsr,
    "c2dsr": import_c2dsr,
    "interactions": import_interactions,
    "amazon": import_amazon,
    "abxi": import_abxi,
    "canonical": import_canonical,
}


def sample_path() -> Path:
    """The bundled real Food-Kitchen slice (LLMCDSR format), found through the installed package."""
    return Path(str(importlib.resources.files("llm_emf") / "sample_data" / SAMPLE_NAME))


def resolve_source(cfg: DataConfig) -> str | Path:
    """The checked source: a local Path, or an object-store URI (a str, never a Path) that exists."""
    if cfg.source == "sample":
        if cfg.format != "llmcdsr":
            raise ConfigError(f"data.source=sample is in the llmcdsr format; found data.format={cfg.format}")
        return sample_path()
    if files.is_remote(cfg.source):
        kind = files.info(cfg.source).type
        found, is_dir = kind != pafs.FileType.NotFound, kind == pafs.FileType.Directory
        path: str | Path = cfg.source
    else:
        path = Path(cfg.source).expanduser()
        found, is_dir = path.exists(), path.is_dir()
    if not found:
        raise DataError(path, None, f"an existing {cfg.format} source (data.source)", "no such file or folder")
    if cfg.format != "interactions" and not is_dir:
        raise DataError(path, None, f"a folder in the {cfg.format} format", "a file")
    return path


def import_dataset(cfg: DataConfig, skip_bad_rows: bool | None = None) -> Dataset:
    """Read ``cfg.source`` in ``cfg.format`` into a checked canonical Dataset (quarantine attached).
    A remote source (or item table) is imported from a local copy; see :mod:`.remote`."""
    if cfg.format not in IMPORTERS:
        raise ConfigError(f"data.format: expected one of {list(IMPORTERS)}, found {cfg.format!r}")
    source = resolve_source(cfg)
    bad = BadRows(cfg.skip_bad_rows if skip_bad_rows is None else skip_bad_rows)
    with local_inputs(cfg) as (local_cfg, names), names.reporting(bad):
        local_source = Path(local_cfg.source) if files.is_remote(source) else source
        ds = IMPORTERS[cfg.format](local_source, local_cfg, bad)
        names.fix_meta(ds.meta)
    if cfg.source == "sample" and not cfg.name:
        ds.meta.name = f"{SAMPLE_NAME}_sample"
    ds = check_dataset(ds, str(source), bad)
    ds.sequences = ds.sequences.cast(SEQUENCE_SCHEMA)   # the canonical importer keeps nulls for the check
    ds.quarantine = bad.table()
    ds.meta.quarantined_rows = len(bad)
    return ds
