"""LLM-EMF (method.md stages 2-3): fused item vectors -> preference network -> per-domain scores and loss.

Fusion ``early``: one preference network over x_i = E_id[i] + a W_img E_img[i] + b W_tex E_tex[i];
scores s(i) = h^D_t . x_i. Fusion ``late``: one preference network per modality m over its own item
vectors, fused at the decision: P(i) = softmax(s_id)(i) + a softmax(s_img)(i) + b softmax(s_tex)(i),
normalised by the weight sum; training maximises log P of the target (a mixture likelihood, so learnable
a and b cannot grow without bound). An item lacking a modality gets no probability from that modality.

Loss per domain D (C2DSR): CE(h^D_t) "specific" + lambda * CE(H^{X+Y}_t) "shared", averaged over the
valid positions whose next item is in D, summed over X and Y.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from llm_emf.config.model import ModelConfig
from llm_emf.data.schema import domain_slice, in_domain

from .batch import PAD, MixedBatch, Ragged, mixed_batch, training_batch
from .features import ItemFeatures
from .fused_loss import linear_cross_entropy
from .items import EarlyFusion, FusionWeight, ItemVectors
from .network import PreferenceNetwork

MISSING = -1.0e4   # finite "minus infinity": keeps bf16 and all-missing domains free of NaN


class Stream(NamedTuple):
    """One preference network's pass: early fusion has one stream (``fused``), late fusion one per modality."""
    modality: str
    items: torch.Tensor             # (n_items, q) item vectors the states are scored against
    mixed: torch.Tensor             # (B, L, q) H^{X+Y}, states of the interleaved sequence
    domains: list[torch.Tensor]     # [h^X, h^Y], each (B, L, q): single-domain states (with cross-attention)


def modalities_of(cfg: ModelConfig) -> tuple[str, ...]:
    return tuple(m for m, on in (("id", cfg.use_id), ("image", cfg.use_image), ("text", cfg.use_text)) if on)


class LLMEMF(nn.Module):
    def __init__(self, cfg: ModelConfig, n_x: int, n_y: int, features: ItemFeatures | None = None,
                 trained=None):
        super().__init__()
        self.cfg, self.n_x, self.n_y = cfg, n_x, n_y
        self.max_len = cfg.max_len
        self.modalities = modalities_of(cfg)
        self.vectors = ItemVectors(n_x, n_y, cfg, self.modalities, features, trained)
        net = lambda: PreferenceNetwork(cfg.hidden_size, cfg.n_heads, cfg.n_blocks, cfg.max_len,  # noqa: E731
                                        cfg.dropout, cfg.cross_attention, cfg.positions)
        if cfg.fusion == "early":
            self.fusion = EarlyFusion(self.vectors, cfg)
            self.net = net()
        else:
            self.nets = nn.ModuleDict({m: net() for m in self.modalities})
            given = {"id": 1.0, "image": cfg.image_weight, "text": cfg.text_weight}
            # The ID weight stays fixed at 1 (the reference the others are relative to).
            self.late_weights = nn.ModuleDict({m: FusionWeight(given[m], cfg.learnable_weights and m != "id")
                                               for m in self.modalities})
        self.apply(_init_weights)

    # -- domain helpers ------------------------------------------------------------------------
    def domain_slice(self, domain: int) -> slice:
        return domain_slice(self.n_x, self.n_y, domain)

    def _streams(self, batch: MixedBatch) -> list[Stream]:
        """One stream per preference network: a single fused one for early fusion."""
        if self.cfg.fusion == "early":
            vecs = self.fusion()
            return [Stream("fused", vecs, *self.net(vecs, batch))]
        out = []
        for m in self.modalities:
            vecs = self.vectors.modality(m)
            out.append(Stream(m, vecs, *self.nets[m](vecs, batch)))
        return out

    def _log_probs(self, streams, states_of, domain: int) -> torch.Tensor:
        """(N, n_D) log-probabilities over domain D's items; ``states_of(stream) -> (N, q)``."""
        sl = self.domain_slice(domain)
        if self.cfg.fusion == "early":
            return F.log_softmax(states_of(streams[0]) @ streams[0].items[sl].T, dim=-1)
        parts, log_weights = [], []
        for stream in streams:
            has = self.vectors.has(stream.modality)[sl]                         # (n_D,)
            logits = (states_of(stream) @ stream.items[sl].T).float().masked_fill(~has, MISSING)
            w = self.late_weights[stream.modality]().clamp(min=1e-6)
            parts.append(F.log_softmax(logits, dim=-1) + torch.log(w) + (~has).float() * MISSING)
            log_weights.append(torch.log(w))
        mixture = torch.logsumexp(torch.stack(parts), dim=0)                    # (N, n_D)
        return mixture - torch.logsumexp(torch.stack(log_weights), dim=0)

    # -- training --------------------------------------------------------------------------------
    def build_training_batch(self, sequences: Ragged) -> MixedBatch:
        return training_batch(sequences, self.n_x, self.max_len)

    def forward(self, batch: MixedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (loss, number of supervised positions)."""
        streams = self._streams(batch)
        targets = batch.targets                                                 # (B, L)
        loss = streams[0].mixed.sum() * 0.0                                     # keeps every branch in the graph
        n = torch.zeros((), dtype=torch.long, device=targets.device)
        for d in (0, 1):
            in_d = (targets != PAD) & in_domain(targets, self.n_x, d)               # (B, L)
            if not bool(in_d.any()):
                loss = loss + sum(s.domains[d].sum() for s in streams) * 0.0
                continue
            y = targets[in_d] - self.domain_slice(d).start                    # (N,)
            if self.cfg.fusion == "early" and self.cfg.fused_loss:
                loss = loss + self._fused_domain_loss(streams[0], in_d, y, d)
                n = n + in_d.sum()
                continue
            specific = self._log_probs(streams, lambda s: s.domains[d][in_d], d)   # (N, n_D)
            loss = loss + F.nll_loss(specific.float(), y)
            if self.cfg.loss_weight > 0:                    # the item matmul dominates the step: skip it when unused
                shared = self._log_probs(streams, lambda s: s.mixed[in_d], d)
                loss = loss + self.cfg.loss_weight * F.nll_loss(shared.float(), y)
            n = n + in_d.sum()
        return loss, n

    def _fused_domain_loss(self, stream: Stream, in_d: torch.Tensor, y: torch.Tensor, domain: int) -> torch.Tensor:
        """The specific and shared terms of early fusion in one chunked softmax pass (same items)."""
        rows, weights = [stream.domains[domain][in_d]], [1.0]                 # (N, q)
        if self.cfg.loss_weight > 0:
            rows.append(stream.mixed[in_d])
            weights.append(self.cfg.loss_weight)
        n = y.shape[0]
        row_weights = torch.cat([torch.full((n,), w / n, device=y.device) for w in weights])
        return linear_cross_entropy(torch.cat(rows), stream.items[self.domain_slice(domain)], y.repeat(len(rows)),
                                    row_weights)

    # -- inference --------------------------------------------------------------------------------
    def build_eval_batch(self, inputs: Ragged) -> MixedBatch:
        return mixed_batch(inputs, self.n_x, self.max_len)

    @torch.no_grad()
    def score(self, batch: MixedBatch, domain: int) -> torch.Tensor:
        """(B, n_D) scores over all items of ``domain`` from the state after each row's last item."""
        streams = self._streams(batch)
        if self.cfg.fusion == "early":
            fused = streams[0]
            return fused.domains[domain][:, -1] @ fused.items[self.domain_slice(domain)].T
        return self._log_probs(streams, lambda s: s.domains[domain][:, -1], domain)


def _init_weights(module: nn.Module) -> None:
    # Small normal init (as SASRec/nanoGPT); biases zero; LayerNorm at identity.
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
