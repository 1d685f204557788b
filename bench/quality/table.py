"""Aggregation and the markdown table of the quality benchmark (pure functions, unit-tested).

``runs`` is the list kept in quality.json: one dict per finished (variant, seed) run with ``test`` =
``EvalResult.to_dict()`` (``metrics[protocol][domain][metric]``). Aggregation is mean and sample std over
the seeds of a variant (std is NaN with one seed: nothing to estimate it from, shown as "-").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

METRICS = ("MRR", "NDCG@5", "NDCG@10", "HR@1", "HR@5", "HR@10")
PROTOCOLS = ("sampled", "full")


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return math.nan, math.nan
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)    # sample std: seeds are a sample
    return mean, math.sqrt(var)


def aggregate(runs: Sequence[Mapping]) -> dict[str, dict]:
    """variant -> {"seeds": [...], "wall_s": [...], "metrics": {protocol: {domain: {metric: {mean, std}}}}}.

    Variants keep the order of their first run; protocols/domains/metrics the order of the results.
    """
    grouped: dict[str, list[Mapping]] = {}
    for run in runs:
        grouped.setdefault(run["variant"], []).append(run)
    out = {}
    for variant, vruns in grouped.items():
        metrics: dict = {}
        first = vruns[0]["test"]["metrics"]
        for protocol, domains in first.items():
            for domain, ms in domains.items():
                for metric in ms:
                    vals = [r["test"]["metrics"].get(protocol, {}).get(domain, {}).get(metric) for r in vruns]
                    mean, std = _mean_std(vals)
                    metrics.setdefault(protocol, {}).setdefault(domain, {})[metric] = {"mean": mean, "std": std}
        out[variant] = {"seeds": [r["seed"] for r in vruns], "wall_s": [r["wall_s"] for r in vruns],
                        "metrics": metrics}
    return out


def means(agg: Mapping[str, Mapping]) -> dict[str, dict]:
    """variant -> metrics[protocol][domain][metric] = mean: the shape ``metric_bars`` draws."""
    return {v: {p: {d: {m: s["mean"] for m, s in ms.items()} for d, ms in doms.items()}
                for p, doms in a["metrics"].items()} for v, a in agg.items()}


def _cell(stat: Mapping[str, float] | None) -> str:
    if stat is None or math.isnan(stat["mean"]):
        return "-"
    if math.isnan(stat["std"]):
        return f"{stat['mean']:.4f}"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def markdown_table(agg: Mapping[str, Mapping], metrics: Sequence[str] = METRICS) -> str:
    """One table per (protocol, domain); a row per variant with its seed count and mean wall time."""
    protocols = [p for p in PROTOCOLS if any(p in a["metrics"] for a in agg.values())]
    blocks = []
    for protocol in protocols:
        domains: dict[str, None] = {}
        for a in agg.values():
            domains.update(dict.fromkeys(a["metrics"].get(protocol, {})))
        for domain in domains:
            head = "| variant | seeds | " + " | ".join(metrics) + " | wall (min/run) |"
            lines = [f"**{protocol} protocol, {domain}**", "", head, "|" + "---|" * (len(metrics) + 3)]
            for variant, a in agg.items():
                ms = a["metrics"].get(protocol, {}).get(domain, {})
                wall = sum(a["wall_s"]) / len(a["wall_s"]) / 60 if a["wall_s"] else math.nan
                cells = " | ".join(_cell(ms.get(m)) for m in metrics)
                lines.append(f"| {variant} | {len(a['seeds'])} | {cells} | {wall:.1f} |")
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
