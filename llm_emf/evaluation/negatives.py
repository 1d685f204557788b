"""Sampled-protocol negatives: for every valid/test case, ``n`` items drawn uniformly from the target's
domain without the target, written once to a Parquet file so that every model is scored on the same
candidates (method.md, "Candidates (1) sampled").

The file has one row per case, keyed by ``user_id``; its schema metadata records the dataset
fingerprint, split, seed and ``n``. A file that exists and matches is reused; one that does not match
the dataset is rejected with an error naming the file (delete it or point ``eval.negatives_file``
elsewhere). Negatives of a case depend only on (seed, split, user_id), not on the row order. The file may
live in an object store (``s3://...``, through ``llm_emf.files``), e.g. beside a dataset there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from llm_emf import files
from llm_emf.config import Config, ConfigError
from llm_emf.data.schema import DOMAIN_X, DOMAIN_Y, SPLITS, DataError, domain_of, domain_slice, in_domain

NEGATIVES_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("target", pa.int32(), nullable=False),                 # item_index of the target
    pa.field("negatives", pa.list_(pa.int32()), nullable=False),    # item_index, same domain, never the target
])
_META_KEYS = ("fingerprint", "split", "seed", "n_negatives")


def negatives_path(cfg: Config, split: str) -> Path | str:
    """``eval.negatives_file`` (placeholders {split}, {seed}, {n}) or ``<data.dataset>/negatives_...parquet``:
    a Path for a local file, the URI for one in an object store."""
    template = cfg.eval.negatives_file or files.join(cfg.data.dataset, "negatives_{split}_seed{seed}_n{n}.parquet")
    try:
        path = template.format(split=split, seed=cfg.eval.negatives_seed, n=cfg.eval.n_negatives)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"eval.negatives_file: expected placeholders {{split}}, {{seed}}, {{n}} only, "
                          f"found '{template}' ({e!r})") from None
    return path if files.is_remote(path) else Path(path)


def _case_rng(seed: int, split: str, user_id: str) -> np.random.Generator:
    # a stable per-case stream: adding or reordering users does not change anyone else's negatives
    user_key = int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng([seed, SPLITS.index(split), user_key])


def sample_negatives(user_ids: list[str], targets: np.ndarray, n_x: int, n_y: int, n_negatives: int,
                     seed: int, split: str) -> pa.Table:
    """Draw ``min(n_negatives, domain size - 1)`` negatives per case, uniformly without replacement."""
    rows = []
    slices = [domain_slice(n_x, n_y, d) for d in (DOMAIN_X, DOMAIN_Y)]
    cases = zip(user_ids, targets.tolist(), domain_of(targets, n_x).tolist())
    for user_id, target, domain in tqdm(cases, total=len(user_ids), mininterval=5, disable=None,
                                        desc=f"sampling {split} negatives"):
        lo, size = slices[domain].start, slices[domain].stop - slices[domain].start
        k = min(n_negatives, size - 1)
        draw = _case_rng(seed, split, user_id).choice(size - 1, size=k, replace=False)   # (k,) in [0, size-1)
        draw[draw >= target - lo] += 1                                 # skip the target's local index
        rows.append((lo + draw).astype(np.int32))
    return pa.table({"user_id": pa.array(user_ids, pa.string()),
                     "target": pa.array(targets, pa.int32()),
                     "negatives": pa.array(rows, pa.list_(pa.int32()))}, schema=NEGATIVES_SCHEMA)


def _check_file(path: Path | str, table: pa.Table, expected: dict[str, str]) -> None:
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    for key in _META_KEYS:
        found = meta.get(f"llm_emf.{key}")
        if found != expected[key]:
            raise DataError(path, None, f"negatives for {key}={expected[key]} (dataset, split, seed and n must "
                            "match; delete the file or set eval.negatives_file to another path)",
                            f"{key}={found}")
    missing = [f.name for f in NEGATIVES_SCHEMA if f.name not in table.column_names]
    if missing:
        raise DataError(path, None, f"columns {NEGATIVES_SCHEMA.names}", f"missing {missing}")


def aligned_negatives(table: pa.Table, path: Path | str, user_ids: list[str], targets: np.ndarray, n_x: int, n_y: int,
                      n_negatives: int) -> np.ndarray:
    """Negatives of each case in ``user_ids`` order as ``(N, k_max)`` int32, rows padded with -1.

    Checks every row: the case exists, its target agrees, it has ``min(n, domain size - 1)`` distinct
    negatives from the target's domain, never the target. Errors name the file and the 1-based row.
    """
    row_of = {u: i for i, u in enumerate(table.column("user_id").to_pylist())}
    missing = [u for u in user_ids if u not in row_of]
    if missing:
        raise DataError(path, None, f"a row for every case of the split ({len(user_ids)})",
                        f"no row for user_id '{missing[0]}' and {len(missing) - 1} more")
    file_rows = np.array([row_of[u] for u in user_ids], dtype=np.int64)          # (N,)
    col = table.column("negatives").combine_chunks()
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)   # (R,)
    flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.int64)        # (sum lengths,)
    k_max = int(lengths.max(initial=0))
    padded = np.full((len(lengths), k_max), -1, dtype=np.int64)                 # (R, k_max)
    starts = np.cumsum(lengths) - lengths
    padded[np.repeat(np.arange(len(lengths)), lengths), np.arange(len(flat)) - np.repeat(starts, lengths)] = flat

    file_targets = table.column("target").to_numpy()[file_rows].astype(np.int64)     # (N,)
    out, lens = padded[file_rows], lengths[file_rows]                                 # (N, k_max), (N,)
    in_x = in_domain(targets, n_x, DOMAIN_X)                                          # (N,)
    expected_k = np.minimum(n_negatives, np.where(in_x, n_x, n_y) - 1)
    used = out >= 0
    lo, hi = np.where(in_x, 0, n_x), np.where(in_x, n_x, n_x + n_y)
    bad_range = used & ((out < lo[:, None]) | (out >= hi[:, None]))
    ordered = np.sort(np.where(used, out, -1 - np.arange(k_max)[None, :]), axis=1)   # padding made distinct
    repeated = np.zeros(len(out), dtype=bool) if k_max < 2 else (np.diff(ordered, axis=1) == 0).any(axis=1)
    bad = ((file_targets != targets) | (lens != expected_k) | bad_range.any(axis=1)
           | (used & (out == targets[:, None])).any(axis=1) | repeated)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        neg = out[i, :lens[i]].tolist()
        raise DataError(path, int(file_rows[i]) + 1,
                        f"target {int(targets[i])} and {int(expected_k[i])} distinct negatives from its domain, "
                        f"without the target, for user_id '{user_ids[i]}'",
                        f"target {int(file_targets[i])} and {len(neg)} negatives "
                        f"{neg[:8]}{' ...' if len(neg) > 8 else ''}")
    return out.astype(np.int32)


def load_or_create_negatives(path: Path | str, *, fingerprint: str, split: str, seed: int, n_negatives: int,
                             user_ids: list[str], targets: np.ndarray, n_x: int, n_y: int) -> np.ndarray:
    """The negatives of every case (see :func:`aligned_negatives`), sampled and written on first use."""
    if len(set(user_ids)) != len(user_ids):
        seen: set[str] = set()
        for row, u in enumerate(user_ids):
            if u in seen:
                raise DataError(f"sequences ({split} split)", row + 1, "one sequence per user_id (negatives are "
                                "keyed by user_id)", f"user_id '{u}' again")
            seen.add(u)
    expected = {"fingerprint": fingerprint, "split": split, "seed": str(seed), "n_negatives": str(n_negatives)}
    if files.exists(path):
        table = files.read_parquet(path)
        _check_file(path, table, expected)
    else:
        table = sample_negatives(user_ids, targets, n_x, n_y, n_negatives, seed, split)
        # several workers may evaluate at once: each writes whole or not at all (a temporary file renamed, or
        # one upload), so nobody reads half a file; the copies are identical, the last one stays
        table = table.replace_schema_metadata({f"llm_emf.{k}": v for k, v in expected.items()})
        files.write_parquet(table, path)
    return aligned_negatives(table, path, user_ids, targets, n_x, n_y, n_negatives)
