"""The catalog a model was trained on, and serving that model on a grown catalog without retraining.

A checkpoint records its items (``item_id``, domain, whether training saw them). Items are addressed by
``item_index``, which a re-prepared catalog may renumber (a new X item shifts every Y index), so a trained
model is matched to another catalog through ``item_id``: known items keep their learned ID rows, new items
get the unseen-item ID vector and are placed by their text and image vectors alone. Items may be added,
never removed or moved to the other domain, and the known items' content vectors must be the ones the
model was trained with (checked by fingerprint).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from llm_emf.config import ConfigError
from llm_emf.data.schema import Dataset

ITEM_ROWS = "vectors.id.weight"        # the ID table: every model with an ID part has it
# every state tensor indexed by item_index: also the domain tables of model.id_tables=per_encoder
ITEM_ROW_KEYS = (ITEM_ROWS, "vectors.id_domain.0.weight", "vectors.id_domain.1.weight")


def catalog_record(dataset: Dataset, trained: np.ndarray) -> dict:
    """What a checkpoint stores of its catalog (plain lists: safe for ``torch.load(weights_only=True)``)."""
    return {"item_id": dataset.items.column("item_id").to_pylist(),
            "domain": [int(d) for d in dataset.item_domains()],
            "trained": [bool(t) for t in trained]}


@dataclass
class CatalogMap:
    """How a checkpoint's items sit in another catalog."""

    new_of_old: np.ndarray     # (n_old,) the new item_index of each trained-on item
    trained: np.ndarray        # (n_new,) bool: the item has a learned ID row
    n_new_items: int           # items the model never saw

    def remap_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A state dict whose item-indexed rows follow the new catalog (new items' rows are zero: unused)."""
        out = dict(state)
        for key, rows in state.items():
            if key.endswith(ITEM_ROW_KEYS):
                new = rows.new_zeros((len(self.trained), *rows.shape[1:]))
                new[torch.from_numpy(self.new_of_old)] = rows
                out[key] = new
        return out


def match_catalog(record: dict, dataset: Dataset, where: str) -> CatalogMap | None:
    """None when ``dataset`` has exactly the recorded catalog; else how the recorded items map into it."""
    ids = dataset.items.column("item_id").to_pylist()
    domains = dataset.item_domains()
    if ids == record["item_id"] and [int(d) for d in domains] == record["domain"]:
        return None
    position = {item: i for i, item in enumerate(ids)}
    new_of_old = np.array([position.get(item, -1) for item in record["item_id"]], dtype=np.int64)
    missing = np.flatnonzero(new_of_old < 0)
    if len(missing) == len(new_of_old):
        raise ConfigError(f"{where}: expected a catalog that contains the items this model was trained on, "
                          f"found none of its {len(new_of_old):,} item_ids in dataset '{dataset.meta.name}'")
    if len(missing):
        raise ConfigError(f"{where}: expected every item the model was trained on in the catalog (items may be "
                          f"added, not removed), found {len(missing):,} missing, e.g. "
                          f"{record['item_id'][int(missing[0])]!r}")
    moved = np.flatnonzero(domains[new_of_old] != np.asarray(record["domain"]))
    if len(moved):
        item = record["item_id"][int(moved[0])]
        raise ConfigError(f"{where}: expected item {item!r} in domain {record['domain'][int(moved[0])]} as in "
                          f"training, found it in domain {int(domains[new_of_old[moved[0]]])}")
    trained = np.zeros(len(ids), dtype=bool)
    trained[new_of_old] = np.asarray(record["trained"], dtype=bool)
    return CatalogMap(new_of_old, trained, len(ids) - len(new_of_old))
