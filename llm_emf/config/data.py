"""Config section: where data comes from and where the canonical dataset goes."""

from __future__ import annotations

from dataclasses import dataclass

from .loader import help_field


@dataclass
class DataConfig:
    format: str = help_field("llmcdsr", "(str) importer for data.source: llmcdsr, c2dsr, interactions, or canonical "
                             "(an already prepared dataset folder)",
                             choices=("llmcdsr", "c2dsr", "interactions", "canonical"))
    source: str = help_field("sample", "(str) input folder or file; 'sample' means the bundled Food-Kitchen sample")
    items: str = help_field("", "(str) interactions format: the item table (CSV or Parquet: item,domain,title"
                            "[,image_uri]; its two domain values name the domains unless data.domain_x/_y are set); "
                            "c2dsr: an item-metadata CSV (id,title[,attributes,...]) instead of the folder's items.csv")
    output: str = help_field("runs/dataset", "(str) folder the canonical dataset is written to")
    name: str = help_field("", "(str) dataset name recorded in dataset.json; defaults to the source folder name")
    domain_x: str = help_field("", "(str) name of domain X (the LLMCDSR / C2DSR 'A' domain); empty: from the data "
                               "(folder name such as Movie-Book, or the interactions domain column), else 'X'")
    domain_y: str = help_field("", "(str) name of domain Y (the LLMCDSR / C2DSR 'B' domain); set both or neither; "
                               "empty: from the data like domain_x, else 'Y'")
    skip_bad_rows: bool = help_field(False, "(bool) quarantine malformed rows to quarantine.parquet instead of "
                                     "stopping at the first one")
    synthetic_images: bool = help_field(False, "(bool) draw a deterministic synthetic product image per item and set "
                                        "image_uri to it (exercises the image path where no real images exist)")
    min_interactions: int = help_field(3, "(int) interactions format: users with fewer interactions are left out "
                                       "(counted in dataset.json); 3 gives non-empty train/valid/test", min=3)
    cold_items: float = help_field(0.0, "(float) fraction of each domain's items withheld from training (chosen "
                                   "with seed): removed from every training sequence, kept in valid/test, so "
                                   "recommending new items can be measured; 0 withholds none", min=0.0, max=0.9)
    image_size: int = help_field(64, "(int) side in pixels of the synthetic images", min=8, max=1024)
