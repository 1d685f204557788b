"""The outcome of one evaluation: metrics per protocol and domain, the case counts, and how they were made."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llm_emf import files


@dataclass
class EvalResult:
    """``metrics[protocol][domain_name][metric]``, e.g. ``metrics["full"]["Food"]["NDCG@10"]``.

    A domain without cases has NaN metrics (``null`` in JSON). ``n_candidates[protocol][domain]`` is the
    number of items each case is ranked among (before ``exclude_seen`` masking in ``full``).
    ``ranks[protocol][domain]`` keeps each case's rank (in memory only, for significance tests).
    ``by_target[kind][protocol][domain][metric]`` splits the cases by target kind: ``cold`` (an item in no
    training sequence, scored from its content alone) and ``warm``; ``counts_by_target[kind][domain]``.
    """

    split: str
    protocols: tuple[str, ...]
    metrics: dict[str, dict[str, dict[str, float]]]
    counts: dict[str, int]
    n_candidates: dict[str, dict[str, int]]
    info: dict = field(default_factory=dict)     # dataset, fingerprint, seed, ks, ties, negatives file, scorer
    ranks: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    by_target: dict[str, dict[str, dict[str, dict[str, float]]]] = field(default_factory=dict)
    counts_by_target: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def domains(self) -> list[str]:
        return list(self.counts)

    def to_dict(self) -> dict:
        return {"split": self.split, "protocols": list(self.protocols), "metrics": _clean(self.metrics),
                "counts": dict(self.counts), "n_candidates": self.n_candidates, "info": self.info,
                "by_target": {kind: _clean(m) for kind, m in self.by_target.items()},
                "counts_by_target": self.counts_by_target}

    @classmethod
    def from_dict(cls, d: dict) -> "EvalResult":
        by_target = {kind: _unclean(m) for kind, m in d.get("by_target", {}).items()}
        return cls(d["split"], tuple(d["protocols"]), _unclean(d["metrics"]), dict(d["counts"]), d["n_candidates"],
                   d.get("info", {}), by_target=by_target, counts_by_target=d.get("counts_by_target", {}))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> Path | str:
        """The JSON at ``path`` (a local path, returned as a Path, or an object-store URI), whole or absent."""
        files.write_text(path, self.to_json() + "\n")
        return str(path) if files.is_remote(path) else Path(path)

    def format_table(self, title: str = "") -> str:
        """One line per (protocol, domain): the protocol is named next to every number."""
        names = next((list(ms) for dom in self.metrics.values() for ms in dom.values()), [])
        head = f"{'protocol':<9} {'domain':<12} {'cases':>7} {'cands':>7} " + " ".join(f"{n:>8}" for n in names)
        lines = [title or f"{self.split} split, {self.info.get('dataset', '')} "
                          f"(ties {self.info.get('ties', '?')}, seed {self.info.get('seed', '?')})",
                 head, "-" * len(head)]
        # Cold/warm rows only where some target is cold (else "warm" repeats the overall line).
        kinds = list(self.by_target) if sum(self.counts_by_target.get("cold", {}).values()) else []
        for protocol in self.protocols:
            for domain, ms in self.metrics[protocol].items():
                rows = [(domain, ms, self.counts[domain])]
                rows += [(f"{domain[:7]} {kind}", self.by_target[kind][protocol][domain],
                          self.counts_by_target[kind][domain]) for kind in kinds]
                for label, values, n in rows:
                    cells = " ".join(f"{'-':>8}" if math.isnan(v) else f"{v:>8.4f}" for v in values.values())
                    lines.append(f"{protocol:<9} {label[:12]:<12} {n:>7} "
                                 f"{self.n_candidates[protocol][domain]:>7} {cells}")
        return "\n".join(lines)


def _clean(metrics: dict) -> dict:
    """NaN (a group without cases) -> None, for JSON."""
    return {p: {d: {m: None if math.isnan(v) else v for m, v in ms.items()} for d, ms in dom.items()}
            for p, dom in metrics.items()}


def _unclean(metrics: dict) -> dict:
    return {p: {d: {m: math.nan if v is None else float(v) for m, v in ms.items()} for d, ms in dom.items()}
            for p, dom in metrics.items()}
