"""Cold and warm targets apart: each run's test results carry ``by_target`` (llm_emf.evaluation), and
this averages it over seeds per variant, domain and protocol, with the cold/warm ratio of HR@10 (a model
that ranks a new item as well as a known one scores 1; an ID-only model, which cannot tell new items
apart, near 0). Pure Python over the run records; unit-tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

KINDS = ("cold", "warm")
METRICS = ("HR@10", "MRR")


def target_kind_table(runs: Sequence[Mapping]) -> dict:
    """``{variant: {protocol: {domain: {"cold": {metric: mean}, "warm": {...}, "cases": {kind: n},
    "seeds": n, "cold_over_warm_HR@10": ratio}}}}``; runs without ``by_target`` are left out."""
    grouped: dict = {}
    for run in runs:
        by_target = run.get("test", {}).get("by_target")
        if by_target:
            grouped.setdefault(run["variant"], []).append(run["test"])
    table: dict = {}
    for variant, tests in grouped.items():
        for protocol in tests[0]["by_target"]["cold"]:
            for domain in tests[0]["by_target"]["cold"][protocol]:
                cell: dict = {"cases": {k: tests[0]["counts_by_target"][k][domain] for k in KINDS},
                              "seeds": len(tests)}
                for kind in KINDS:
                    cell[kind] = {m: _mean([t["by_target"][kind][protocol][domain][m] for t in tests])
                                  for m in METRICS}
                cold, warm = cell["cold"]["HR@10"], cell["warm"]["HR@10"]
                cell["cold_over_warm_HR@10"] = cold / warm if cold is not None and warm else None
                table.setdefault(variant, {}).setdefault(protocol, {})[domain] = cell
    return table


def _mean(values: list) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def target_kind_markdown(table: Mapping) -> str:
    """One row per variant, protocol and domain: cold and warm HR@10 / MRR and the ratio."""
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    lines = ["## Cold and warm targets", "",
             "A cold target is an item in no training sequence (withheld by data.cold_items, or seen only in "
             "valid/test): its ID vector was never fitted, so only content can rank it. Mean over seeds.", "",
             "| variant | protocol | domain | cold cases | warm cases | cold HR@10 | warm HR@10 | cold / warm "
             "HR@10 | cold MRR | warm MRR |", "|---|---|---|---|---|---|---|---|---|---|"]
    for variant, protocols in table.items():
        for protocol, domains in protocols.items():
            for domain, c in domains.items():
                lines.append(f"| {variant} | {protocol} | {domain} | {c['cases']['cold']} | {c['cases']['warm']} | "
                             f"{fmt(c['cold']['HR@10'])} | {fmt(c['warm']['HR@10'])} | "
                             f"{fmt(c['cold_over_warm_HR@10'])} | {fmt(c['cold']['MRR'])} | {fmt(c['warm']['MRR'])} |")
    return "\n".join(lines)
