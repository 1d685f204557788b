"""The single-domain baseline: one SASRec per domain, each trained on its own domain's subsequences.

It shares the item-vector code with LLM-EMF (ID by default; modalities fuse early if switched on) but
never sees the other domain: the X model reads only S^X and predicts the next X item, and likewise for Y.
Full-softmax cross-entropy at every position (method.md's measured lesson), or with train.loss=sampled a
sampled softmax over in-batch and drawn negatives (sampled_loss.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from llm_emf.config.model import ModelConfig
from llm_emf.data.schema import domain_slice

from .batch import PAD, Ragged, single_domain_batch
from .features import ItemFeatures
from .fused_loss import linear_cross_entropy
from .item_scores import DotScores
from .items import EarlyFusion, ItemVectors
from .layers import CausalEncoder
from .llm_emf import _init_weights, modalities_of
from .network import embed
from .sampled_loss import LossPart, sampled_loss


@dataclass
class DomainBatch:
    inputs: tuple[torch.Tensor, torch.Tensor]                # (B, L) X-only and Y-only windows, PAD = -1
    targets: tuple[torch.Tensor, torch.Tensor] | None = None  # (B, L) next D-item, PAD = -1

    def to(self, device) -> "DomainBatch":
        mv = lambda ts: None if ts is None else tuple(t.to(device, non_blocking=True) for t in ts)  # noqa: E731
        return DomainBatch(mv(self.inputs), mv(self.targets))


class SASRecPair(nn.Module):
    def __init__(self, cfg: ModelConfig, n_x: int, n_y: int, features: ItemFeatures | None = None,
                 trained=None):
        super().__init__()
        self.cfg, self.n_x, self.n_y, self.max_len = cfg, n_x, n_y, cfg.max_len
        self.vectors = ItemVectors(n_x, n_y, cfg, modalities_of(cfg), features, trained)
        self.fusion = EarlyFusion(self.vectors, cfg)
        self.negatives = None       # train.loss=sampled: a NegativeSampler the training loop sets (training only)
        self.encoders = nn.ModuleList(CausalEncoder(cfg.hidden_size, cfg.n_heads, cfg.n_blocks, cfg.max_len,
                                                    cfg.dropout, cfg.positions) for _ in range(2))
        self.apply(_init_weights)

    def domain_slice(self, domain: int) -> slice:
        return domain_slice(self.n_x, self.n_y, domain)

    def build_training_batch(self, sequences: Ragged) -> DomainBatch:
        pairs = [single_domain_batch(sequences, self.n_x, d, self.max_len, training=True) for d in (0, 1)]
        return DomainBatch(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))

    def build_eval_batch(self, inputs: Ragged) -> DomainBatch:
        return DomainBatch(tuple(single_domain_batch(inputs, self.n_x, d, self.max_len, training=False)[0]
                                 for d in (0, 1)))

    def _states(self, vecs: torch.Tensor, items: torch.Tensor, domain: int) -> torch.Tensor:
        return self.encoders[domain](embed(vecs, items), items != PAD)        # (B, L, q)

    def forward(self, batch: DomainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        vecs = self.fusion()                                                  # (n_items, q)
        loss = vecs.sum() * 0.0
        n = torch.zeros((), dtype=torch.long, device=vecs.device)
        for d in (0, 1):
            states = self._states(vecs, batch.inputs[d], d)                   # (B, L, q)
            sel = batch.targets[d] != PAD                                     # (B, L)
            if not bool(sel.any()):
                loss = loss + states.sum() * 0.0
                continue
            sl = self.domain_slice(d)
            y = batch.targets[d][sel] - sl.start                              # (N,)
            if self.training and self.negatives is not None and self.negatives.samples(d):   # train.loss=sampled
                weights = torch.full(y.shape, 1.0 / y.shape[0], device=y.device)
                loss = loss + sampled_loss([LossPart(states[sel], vecs)], y + sl.start,
                                           self.negatives.candidates(d, y), weights)
            elif self.cfg.fused_loss:
                weights = torch.full(y.shape, 1.0 / y.shape[0], device=y.device)
                loss = loss + linear_cross_entropy(states[sel], vecs[sl], y, weights)
            else:
                logits = states[sel] @ vecs[sl].T                             # (N, n_D)
                loss = loss + F.cross_entropy(logits.float(), y)
            n = n + sel.sum()
        return loss, n

    def embedding_penalty(self, batch: DomainBatch) -> torch.Tensor:
        """train.embedding_l2's penalty (``ItemVectors.id_penalty``) on the ID rows the batch reads: inputs, targets."""
        return self.vectors.id_penalty([torch.cat([t.flatten() for t in (*batch.inputs, *batch.targets)])])

    @torch.no_grad()
    def score(self, batch: DomainBatch, domain: int) -> torch.Tensor:
        vecs = self.fusion()
        states = self._states(vecs, batch.inputs[domain], domain)
        return states[:, -1] @ vecs[self.domain_slice(domain)].T             # (B, n_D)

    @torch.no_grad()
    def item_scores(self, batch: DomainBatch, domain: int) -> DotScores:
        """``score``'s scores, computed a chunk of items at a time (``llm_emf.model.item_scores``)."""
        vecs = self.fusion()
        states = self._states(vecs, batch.inputs[domain], domain)
        return DotScores(states[:, -1].contiguous(), vecs[self.domain_slice(domain)])
