"""Paired bootstrap of per-case test metrics: is variant A better than the reference B on the same cases?

Seeds vary the model, the test cases are fixed, so the comparison is paired by case: each case's metric is
first averaged over a variant's seeds (a seed-independent variant such as popularity has one run), then
the per-case differences A - B are resampled with replacement. The interval is the percentile interval of
the resampled mean difference. Pure numpy, unit-tested; ``runs`` are the dicts kept in quality.json, whose
``ranks[protocol][domain]`` lists each test case's 1-based rank in one fixed case order per domain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

PAIRED_METRICS = ("MRR", "NDCG@10")
_CHUNK = 4_000_000          # resampled case indices held at once (int64): bounds memory for large test splits


def case_metric(ranks: Sequence[int] | np.ndarray, metric: str) -> np.ndarray:
    """Per-case value of ``metric`` from 1-based ranks ``(n,)``: MRR = 1/r, NDCG@k = 1/log2(r+1) if r <= k
    else 0 (one relevant item, so the ideal DCG is 1), HR@k = [r <= k]. Returns ``(n,)`` float64."""
    r = np.asarray(ranks, dtype=np.float64)
    if metric == "MRR":
        return 1.0 / r
    name, sep, k = metric.partition("@")
    if not sep or name not in ("NDCG", "HR"):
        raise ValueError(f"metric must be MRR, NDCG@k or HR@k, found '{metric}'")
    hit = r <= int(k)
    if name == "HR":
        return hit.astype(np.float64)
    return np.where(hit, 1.0 / np.log2(r + 1.0), 0.0)


def seed_mean(rank_lists: Sequence[Sequence[int]], metric: str) -> np.ndarray:
    """``(n,)`` per-case mean over seeds of ``metric``; ``rank_lists`` is one ``(n,)`` rank list per seed."""
    if not rank_lists:
        raise ValueError("seed_mean: no runs")
    values = np.stack([case_metric(r, metric) for r in rank_lists])       # (seeds, n)
    return values.mean(axis=0)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """Mean difference ``a - b`` over cases ``(n,)``, its bootstrap percentile interval and ``(A - B) / B``.

    The cases are resampled ``n_boot`` times with a ``numpy.random.Generator(seed)``: the same seed and case
    count draw the same resamples, so every variant is compared on the same resamples.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired_bootstrap: expected two equal non-empty (n,) arrays, found {a.shape}, {b.shape}")
    diff = a - b                                                          # (n,)
    rng = np.random.default_rng(seed)
    n = diff.size
    rows = max(1, _CHUNK // n)
    boot = np.concatenate([diff[rng.integers(0, n, size=(min(rows, n_boot - i), n))].mean(axis=1)
                           for i in range(0, n_boot, rows)])              # (n_boot,)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    mean_b = float(b.mean())
    return {"diff": float(diff.mean()), "low": float(low), "high": float(high),
            "rel": float(diff.mean() / mean_b) if mean_b else math.nan, "cases": int(n)}


def ranks_by_variant(runs: Sequence[Mapping]) -> dict[str, list[Mapping]]:
    """variant -> its runs' ``ranks`` dicts, in run order; runs without per-case ranks are left out."""
    out: dict[str, list[Mapping]] = {}
    for run in runs:
        if run.get("ranks"):
            out.setdefault(run["variant"], []).append(run["ranks"])
    return out


def paired_differences(runs: Sequence[Mapping], reference: str, metrics: Sequence[str] = PAIRED_METRICS,
                       n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Every variant with ranks against ``reference``, per protocol, domain and metric.

    Returns ``{"reference", "n_boot", "seed", "level", "metrics", "results": {variant: {protocol: {domain:
    {metric: paired_bootstrap(...) + "seeds", "reference_seeds"}}}}}``; ``results`` is empty when the
    reference has no runs with ranks.
    """
    by_variant = ranks_by_variant(runs)
    out = {"reference": reference, "n_boot": n_boot, "seed": seed, "level": level, "metrics": list(metrics),
           "results": {}}
    ref = by_variant.get(reference)
    if not ref:
        return out
    for variant, rank_dicts in by_variant.items():
        if variant == reference:
            continue
        per_protocol: dict = {}
        for protocol, domains in rank_dicts[0].items():
            for domain in domains:
                theirs = [r[protocol][domain] for r in ref if r.get(protocol, {}).get(domain)]
                if not theirs:
                    continue            # the reference lacks this protocol or has no cases in the domain
                n = len(theirs[0])      # runs kept from a different test split have other cases: left out
                theirs = [x for x in theirs if len(x) == n]
                mine = [r[protocol][domain] for r in rank_dicts if len(r.get(protocol, {}).get(domain, ())) == n]
                if not mine:
                    continue
                for metric in metrics:
                    stat = paired_bootstrap(seed_mean(mine, metric), seed_mean(theirs, metric), n_boot, seed, level)
                    stat.update(seeds=len(mine), reference_seeds=len(theirs))
                    per_protocol.setdefault(protocol, {}).setdefault(domain, {})[metric] = stat
        out["results"][variant] = per_protocol
    return out


def format_cell(stat: Mapping | None) -> str:
    """``+0.0123 [+0.0031, +0.0215] (+8.1%)``; ``-`` when missing."""
    if not stat:
        return "-"
    rel = "" if stat["rel"] is None or math.isnan(stat["rel"]) else f" ({stat['rel'] * 100:+.1f}%)"
    return f"{stat['diff']:+.4f} [{stat['low']:+.4f}, {stat['high']:+.4f}]{rel}"


def paired_markdown(paired: Mapping) -> str:
    """One table per (protocol, domain): a row per variant, a column per metric."""
    ref, results = paired.get("reference", "?"), paired.get("results") or {}
    title = f"## Difference from {ref} (paired bootstrap {paired.get('level', 0.95) * 100:.0f}% CI over test cases)"
    if not results:
        return f"{title}\n\nNo comparison: {ref} or the other variants have no per-case ranks in the JSON."
    metrics = paired.get("metrics", PAIRED_METRICS)
    lines = [title, "",
             f"Each case's metric is averaged over a variant's seeds, then A - {ref} is resampled over the cases "
             f"({paired['n_boot']} resamples, generator seed {paired['seed']}); in brackets the relative difference "
             f"(A - {ref}) / {ref}. An interval that excludes 0 is a difference beyond case-sampling noise."]
    order = [p for p in ("sampled", "full") if any(p in v for v in results.values())]
    for protocol in order:
        domains = dict.fromkeys(d for v in results.values() for d in v.get(protocol, {}))
        for domain in domains:
            lines += ["", f"**{protocol} protocol, {domain}**", "",
                      "| variant | seeds | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
            for variant, res in results.items():
                cells = res.get(protocol, {}).get(domain)
                if not cells:
                    continue
                seeds = next(iter(cells.values()))["seeds"]
                lines.append(f"| {variant} | {seeds} | " + " | ".join(format_cell(cells.get(m)) for m in metrics)
                             + " |")
    return "\n".join(lines)
