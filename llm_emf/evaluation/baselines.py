"""Non-learned scorers: a sanity floor every trained model must beat."""

from __future__ import annotations

import pyarrow as pa
import torch

from llm_emf.data.cold import train_counts
from llm_emf.data.schema import DOMAIN_X, Dataset


class PopularityScorer:
    """Score every item of the domain by how often it occurs in the training split (same for all users).

    Many items share a count (often zero), so this scorer is where ``eval.ties`` matters most.
    """

    name = "popularity"

    def __init__(self, dataset: Dataset):
        self.counts = torch.as_tensor(train_counts(dataset), dtype=torch.float32)   # (n_items,)
        self.n_x = dataset.n_x

    def __call__(self, rows: pa.Table, domain: int) -> torch.Tensor:
        scores = self.counts[:self.n_x] if domain == DOMAIN_X else self.counts[self.n_x:]   # (n_domain,)
        return scores.expand(rows.num_rows, -1)                               # (B, n_domain), a view
