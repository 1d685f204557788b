"""Model selection and early stopping on validation MRR, per domain (method.md: test at the best valid MRR).

Each domain keeps its own best epoch (and the model state from it). Training stops once neither domain
has improved for ``patience`` epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def flat_metrics(metrics: dict, prefix: str) -> dict[str, float]:
    """``{protocol: {domain: {metric: v}}}`` -> ``{'prefix/protocol/domain/metric': v}``."""
    return {f"{prefix}/{p}/{d}/{m}": float(v) for p, doms in metrics.items() for d, ms in doms.items()
            for m, v in ms.items()}


@dataclass
class Selection:
    protocol: str                                       # which protocol's MRR selects (sampled or full)
    patience: int
    best: dict[str, dict] = field(default_factory=dict)  # domain -> {"epoch", "mrr", "metrics"}
    stale_epochs: int = 0

    def update(self, epoch: int, metrics: dict) -> list[str]:
        """Record one epoch's validation metrics; returns the domains whose MRR improved."""
        improved = []
        for domain, ms in metrics[self.protocol].items():
            mrr = ms["MRR"]
            if math.isnan(mrr):                          # a domain without validation cases
                continue
            if domain not in self.best or mrr > self.best[domain]["mrr"]:
                self.best[domain] = {"epoch": epoch, "mrr": float(mrr),
                                     "metrics": {p: dict(metrics[p][domain]) for p in metrics}}
                improved.append(domain)
        self.stale_epochs = 0 if improved else self.stale_epochs + 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.stale_epochs >= self.patience

    def mean_best_mrr(self) -> float:
        return sum(b["mrr"] for b in self.best.values()) / max(len(self.best), 1)

    def state(self) -> dict:
        return {"protocol": self.protocol, "patience": self.patience, "best": self.best,
                "stale_epochs": self.stale_epochs}

    @classmethod
    def from_state(cls, state: dict) -> "Selection":
        return cls(state["protocol"], state["patience"], state["best"], state["stale_epochs"])
