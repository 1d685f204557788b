"""Prepare = import + (optional) cold-item split + (optional) synthetic images + write the canonical folder with its resolved config."""

from __future__ import annotations

from pathlib import Path

from llm_emf.config import Config, ConfigError, save_config
from llm_emf.data.cold import withhold_items
from llm_emf.data.importers import import_dataset
from llm_emf.data.schema import Dataset
from llm_emf.data.stats import compute_stats
from llm_emf.data.synthetic_images import add_synthetic_images


def prepare_dataset(cfg: Config) -> tuple[Dataset, dict]:
    """Import ``cfg.data.source`` into ``cfg.data.output``; returns the dataset and its statistics."""
    if Path(cfg.data.output).exists() and not Path(cfg.data.output).is_dir():
        raise ConfigError(f"data.output: expected a folder for the prepared dataset (created if missing), "
                          f"found the file '{cfg.data.output}'")
    ds = import_dataset(cfg.data)
    if cfg.data.cold_items > 0:
        ds, report = withhold_items(ds, cfg.data.cold_items, cfg.seed)
        ds.meta.extra["cold_items"] = report
    output = Path(cfg.data.output)
    if cfg.data.synthetic_images:
        ds = add_synthetic_images(ds, output, cfg.data.image_size, cfg.seed)
    ds.write(output)
    save_config(cfg, output / "config.yaml")
    return ds, compute_stats(ds)
