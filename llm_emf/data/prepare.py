"""Prepare = import + (optional) cold-item split + (optional) synthetic images + write the canonical folder with its resolved config.

``data.output`` is a local folder or an object-store URI (``s3://bucket/prefix``): every write goes through
``llm_emf.files``, never ``pathlib.Path`` (which would turn ``s3://b/x`` into a local ``s3:/b/x``).
"""

from __future__ import annotations

from llm_emf import files
from llm_emf.config import Config, ConfigError, dump_config
from llm_emf.data.cold import withhold_items
from llm_emf.data.importers import import_dataset
from llm_emf.data.schema import Dataset
from llm_emf.data.stats import compute_stats
from llm_emf.data.synthetic_images import add_synthetic_images


def prepare_dataset(cfg: Config) -> tuple[Dataset, dict]:
    """Import ``cfg.data.source`` into ``cfg.data.output``; returns the dataset and its statistics."""
    output = str(cfg.data.output)
    if files.is_file(output):
        raise ConfigError(f"data.output: expected a folder for the prepared dataset (created if missing), "
                          f"found the file '{cfg.data.output}'")
    ds = import_dataset(cfg.data)
    if cfg.data.cold_items > 0:
        ds, report = withhold_items(ds, cfg.data.cold_items, cfg.seed)
        ds.meta.extra["cold_items"] = report
    if cfg.data.synthetic_images:
        ds = add_synthetic_images(ds, output, cfg.data.image_size, cfg.seed)
    # config.yaml before the tables: Dataset.write puts dataset.json, the folder's "complete" sign, last
    files.write_text(files.join(output, "config.yaml"), dump_config(cfg))
    ds.write(output)
    return ds, compute_stats(ds)
