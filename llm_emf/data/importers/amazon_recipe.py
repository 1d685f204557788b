"""The usual cross-domain recipe on two domains' reviews, on integer codes, every step counted.

1. k-core per domain (data.amazon_k_core): drop users and items with fewer than k interactions in that
   domain, again and again until nothing changes (a round is a pass that dropped something);
2. data.amazon_min_per_domain: a user's interactions in a domain where they have fewer than that are dropped;
3. data.amazon_overlap_only: users left with interactions in both domains (the later steps do not re-run 1);
4. merge: each user's interactions of both domains by time; ties keep X's file before Y's, then file order;
5. hold out (data.amazon_holdout):
   ``domain``: in each domain the user's last interaction is a test target and the one before a valid
   target (a domain with one interaction gives a test target only). Each target is a case whose history is
   everything earlier in the merged sequence; case ids are ``<user>:<domain name>``. The train sequence is
   the merged sequence without the held-out interactions (none left: no train row).
   ``merged``: leave-one-out on the merged sequence, as the interactions importer: test = all, valid = all
   but the last, train = all but the last two (users with fewer than 3 interactions are left out).
   No max_len cut: the full history is stored; the model windows it.

Counts land in dataset.json ``extra.recipe`` and are printed by ``llm-emf stats``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ...config.data import DataConfig
from ..schema import DataError
from ..tables import SequenceRows

TEST, VALID, TRAIN = 0, 1, 2


@dataclass
class RecipeResult:
    sequences: SequenceRows
    item_ids: tuple[list[str], list[str]]    # raw ids of X and Y items, in item_index order within a domain
    counts: dict


def tally(user: np.ndarray, item: np.ndarray, domain: np.ndarray, keep: np.ndarray) -> list[dict]:
    """Interactions, users and items left in each domain."""
    out = []
    for d in (0, 1):
        mask = keep & (domain == d)
        out.append({"interactions": int(mask.sum()), "users": int(np.unique(user[mask]).size),
                    "items": int(np.unique(item[mask]).size)})
    return out


def k_core(user: np.ndarray, item: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """-> (rows kept, rounds that removed something). Every kept user and item has >= k kept rows."""
    keep = np.ones(len(user), dtype=bool)
    rounds = 0
    if k <= 1 or not len(user):
        return keep, rounds
    n_users, n_items = int(user.max()) + 1, int(item.max()) + 1
    while True:
        per_user = np.bincount(user[keep], minlength=n_users)
        per_item = np.bincount(item[keep], minlength=n_items)
        new = keep & (per_user[user] >= k) & (per_item[item] >= k)
        if new.sum() == keep.sum():
            return keep, rounds
        keep, rounds = new, rounds + 1


def per_user_domain(user: np.ndarray, domain: np.ndarray, keep: np.ndarray, n_users: int) -> np.ndarray:
    """``(n_users, 2)`` kept interactions of each user in each domain."""
    return np.stack([np.bincount(user[keep & (domain == d)], minlength=n_users) for d in (0, 1)], axis=1)


def run_recipe(reviews: list, cfg: DataConfig, names: tuple[str, str], where: Path) -> RecipeResult:
    """``reviews``: the two domains' ``amazon.Reviews``; ``names``: the domain names used in case ids."""
    sizes = [len(r.times) for r in reviews]
    domain = np.repeat(np.array([0, 1], dtype=np.int8), sizes)
    encoded_users = pa.concat_arrays([r.users for r in reviews]).dictionary_encode()
    user = encoded_users.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    user_names = encoded_users.dictionary
    encoded_items = [r.items.dictionary_encode() for r in reviews]    # codes per domain: first appearance
    item = np.concatenate([e.indices.to_numpy(zero_copy_only=False).astype(np.int64) for e in encoded_items])
    times = np.concatenate([r.times for r in reviews])                 # milliseconds
    n_users = len(user_names)
    keep = np.ones(len(user), dtype=bool)
    counts: dict = {"settings": {"k_core": cfg.amazon_k_core, "min_per_domain": cfg.amazon_min_per_domain,
                                 "overlap_only": cfg.amazon_overlap_only, "holdout": cfg.amazon_holdout},
                    "read": tally(user, item, domain, keep)}

    rounds = []
    for d in (0, 1):
        rows = np.flatnonzero(domain == d)
        kept, r = k_core(user[rows], item[rows], cfg.amazon_k_core)
        keep[rows[~kept]] = False
        rounds.append(r)
    counts["k_core"] = [dict(left, rounds=r) for left, r in zip(tally(user, item, domain, keep), rounds)]

    if cfg.amazon_min_per_domain > 1:
        per = per_user_domain(user, domain, keep, n_users)
        short = (per > 0) & (per < cfg.amazon_min_per_domain)                 # (n_users, 2)
        keep &= ~short[user, domain]
        counts["min_per_domain"] = [dict(left, users_dropped=int(short[:, d].sum()))
                                    for d, left in enumerate(tally(user, item, domain, keep))]

    per = per_user_domain(user, domain, keep, n_users)
    both = (per > 0).all(axis=1)
    counts["users_in_both_domains"] = int(both.sum())
    if cfg.amazon_overlap_only:
        keep &= both[user]
        counts["overlap"] = tally(user, item, domain, keep)

    # dense item indices: X items first, each domain in order of first appearance in its file
    local = np.full(len(item), -1, dtype=np.int64)
    item_ids, offset = [], 0
    for d in (0, 1):
        mask = keep & (domain == d)
        used = np.unique(item[mask])
        remap = np.full(len(encoded_items[d].dictionary), -1, dtype=np.int64)
        remap[used] = np.arange(len(used)) + offset
        local[mask] = remap[item[mask]]
        item_ids.append(encoded_items[d].dictionary.take(pa.array(used)).to_pylist())
        offset += len(used)

    rows = np.flatnonzero(keep)
    rows = rows[np.lexsort((rows, times[rows], user[rows]))]       # by user, then time, then X before Y, file order
    sequences, split_counts = hold_out(rows, user, domain, local, times, user_names, names, cfg.amazon_holdout)
    counts["split"] = split_counts
    if not len(sequences):
        raise DataError(where, None, "users left after the recipe (data.amazon_k_core, amazon_min_per_domain, "
                        "amazon_overlap_only)", f"none; steps: {counts}")
    return RecipeResult(sequences, (item_ids[0], item_ids[1]), counts)


def roles(user: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """For rows sorted by (user, time): TEST for each (user, domain)'s last row, VALID for the one before, else
    TRAIN."""
    key = user * 2 + domain
    order = np.argsort(key, kind="stable")                 # grouped by (user, domain), time order kept
    sorted_key = key[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_key)) + 1]
    sizes = np.diff(np.r_[starts, len(key)])
    from_end = np.repeat(starts + sizes, sizes) - np.arange(len(key)) - 1   # 0 = last of its group
    out = np.empty(len(key), dtype=np.int8)
    out[order] = np.minimum(from_end, TRAIN)
    return out


def hold_out(rows: np.ndarray, user: np.ndarray, domain: np.ndarray, local: np.ndarray, times: np.ndarray,
             user_names: pa.Array, names: tuple[str, str], mode: str) -> tuple[SequenceRows, dict]:
    u, d = user[rows], domain[rows]
    items, stamps = local[rows].tolist(), (times[rows] // 1000).tolist()
    role = roles(u, d.astype(np.int64)).tolist() if mode == "domain" else None
    doms = d.tolist()
    starts = np.r_[0, np.flatnonzero(np.diff(u)) + 1].tolist()
    ends = starts[1:] + [len(u)]
    out = SequenceRows()
    c = {"users": 0, "train_sequences": 0, "valid_cases": [0, 0], "test_cases": [0, 0], "users_without_train": 0,
         "cases_without_history": 0, "short_users": 0}
    for s, e in zip(starts, ends):
        name = user_names[int(u[s])].as_py()
        if mode == "merged":
            if e - s < 3:
                c["short_users"] += 1
                continue
            c["users"] += 1
            for split, end in (("train", e - 2), ("valid", e - 1), ("test", e)):
                out.add(name, split, items[s:end], stamps[s:end])
            c["train_sequences"] += 1
            c["valid_cases"][doms[e - 2]] += 1
            c["test_cases"][doms[e - 1]] += 1
            continue
        c["users"] += 1
        train = [j for j in range(s, e) if role[j] == TRAIN]
        if train:
            out.add(name, "train", [items[j] for j in train], [stamps[j] for j in train])
            c["train_sequences"] += 1
        else:
            c["users_without_train"] += 1
        for split, wanted in (("valid", VALID), ("test", TEST)):
            for j in range(s, e):
                if role[j] != wanted:
                    continue
                if j == s:              # the user's first interaction: nothing to predict it from
                    c["cases_without_history"] += 1
                    continue
                out.add(f"{name}:{names[doms[j]]}", split, items[s:j + 1], stamps[s:j + 1])
                c[f"{split}_cases"][doms[j]] += 1
    return out, c
