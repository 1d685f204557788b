"""Test MRR split by how often the target item occurs in the training split (shared by run.py and
by_popularity.py; pure numpy, unit-tested).

Cold targets are where content features should help an ID model most, and popular ones where a popularity
prior is hard to beat, so the overall MRR hides opposite effects that these buckets separate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bench.quality.paired import ranks_by_variant

# (lowest count, highest count, label): the target's occurrences in the training sequences
BUCKETS = ((0, 4, "< 5"), (5, 19, "5-19"), (20, 99, "20-99"), (100, 10**9, ">= 100"))
PROTOCOLS = ("full", "sampled")


def bucket_masks(counts: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
    """label -> ``(n,)`` bool mask of the cases whose target count falls in the bucket, plus ``"all"``."""
    c = np.asarray(counts)
    masks = {label: (c >= low) & (c <= high) for low, high, label in BUCKETS}
    masks["all"] = np.ones(c.shape, dtype=bool)
    return masks


def _mean_mrr(rank_lists: Sequence[Sequence[int]], mask: np.ndarray) -> float | None:
    """Mean over seeds of the MRR of the masked cases; None when there are none (or no runs)."""
    if not rank_lists or not mask.any():
        return None
    return float(np.mean([np.mean(1.0 / np.asarray(r, np.float64)[mask]) for r in rank_lists]))


def bucket_table(runs: Sequence[Mapping], target_counts: Mapping[str, Sequence[int]]) -> dict:
    """``{"buckets": [...], "results": {variant: {domain: {bucket: {"cases", "full_MRR", "sampled_MRR",
    "seeds"}}}}}`` from the runs' per-case ``ranks``; ``target_counts[domain]`` is each test case's target
    training count ``(n,)`` in the ranks' case order. Runs without ranks, or with a different number of
    cases, are left out; ``seeds`` counts the runs used."""
    masks = {d: bucket_masks(c) for d, c in target_counts.items()}
    results: dict = {}
    for variant, rank_dicts in ranks_by_variant(runs).items():
        for domain, dmasks in masks.items():
            row = {}
            for label, mask in dmasks.items():
                cell = {"cases": int(mask.sum()), "seeds": 0}
                for protocol in PROTOCOLS:
                    # a run kept from a different test split has other cases: it cannot be bucketed
                    lists = [r[protocol][domain] for r in rank_dicts
                             if len(r.get(protocol, {}).get(domain, ())) == mask.size]
                    cell[f"{protocol}_MRR"] = _mean_mrr(lists, mask)
                    cell["seeds"] = max(cell["seeds"], len(lists))
                row[label] = cell
            results.setdefault(variant, {})[domain] = row
    return {"buckets": [b[2] for b in BUCKETS] + ["all"], "results": results}


def bucket_markdown(table: Mapping) -> str:
    """One table per domain: a row per (variant, protocol), a column per bucket with its case count."""
    results = table.get("results") or {}
    title = "## Test MRR by the target's training count (mean over seeds)"
    if not results:
        return f"{title}\n\nNo per-case ranks in the JSON."
    labels = table["buckets"]
    lines = [title, "", "Buckets by how often the test target occurs in the training split; the full protocol "
             "ranks the target among all items of its domain, the sampled one among its sampled negatives."]
    domains = dict.fromkeys(d for v in results.values() for d in v)
    for domain in domains:
        first = next(v[domain] for v in results.values() if domain in v)
        head = " | ".join(f"seen {lb}x ({first[lb]['cases']} cases)" if lb != "all" else
                          f"all ({first[lb]['cases']} cases)" for lb in labels)
        lines += ["", f"**{domain}**", "", f"| variant | seeds | protocol | {head} |",
                  "|---|---|---|" + "---|" * len(labels)]
        for variant, doms in results.items():
            row = doms.get(domain)
            if row is None:
                continue
            for protocol in PROTOCOLS:
                cells = [row[lb][f"{protocol}_MRR"] for lb in labels]
                if all(c is None for c in cells) and any(row[lb]["cases"] for lb in labels):
                    continue            # this variant was not scored under the protocol
                text = " | ".join("-" if c is None else f"{c:.4f}" for c in cells)
                lines.append(f"| {variant} | {row['all']['seeds']} | {protocol} | {text} |")
    return "\n".join(lines)
