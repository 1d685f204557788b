"""Prepare = import + (optional) cold-item split + (optional) synthetic images + write the canonical folder with its resolved config.

Both domains must keep items and sequences (validate.check_both_domains): a dataset that lost a domain to
quarantined rows or the recipe stops here, naming the domain, before any stage trains on it.
``dataset.json`` records sequences and people per split (``extra.counts``, people.py). :func:`notes` are the
lines ``llm-emf prepare`` prints for what changed counts without being a bad row (repeated Amazon reviews
dropped, C2DSR users on several lines).

``data.dataset`` is a local folder or an object-store URI (``s3://bucket/prefix``): every write goes through
``llm_emf.files``, never ``pathlib.Path`` (which would turn ``s3://b/x`` into a local ``s3:/b/x``).
"""

from __future__ import annotations

from llm_emf import files
from llm_emf.config import Config, ConfigError, dump_config
from llm_emf.data.cold import withhold_items
from llm_emf.data.importers import import_dataset
from llm_emf.data.people import people_counts
from llm_emf.data.schema import Dataset
from llm_emf.data.stats import compute_stats
from llm_emf.data.synthetic_images import add_synthetic_images
from llm_emf.data.validate import check_both_domains


def prepare_dataset(cfg: Config) -> tuple[Dataset, dict]:
    """Import ``cfg.data.source`` into ``cfg.data.dataset``; returns the dataset and its statistics."""
    output = str(cfg.data.dataset)
    if files.is_file(output):
        raise ConfigError(f"data.dataset: expected a folder for the prepared dataset (created if missing), "
                          f"found the file '{cfg.data.dataset}'")
    ds = import_dataset(cfg.data)
    check_both_domains(ds, ds.meta.source or str(cfg.data.source))
    if cfg.data.cold_items > 0:
        ds, report = withhold_items(ds, cfg.data.cold_items, cfg.seed)
        ds.meta.extra["cold_items"] = report
    ds.meta.extra["counts"] = people_counts(ds)
    if cfg.data.synthetic_images:
        ds = add_synthetic_images(ds, output, cfg.data.image_size, cfg.seed)
    # config.yaml before the tables: Dataset.write puts dataset.json, the folder's "complete" sign, last
    files.write_text(files.join(output, "config.yaml"), dump_config(cfg))
    ds.write(output)
    return ds, compute_stats(ds)


def notes(stats: dict, meta_extra: dict) -> list[str]:
    """What the import did that changes counts without being a bad row: one line each on the screen (the counts
    are in dataset.json)."""
    x, y = stats["domains"]
    out = []
    repeated = (meta_extra.get("recipe") or {}).get("repeated_reviews")
    if repeated and sum(repeated):
        out.append(f"{sum(repeated):,} repeated reviews (same user, item and time as an earlier line) dropped: "
                   f"{x} {repeated[0]:,}, {y} {repeated[1]:,} (dataset.json extra.recipe.repeated_reviews)")
    for f in stats.get("lines_by_file", {}).values():
        if f["users_on_several_lines"]:
            out.append(f"{f['file']}: {f['users_on_several_lines']:,} of {f['users']:,} users are on several lines; "
                       f"each of its {f['cases']:,} lines is its own sequence or case, as C2DSR reads them "
                       "(ids <split>:<user>:<line>)")
    return out
