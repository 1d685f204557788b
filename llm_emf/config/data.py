"""Config section: where data comes from and where the canonical dataset is (prepare writes it, every later
stage reads it)."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import help_field, section


@dataclass
class AmazonConfig:
    """data.format=amazon (llm_emf/data/importers/amazon.py, amazon_recipe.py)."""
    schema: int = help_field(0, "(int) release of the files, 2018 (reviewerID/asin/unixReviewTime) or 2023 "
                             "(user_id/parent_asin/timestamp); 0: told by each file's fields", choices=(0, 2018, 2023))
    domains: str = help_field("", "(str) the two domains as file stems 'X,Y' (<stem>.jsonl[.gz] and "
                              "meta_<stem>.jsonl[.gz] in data.source); empty: the folder's two meta_ files, in "
                              "alphabetical order")
    k_core: int = help_field(5, "(int) k-core per domain, users and items with fewer than k interactions dropped "
                             "until none is left; 0 or 1: off", min=0)
    min_per_domain: int = help_field(0, "(int) after the k-core, drop a user's interactions in a domain where they "
                                     "have fewer than this; 0: off", min=0)
    overlap_only: bool = help_field(True, "(bool) keep only users with interactions in both domains")
    holdout: str = help_field("domain", "(str) 'domain': each domain's last interaction is a test target, the one "
                              "before a valid target; 'merged': leave-one-out on the merged sequence",
                              choices=("domain", "merged"))
    text_fields: list[str] = help_field(None, "(list[str]) metadata added to the title as item text, among brand "
                                        "(2023: store), categories, features, description",
                                        default_factory=lambda: ["brand", "categories", "features", "description"])
    text_chars: int = help_field(1000, "(int) item text is cut at this many characters", min=16)
    batch_rows: int = help_field(100_000, "(int) review lines parsed per batch (memory vs. speed)", min=1)


@dataclass
class DataConfig:
    format: str = help_field("llmcdsr", "(str) importer for data.source: llmcdsr, c2dsr, interactions, amazon (review "
                             "and metadata JSON lines of two domains; settings in data.amazon.*), abxi (ABXI's "
                             "<data>_<len_max>_preprocessed.txt and map_item_<len_max>.txt folder, split as ABXI "
                             "does), or canonical (an already prepared dataset folder)",
                             choices=("llmcdsr", "c2dsr", "interactions", "amazon", "abxi", "canonical"))
    source: str = help_field("sample", "(str) input folder or file; 'sample' means the bundled Food-Kitchen sample")
    dataset: str = help_field("runs/dataset", "(str) the canonical dataset folder (local path, s3:// or gs://): "
                              "prepare writes it, every later stage reads it")
    items: str = help_field("", "(str) interactions format: the item table (CSV or Parquet: item,domain,title"
                            "[,image_uri]; its two domain values name the domains unless data.domain_x/_y are set); "
                            "c2dsr: an item-metadata CSV (id,title[,attributes,...]) instead of the folder's items.csv")
    name: str = help_field("", "(str) dataset name recorded in dataset.json; defaults to the source folder name")
    domain_x: str = help_field("", "(str) name of domain X (the LLMCDSR / C2DSR / ABXI 'A' domain); empty: from the "
                               "data (folder name such as Movie-Book, the interactions domain column, ABXI's dataset "
                               "code such as abe), else 'X'")
    domain_y: str = help_field("", "(str) name of domain Y (the LLMCDSR / C2DSR / ABXI 'B' domain); set both or "
                               "neither; empty: from the data like domain_x, else 'Y'")
    min_interactions: int = help_field(3, "(int) interactions and abxi formats: users with fewer interactions are left "
                                       "out (counted in dataset.json); 3 gives non-empty train/valid/test", min=3)
    cold_items: float = help_field(0.0, "(float) fraction of each domain's items withheld from training (chosen "
                                   "with seed): removed from every training sequence, kept in valid/test, so "
                                   "recommending new items can be measured; 0 withholds none", min=0.0, max=0.9)
    skip_bad_rows: bool = help_field(False, "(bool) quarantine malformed rows to quarantine.parquet instead of "
                                     "stopping at the first one")
    synthetic_images: bool = help_field(False, "(bool) draw a deterministic synthetic product image per item and set "
                                        "image_uri to it (exercises the image path where no real images exist)")
    image_size: int = help_field(64, "(int) side in pixels of the synthetic images", min=8, max=1024)
    amazon: AmazonConfig = section(AmazonConfig, "data.format=amazon: which files, the filtering recipe, item text")
