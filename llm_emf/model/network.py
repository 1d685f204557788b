"""The preference network of stage 2: three causal encoders, cross-domain attention, C2DSR combination.

Given item vectors (n_items, q) and a :class:`MixedBatch`, it returns the mixed states H^{X+Y} and, for
each domain D, the combined states h^D_t = alpha * H^{X+Y}_t + S^D_{last D-position <= t} (+ cross-attention
output at that position when enabled; alpha is ``model.mixed_weight``, 1 in the paper) and the single-domain
states S^D_{last D-position <= t} alone, before cross-attention: what a per-domain SASRec would read, the
head ``model.head=select`` can fall back to. Every state at mixed column t depends only on items at columns
<= t, so training can supervise all positions at once.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .batch import PAD, MixedBatch
from .layers import CausalEncoder, CrossDomainAttention


def embed(vectors: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """(n_items, q) vectors, (B, L) item indices with PAD -> (B, L, q), zero at pads."""
    valid = items != PAD
    return vectors[items.clamp(min=0)] * valid.unsqueeze(-1).to(vectors.dtype)


def gather_columns(states: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """states (B, L, q), cols (B, L) with PAD -> (B, L, q): states[b, cols[b, t]], zero where PAD."""
    idx = cols.clamp(min=0).unsqueeze(-1).expand(-1, -1, states.shape[-1])  # (B, L, q)
    return states.gather(1, idx) * (cols != PAD).unsqueeze(-1).to(states.dtype)


class PreferenceNetwork(nn.Module):
    def __init__(self, d: int, n_heads: int, n_blocks: int, max_len: int, dropout: float, cross_attention: bool,
                 positions: str = "relative", mixed_weight: float = 1.0):
        super().__init__()
        self.mixed_weight = mixed_weight
        make = lambda: CausalEncoder(d, n_heads, n_blocks, max_len, dropout, positions)  # noqa: E731
        self.mixed = make()
        self.single = nn.ModuleList([make(), make()])                            # X, Y
        self.cross = nn.ModuleList([CrossDomainAttention(d, n_heads, dropout) for _ in range(2)]) \
            if cross_attention else None

    def forward(self, vectors: torch.Tensor | tuple[torch.Tensor, ...], batch: MixedBatch
                ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        # vectors: (n_items, q), or (mixed, X, Y) one per encoder (model.id_tables=per_encoder).
        # Returns H (B, L, q), [h^X, h^Y] and [S^X, S^Y] at mixed columns, each (B, L, q).
        per_encoder = vectors if isinstance(vectors, tuple) else (vectors,) * 3
        mixed_valid = batch.items != PAD                                         # (B, L)
        H = self.mixed(embed(per_encoder[0], batch.items), mixed_valid)         # (B, L, q)
        combined, singles = [], []
        for d in (0, 1):
            seq = batch.seq[d]
            S = self.single[d](embed(per_encoder[1 + d], seq), seq != PAD)      # (B, L, q)
            singles.append(gather_columns(S, batch.last[d]))                    # (B, L, q)
            if self.cross is not None:
                S = S + self.cross[d](S, H, batch.time[d], mixed_valid)        # (B, L, q)
                single_at_mixed = gather_columns(S, batch.last[d])
            else:
                single_at_mixed = singles[-1]
            mixed = H if self.mixed_weight == 1.0 else H * self.mixed_weight
            combined.append(mixed + single_at_mixed)                            # (B, L, q)
        return H, combined, singles
