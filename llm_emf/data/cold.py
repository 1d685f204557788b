"""Cold items: which items training never saw, and a seeded split that withholds some on purpose.

An item is *cold* when no training sequence contains it: its ID vector was never fitted to an interaction,
so only its content (text, image) can place it. Every dataset has a few (items that occur only in valid or
test histories); ``data.cold_items=<fraction>`` makes a controlled share of each domain cold, so a model's
ability to recommend brand-new items can be measured. Withholding removes the items from training
sequences only: valid and test sequences keep them, both as targets and in histories, as a live system
would see a new item turn up in a user's recent clicks.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .schema import DOMAIN_X, DOMAIN_Y, Dataset

KINDS = ("cold", "warm")


def train_counts(ds: Dataset) -> np.ndarray:
    """``(n_items,)`` int64: occurrences of every item_index in the training split."""
    flat = pc.list_flatten(ds.split("train").column("items")).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.bincount(flat, minlength=ds.n_items)[:ds.n_items]


def trained_items(ds: Dataset) -> np.ndarray:
    """``(n_items,)`` bool: items that occur in at least one training sequence."""
    return train_counts(ds) > 0


def _targets(ds: Dataset, split: str) -> np.ndarray:
    items = ds.split(split).column("items")
    lengths = pc.list_value_length(items).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(items).to_numpy(zero_copy_only=False).astype(np.int64)
    return flat[np.cumsum(lengths[lengths > 0]) - 1]


def cold_report(ds: Dataset) -> dict:
    """Cold items per domain and the valid/test cases whose target is cold (what ``stats`` prints)."""
    trained = trained_items(ds)
    domains = ds.item_domains()
    out = {"items": [int((~trained & (domains == d)).sum()) for d in (DOMAIN_X, DOMAIN_Y)]}
    for split in ("valid", "test"):
        t = _targets(ds, split)
        out[f"{split}_cases"] = _by_domain(~trained, t, ds.n_x)
    return out


def _by_domain(mask: np.ndarray, targets: np.ndarray, n_x: int) -> list[int]:
    hit = mask[targets]
    return [int((hit & (targets < n_x)).sum()), int((hit & (targets >= n_x)).sum())]


def withhold_items(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, dict]:
    """Make ``fraction`` of each domain's items cold: drop them from every training sequence.

    The rest of each training sequence is kept in order (with its timestamps); a sequence left empty is
    dropped and counted. The returned report is what ``dataset.json`` records under ``cold_items``.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"data.cold_items: expected a fraction in (0, 1), found {fraction}")
    rng = np.random.default_rng(seed)
    withheld = np.zeros(ds.n_items, dtype=bool)
    for lo, size in ((0, ds.n_x), (ds.n_x, ds.n_y)):
        n = int(round(fraction * size))
        withheld[lo + rng.choice(size, size=n, replace=False)] = True

    train_mask = pc.equal(ds.sequences.column("split"), "train")
    train, others = ds.sequences.filter(train_mask), ds.sequences.filter(pc.invert(train_mask))
    users, seqs, times = [], [], []
    removed = np.zeros(2, dtype=np.int64)
    for user, items, stamps in zip(train.column("user_id").to_pylist(), train.column("items").to_pylist(),
                                   train.column("timestamps").to_pylist()):
        items = np.asarray(items, dtype=np.int64)
        keep = ~withheld[items]
        gone = items[~keep]
        removed += [int((gone < ds.n_x).sum()), int((gone >= ds.n_x).sum())]
        if not keep.any():
            continue
        users.append(user)
        seqs.append(items[keep].tolist())
        times.append(None if stamps is None else np.asarray(stamps)[keep].tolist())
    kept = pa.table({"user_id": users, "split": ["train"] * len(users), "items": seqs, "timestamps": times},
                    schema=ds.sequences.schema)
    out = Dataset(ds.items, pa.concat_tables([kept, others]), ds.meta, ds.quarantine)
    report = {"fraction": fraction, "seed": seed,
              "withheld": [int(withheld[:ds.n_x].sum()), int(withheld[ds.n_x:].sum())],
              "train_interactions_removed": removed.tolist(),
              "train_sequences_dropped": train.num_rows - len(users),
              **{f"{split}_cases_withheld": _by_domain(withheld, _targets(ds, split), ds.n_x)
                 for split in ("valid", "test")},
              **{f"{k}_after": v for k, v in cold_report(out).items()},
              "item_index": np.flatnonzero(withheld).tolist()}
    return out, report
