"""Score the valid or test cases of a dataset with any scorer, under the sampled and full protocols.

A *scorer* is ``scorer(rows, domain) -> (B, n_domain_items)`` tensor: ``rows`` are SEQUENCE_SCHEMA rows
of the split whose target (the last item) is in ``domain`` (0 = X, 1 = Y); the input is ``items[:-1]``.
Column ``j`` scores item_index ``j`` (X) or ``n_x + j`` (Y). A scorer may also offer
``scorer.item_scores(rows, domain) -> ItemScores`` (``llm_emf.model.item_scores``; model scorers from
``llm_emf.serving.make_scorer`` do): the evaluator then uses it, and the full protocol counts, a chunk of items
at a time, how many items score above (and equal to) the target, so memory stays at one batch times one
chunk of items whatever the catalog size. The scorer is called once per batch of ``train.eval_batch_size``
cases, and both protocols are read off the same scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from tqdm.auto import tqdm

from llm_emf.config import Config, ConfigError
from llm_emf.config.train import PROTOCOLS
from llm_emf.data.cold import KINDS, trained_items
from llm_emf.data.schema import DOMAIN_X, DOMAIN_Y, DataError, Dataset, domain_of, domain_slice, fingerprint
from llm_emf.model.item_scores import DenseScores, ItemScores, SeenItems

from .metrics import chunked_target_ranks, metrics_from_ranks, target_ranks
from .negatives import load_or_create_negatives, negatives_path
from .result import EvalResult

Scorer = Callable[[pa.Table, int], torch.Tensor]


def result_domain_names(domains) -> tuple[str, str]:
    """The keys results use for the two domains: their names, kept apart when a pair shares one."""
    names = tuple(domains)
    return (f"{names[0]} (X)", f"{names[1]} (Y)") if names[0] == names[1] else names


def protocols_from_config(cfg: Config) -> tuple[str, ...]:
    return PROTOCOLS if cfg.eval.protocol == "both" else (cfg.eval.protocol,)


def _flat_items(rows: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """``(lengths (B,), flat items (sum,))`` of the ``items`` lists (handles sliced/chunked columns)."""
    col = rows.column("items")
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.int64)
    return lengths, flat


def split_targets(rows: pa.Table, split: str, n_items: int) -> np.ndarray:
    """The target (last item) of every row, ``(N,)`` int64; DataError for an empty or out-of-range one."""
    lengths, flat = _flat_items(rows)
    where = f"sequences ({split} split)"
    if (lengths < 1).any():
        row = int(np.flatnonzero(lengths < 1)[0])
        raise DataError(where, row + 1, "at least one item (the last one is the target)", "an empty sequence")
    targets = flat[np.cumsum(lengths) - 1]
    bad = (targets < 0) | (targets >= n_items)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(where, row + 1, f"a target item_index in [0, {n_items})", str(int(targets[row])))
    return targets


def _seen_items(rows: pa.Table, target_local: np.ndarray, lo: int, size: int) -> SeenItems:
    """The history items of the domain (never the target) per row, to leave out of the full ranking."""
    lengths, flat = _flat_items(rows)
    starts = np.cumsum(lengths) - lengths
    row_of = np.repeat(np.arange(len(lengths)), lengths)                     # (sum,)
    is_last = np.arange(len(flat)) == np.repeat(starts + lengths - 1, lengths)
    local = flat - lo
    keep = ~is_last & (local != target_local[row_of])                         # the target stays a candidate
    return SeenItems(row_of[keep], local[keep], size)


def _scores_of(scorer: Scorer, rows: pa.Table, domain: int, size: int, name: str) -> ItemScores:
    """The scorer's chunked scores when it offers them, else its tensor; checked against (B, size)."""
    chunked = getattr(scorer, "item_scores", None)
    scores = chunked(rows, domain) if chunked is not None else scorer(rows, domain)
    if isinstance(scores, torch.Tensor) and scores.dim() == 2:
        shape = tuple(scores.shape)
        scores = DenseScores(scores)
    elif isinstance(scores, ItemScores):
        shape = (scores.n_rows, scores.n_items)
    else:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
    if shape != (rows.num_rows, size):
        raise ValueError(f"scorer must return a tensor of shape (B={rows.num_rows}, items in {name}={size}) "
                         f"for domain {domain}, found {shape}")
    return scores


def evaluate(scorer: Scorer, dataset: Dataset, split: str, cfg: Config,
             protocols: tuple[str, ...] | list[str] = PROTOCOLS, negatives_file: str | Path | None = None,
             scorer_name: str = "") -> EvalResult:
    """Evaluate ``scorer`` on ``split`` ("valid" or "test"); see the module docstring for the contract.

    The sampled protocol reads (or writes on first use) ``negatives_file``, by default
    :func:`negatives_path` (``eval.negatives_file`` or next to ``data.dataset``).
    """
    if split not in ("valid", "test"):
        raise ConfigError(f"evaluation split must be 'valid' or 'test', found '{split}'")
    protocols = tuple(protocols)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ConfigError(f"protocols must be a non-empty subset of {PROTOCOLS}, found {list(protocols)}")
    ks, ties, batch_size = list(cfg.eval.ks), cfg.eval.ties, cfg.train.eval_batch_size
    if not ks or min(ks) < 1:
        raise ConfigError(f"eval.ks: expected a non-empty list of cut-offs >= 1, found {ks}")
    n_x, n_y = dataset.n_x, dataset.n_y
    rows = dataset.split(split)
    targets = split_targets(rows, split, dataset.n_items)                   # (N,)
    case_domain = domain_of(targets, n_x)                                    # (N,)
    fp = dataset.meta.fingerprint or fingerprint(dataset.items, dataset.sequences)

    negatives, neg_path = None, None
    if "sampled" in protocols:
        neg_path = str(negatives_file) if negatives_file else negatives_path(cfg, split)   # a path or a URI
        negatives = load_or_create_negatives(
            neg_path, fingerprint=fp, split=split, seed=cfg.eval.negatives_seed, n_negatives=cfg.eval.n_negatives,
            user_ids=rows.column("user_id").to_pylist(), targets=targets, n_x=n_x, n_y=n_y)   # (N, k_max)

    names = result_domain_names(dataset.meta.domains)
    ranks = {p: {} for p in protocols}
    n_cand = {p: {} for p in protocols}
    for domain in (DOMAIN_X, DOMAIN_Y):
        items = domain_slice(n_x, n_y, domain)
        lo, size = items.start, items.stop - items.start
        cases = np.flatnonzero(case_domain == domain)                         # row indices of this domain
        k = min(cfg.eval.n_negatives, size - 1)
        found = {p: [] for p in protocols}
        for start in tqdm(range(0, len(cases), batch_size), mininterval=5, disable=None,
                          desc=f"{split} {names[domain]}"):
            batch = cases[start:start + batch_size]                           # (B,)
            batch_rows = rows.take(pa.array(batch))
            with torch.inference_mode():
                scores = _scores_of(scorer, batch_rows, domain, size, names[domain])
                target_local = torch.as_tensor(targets[batch] - lo, device=scores.device)   # (B,)
                if "full" in protocols:
                    seen = _seen_items(batch_rows, targets[batch] - lo, lo, size) if cfg.eval.exclude_seen else None
                    found["full"].append(chunked_target_ranks(scores, target_local, ties, seen).cpu())
                if "sampled" in protocols:
                    neg_local = torch.as_tensor(negatives[batch, :k].astype(np.int64) - lo, device=scores.device)
                    cand = torch.cat([target_local[:, None], neg_local], dim=1)   # (B, 1 + k), target first
                    found["sampled"].append(target_ranks(scores.at(cand), torch.zeros_like(target_local),
                                                         ties).cpu())
        for p in protocols:
            ranks[p][names[domain]] = torch.cat(found[p]).numpy() if found[p] else np.zeros(0, np.int64)
            n_cand[p][names[domain]] = size if p == "full" else 1 + k

    metrics = {p: {d: metrics_from_ranks(torch.as_tensor(r), ks) for d, r in ranks[p].items()} for p in protocols}
    counts = {names[d]: int((case_domain == d).sum()) for d in (DOMAIN_X, DOMAIN_Y)}
    by_target, counts_by_target = _by_target_kind(ranks, targets, case_domain, trained_items(dataset), names, ks)
    info = {"dataset": dataset.meta.name, "fingerprint": fp, "seed": cfg.seed,
            "negatives_seed": cfg.eval.negatives_seed, "ks": sorted(set(ks)), "ties": ties,
            "exclude_seen": cfg.eval.exclude_seen, "n_negatives": cfg.eval.n_negatives,
            "negatives_file": str(neg_path) if neg_path else None, "scorer": scorer_name}
    return EvalResult(split, protocols, metrics, counts, n_cand, info, ranks, by_target, counts_by_target)


def _by_target_kind(ranks: dict, targets: np.ndarray, case_domain: np.ndarray, trained: np.ndarray,
                    names: tuple[str, str], ks: list[int]) -> tuple[dict, dict]:
    """Metrics of the cases whose target training never saw (cold) and of the rest (warm).
    ``ranks[p][domain]`` lists that domain's cases in row order, which is the order used here."""
    by_target: dict = {kind: {p: {} for p in ranks} for kind in KINDS}
    counts: dict = {kind: {} for kind in KINDS}
    for domain in (DOMAIN_X, DOMAIN_Y):
        cold = ~trained[targets[case_domain == domain]]                       # (N_d,)
        for kind, mask in (("cold", cold), ("warm", ~cold)):
            counts[kind][names[domain]] = int(mask.sum())
            for p in ranks:
                by_target[kind][p][names[domain]] = metrics_from_ranks(
                    torch.as_tensor(ranks[p][names[domain]][mask]), ks)
    return by_target, counts
