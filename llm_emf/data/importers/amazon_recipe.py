"""The usual cross-domain recipe on two domains' reviews, on integer codes, every step counted.

0. exact repeats: a review line repeated with the same user, item and time (the dumps hold some) is dropped,
   its first occurrence kept, and counted per domain (``repeated_reviews``): kept, it would double the
   interaction and move the k-core;
1. k-core per domain (data.amazon.k_core): drop users and items with fewer than k interactions in that
   domain, again and again until nothing changes (a round is a pass that dropped something);
2. data.amazon.min_per_domain: a user's interactions in a domain where they have fewer than that are dropped;
3. data.amazon.overlap_only: users left with interactions in both domains (the later steps do not re-run 1);
4. merge: each user's interactions of both domains by time; ties keep X's file before Y's, then file order;
5. hold out (data.amazon.holdout):
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
import pyarrow.compute as pc

from ...config.data import DataConfig
from ..schema import SEQUENCE_SCHEMA, DataError

TEST, VALID, TRAIN = 0, 1, 2


@dataclass
class RecipeResult:
    sequences: pa.Table                      # SEQUENCE_SCHEMA
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


def repeated(user: np.ndarray, item: np.ndarray, domain: np.ndarray, times: np.ndarray) -> np.ndarray:
    """bool per row: the same (user, domain, item, time) as an earlier row (the first occurrence is not marked)."""
    if not len(user):
        return np.zeros(0, dtype=bool)
    key = (user.astype(np.int64) << 32) | (domain.astype(np.int64) << 31) | item.astype(np.int64)
    order = np.lexsort((times, key))          # stable: equal rows keep file order, the first comes first
    key = key[order]
    same = key[1:] == key[:-1]
    del key
    sorted_times = times[order]
    same &= sorted_times[1:] == sorted_times[:-1]
    del sorted_times
    out = np.zeros(len(user), dtype=bool)
    out[order[1:][same]] = True
    return out


def per_user_domain(user: np.ndarray, domain: np.ndarray, keep: np.ndarray, n_users: int) -> np.ndarray:
    """``(n_users, 2)`` kept interactions of each user in each domain."""
    return np.stack([np.bincount(user[keep & (domain == d)], minlength=n_users) for d in (0, 1)], axis=1)


def drain(chunks: list[np.ndarray], dtype) -> np.ndarray:
    """Concatenate ``chunks``, emptying the list as it goes: the peak is one copy plus a chunk, not two."""
    out = np.empty(sum(len(c) for c in chunks), dtype=dtype)
    at = 0
    while chunks:
        chunk = chunks.pop(0)
        out[at:at + len(chunk)] = chunk
        at += len(chunk)
    return out


def run_recipe(reviews: list, user_names: pa.Array, cfg: DataConfig, names: tuple[str, str],
               where: Path) -> RecipeResult:
    """``reviews``: the two domains' ``amazon.Reviews`` (their chunks are consumed); ``user_names``: the user
    ids by code (codes in order of first appearance, X's file first); ``names``: the domain names used in case
    ids."""
    sizes = [sum(len(c) for c in r.times) for r in reviews]
    domain = np.repeat(np.array([0, 1], dtype=np.int8), sizes)
    user = drain([c for r in reviews for c in r.users], np.int32)
    item = drain([c for r in reviews for c in r.items], np.int32)        # codes per domain: first appearance
    times = drain([c for r in reviews for c in r.times], np.int64)       # milliseconds
    for r in reviews:
        r.users.clear(), r.items.clear(), r.times.clear()
    n_users = len(user_names)
    keep = np.ones(len(user), dtype=bool)
    counts: dict = {"settings": {"k_core": cfg.amazon.k_core, "min_per_domain": cfg.amazon.min_per_domain,
                                 "overlap_only": cfg.amazon.overlap_only, "holdout": cfg.amazon.holdout},
                    "read": tally(user, item, domain, keep)}

    keep &= ~repeated(user, item, domain, times)
    counts["repeated_reviews"] = [int(((domain == d) & ~keep).sum()) for d in (0, 1)]
    for r, n in zip(reviews, counts["repeated_reviews"]):
        r.summary["repeated_reviews"] = n

    rounds = []
    for d in (0, 1):
        rows = np.flatnonzero((domain == d) & keep)
        kept, r = k_core(user[rows], item[rows], cfg.amazon.k_core)
        keep[rows[~kept]] = False
        rounds.append(r)
    del rows, kept
    counts["k_core"] = [dict(left, rounds=r) for left, r in zip(tally(user, item, domain, keep), rounds)]

    if cfg.amazon.min_per_domain > 1:
        per = per_user_domain(user, domain, keep, n_users)
        short = (per > 0) & (per < cfg.amazon.min_per_domain)                 # (n_users, 2)
        keep &= ~short[user, domain]
        counts["min_per_domain"] = [dict(left, users_dropped=int(short[:, d].sum()))
                                    for d, left in enumerate(tally(user, item, domain, keep))]

    per = per_user_domain(user, domain, keep, n_users)
    both = (per > 0).all(axis=1)
    counts["users_in_both_domains"] = int(both.sum())
    if cfg.amazon.overlap_only:
        keep &= both[user]
        counts["overlap"] = tally(user, item, domain, keep)

    # dense item indices: X items first, each domain in order of first appearance in its file
    rows = np.flatnonzero(keep)
    del keep
    local = np.empty(len(rows), dtype=np.int32)
    item_ids, offset = [], 0
    for d in (0, 1):
        mask = domain[rows] == d
        codes = item[rows[mask]]
        used = np.unique(codes)
        remap = np.full(len(reviews[d].item_ids), -1, dtype=np.int32)
        remap[used] = np.arange(len(used), dtype=np.int32) + offset
        local[mask] = remap[codes]
        item_ids.append(reviews[d].item_ids.take(pa.array(used)).to_pylist())
        offset += len(used)
    del item, mask, codes

    order = np.lexsort((rows, times[rows], user[rows]))   # by user, then time, then X before Y, file order
    rows, local = rows[order], local[order]
    del order
    u, d, stamps = user[rows], domain[rows], times[rows] // 1000
    del user, domain, times, rows
    sequences, split_counts = hold_out(u, d, local, stamps, user_names, names, cfg.amazon.holdout)
    counts["split"] = split_counts
    if not sequences.num_rows:
        raise DataError(where, None, "users left after the recipe (data.amazon.k_core, min_per_domain, "
                        "overlap_only)", f"none; steps: {counts}")
    return RecipeResult(sequences, (item_ids[0], item_ids[1]), counts)


def roles(user: np.ndarray, domain: np.ndarray) -> np.ndarray:
    """For rows sorted by (user, time): TEST for each (user, domain)'s last row, VALID for the one before, else
    TRAIN."""
    key = user.astype(np.int64) * 2 + domain
    order = np.argsort(key, kind="stable")                 # grouped by (user, domain), time order kept
    sorted_key = key[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_key)) + 1]
    sizes = np.diff(np.r_[starts, len(key)])
    from_end = np.repeat(starts + sizes, sizes) - np.arange(len(key)) - 1   # 0 = last of its group
    out = np.empty(len(key), dtype=np.int8)
    out[order] = np.minimum(from_end, TRAIN)
    return out


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])`` without the Python loop."""
    total = int(lengths.sum())
    kind = np.int32 if total < 2 ** 31 and (not len(starts) or int(starts.max()) + int(lengths.max()) < 2 ** 31) \
        else np.int64
    out = np.arange(total, dtype=kind)
    out += np.repeat((starts - (np.cumsum(lengths) - lengths)).astype(kind), lengths)
    return out


SPLIT_NAMES = ("test", "valid", "train")        # indexed by TEST, VALID, TRAIN


def hold_out(u: np.ndarray, d: np.ndarray, items: np.ndarray, stamps: np.ndarray, user_names: pa.Array,
             names: tuple[str, str], mode: str) -> tuple[pa.Table, dict]:
    """The sequence table, built as Arrow buffers (offsets + flat values), and the split counts. ``u``, ``d``,
    ``items``, ``stamps`` (seconds): the kept interactions sorted by user, then time, X before Y, file order.

    Rows, per user in that order: ``domain``: the train sequence, then the valid cases, then the test cases
    (each in time order; a case's history is everything up to its target); ``merged``: train, valid, test."""
    n = len(u)
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]]) if n else np.zeros(0, dtype=np.int64)
    ends = np.append(starts[1:], n) if n else starts
    c = {"users": 0, "train_sequences": 0, "valid_cases": [0, 0], "test_cases": [0, 0], "users_without_train": 0,
         "cases_without_history": 0, "short_users": 0}
    if mode == "merged":
        long = ends - starts >= 3
        c["short_users"] = int((~long).sum())
        s, e = starts[long], ends[long]
        c["users"] = c["train_sequences"] = int(long.sum())
        c["valid_cases"] = np.bincount(d[e - 2], minlength=2).tolist()
        c["test_cases"] = np.bincount(d[e - 1], minlength=2).tolist()
        row_first = np.repeat(s, 3)                                      # train, valid, test per user
        row_len = ((e - s)[:, None] - np.array([2, 1, 0])).ravel()
        row_split = np.tile(np.array([TRAIN, VALID, TEST], dtype=np.int8), len(s))
        row_suffix = np.zeros(len(row_first), dtype=np.int8)            # no suffix: case id = user id
        flat = ranges(row_first, row_len)
    else:
        role = roles(u, d)
        group = np.repeat(np.arange(len(starts)), ends - starts)        # user group of each interaction
        c["users"] = len(starts)
        train = np.flatnonzero(role == TRAIN)
        per_group = np.bincount(group[train], minlength=len(starts))
        with_train = np.flatnonzero(per_group)
        c["train_sequences"] = len(with_train)
        c["users_without_train"] = len(starts) - len(with_train)
        cases = np.flatnonzero(role != TRAIN)
        first = cases == starts[group[cases]]           # the user's first interaction: nothing to predict it from
        c["cases_without_history"] = int(first.sum())
        cases = cases[~first]
        for split, wanted in (("valid", VALID), ("test", TEST)):
            c[f"{split}_cases"] = np.bincount(d[cases[role[cases] == wanted]], minlength=2).tolist()
        # output rows: per user the train row (rank 0), then valid (1) and test (2) cases in time order
        row_group = np.r_[with_train, group[cases]]
        row_rank = np.r_[np.zeros(len(with_train), dtype=np.int8), np.where(role[cases] == VALID, 1, 2)]
        row_at = np.r_[np.full(len(with_train), -1, dtype=np.int64), cases]
        order = np.lexsort((row_at, row_rank, row_group))
        row_group, row_rank, row_at = row_group[order], row_rank[order], row_at[order]
        is_case = row_rank > 0
        row_first = starts[row_group]
        row_len = np.where(is_case, row_at - row_first + 1, per_group[row_group])
        row_split = np.where(is_case, np.where(row_rank == 1, VALID, TEST), TRAIN).astype(np.int8)
        row_suffix = np.where(is_case, d[np.maximum(row_at, 0)] + 1, 0).astype(np.int8)
        offsets = np.cumsum(row_len) - row_len
        flat = np.empty(int(row_len.sum()), dtype=np.int32 if n < 2 ** 31 else np.int64)   # positions in u
        flat[ranges(offsets[is_case], row_len[is_case])] = ranges(row_first[is_case], row_len[is_case])
        flat[ranges(offsets[~is_case], row_len[~is_case])] = train       # train rows come in user order too
    offsets = pa.array(np.r_[0, np.cumsum(row_len)].astype(np.int32))
    user_ids = pc.binary_join_element_wise(
        user_names.take(pa.array(u[row_first])),
        pa.array(["", f":{names[0]}", f":{names[1]}"]).take(pa.array(row_suffix)), "")
    table = pa.Table.from_arrays(
        [user_ids, pa.array(SPLIT_NAMES).take(pa.array(row_split)),
         pa.ListArray.from_arrays(offsets, pa.array(items[flat].astype(np.int32, copy=False))),
         pa.ListArray.from_arrays(offsets, pa.array(stamps[flat].astype(np.int64, copy=False)))],
        schema=SEQUENCE_SCHEMA)
    return table, c
