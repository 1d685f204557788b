"""The outcome of one evaluation: metrics per protocol and domain, the case counts, and how they were made."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class EvalResult:
    """``metrics[protocol][domain_name][metric]``, e.g. ``metrics["full"]["Food"]["NDCG@10"]``.

    A domain without cases has NaN metrics (``null`` in JSON). ``n_candidates[protocol][domain]`` is the
    number of items each case is ranked among (before ``exclude_seen`` masking in ``full``).
    ``ranks[protocol][domain]`` keeps each case's rank (in memory only, for significance tests).
    """

    split: str
    protocols: tuple[str, ...]
    metrics: dict[str, dict[str, dict[str, float]]]
    counts: dict[str, int]
    n_candidates: dict[str, dict[str, int]]
    info: dict = field(default_factory=dict)     # dataset, fingerprint, seed, ks, ties, negatives file, scorer
    ranks: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def domains(self) -> list[str]:
        return list(self.counts)

    def to_dict(self) -> dict:
        def clean(v: float) -> float | None:
            return None if math.isnan(v) else v
        return {"split": self.split, "protocols": list(self.protocols),
                "metrics": {p: {d: {m: clean(v) for m, v in ms.items()} for d, ms in dom.items()}
                            for p, dom in self.metrics.items()},
                "counts": dict(self.counts), "n_candidates": self.n_candidates, "info": self.info}

    @classmethod
    def from_dict(cls, d: dict) -> "EvalResult":
        metrics = {p: {dn: {m: (math.nan if v is None else float(v)) for m, v in ms.items()} for dn, ms in dom.items()}
                   for p, dom in d["metrics"].items()}
        return cls(d["split"], tuple(d["protocols"]), metrics, dict(d["counts"]), d["n_candidates"], d.get("info", {}))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path

    def format_table(self, title: str = "") -> str:
        """One line per (protocol, domain): the protocol is named next to every number."""
        names = next((list(ms) for dom in self.metrics.values() for ms in dom.values()), [])
        head = f"{'protocol':<9} {'domain':<12} {'cases':>7} {'cands':>7} " + " ".join(f"{n:>8}" for n in names)
        lines = [title or f"{self.split} split, {self.info.get('dataset', '')} "
                          f"(ties {self.info.get('ties', '?')}, seed {self.info.get('seed', '?')})",
                 head, "-" * len(head)]
        for protocol in self.protocols:
            for domain, ms in self.metrics[protocol].items():
                values = " ".join(f"{'-':>8}" if math.isnan(v) else f"{v:>8.4f}" for v in ms.values())
                lines.append(f"{protocol:<9} {domain[:12]:<12} {self.counts[domain]:>7} "
                             f"{self.n_candidates[protocol][domain]:>7} {values}")
        return "\n".join(lines)
