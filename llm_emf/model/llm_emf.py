"""LLM-EMF (method.md stages 2-3): fused item vectors -> preference network -> per-domain scores and loss.

Fusion ``early``: one preference network over x_i = E_id[i] + a W_img E_img[i] + b W_tex E_tex[i];
scores s(i) = h^D_t . x_i. Fusion ``late``: one preference network per modality m over its own item
vectors, fused at the decision: P(i) = softmax(s_id)(i) + a softmax(s_img)(i) + b softmax(s_tex)(i),
normalised by the weight sum; training maximises log P of the target (a mixture likelihood, so learnable
a and b cannot grow without bound). An item lacking a modality gets no probability from that modality.

Loss per domain D (C2DSR): CE(h^D_t) "specific" + lambda * CE(H^{X+Y}_t) "shared", averaged over the
valid positions whose next item is in D, summed over X and Y. Each CE is a softmax over all of D's items, or
with train.loss=sampled over one sampled candidate set per domain and batch (sampled_loss.py).

``model.id_tables=per_encoder`` (an ablation) gives the mixed encoder and each domain's encoder their own ID
table (content parts stay shared). Each state is then scored with the table of the encoder it stands for:
the combined h^D and single S^D with domain D's table (they predict D; with model.head=single the domain tables
learn from D's own sequences alone, as a separate SASRec's), the shared term's H with the mixed table.
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
from .sampled_loss import LossPart, sampled_loss
from .item_scores import DotScores, ItemScores, MixtureScores, MixtureStream
from .items import EarlyFusion, FusionWeight, ItemVectors
from .network import PreferenceNetwork

MISSING = -1.0e4   # finite "minus infinity": keeps bf16 and all-missing domains free of NaN


class Stream(NamedTuple):
    """One preference network's pass: early fusion has one stream (``fused``), late fusion one per modality."""
    modality: str
    items: torch.Tensor             # (n_items, q) item vectors the states are scored against
    mixed: torch.Tensor             # (B, L, q) H^{X+Y}, states of the interleaved sequence
    domains: list[torch.Tensor]     # [h^X, h^Y], each (B, L, q): combined states (mixed + single + cross-attention)
    singles: list[torch.Tensor]     # [S^X, S^Y], each (B, L, q): single-domain states alone (no cross-domain input)
    domain_items: tuple | None = None   # model.id_tables=per_encoder: (X, Y) item vectors of the domain tables

    def items_for(self, domain: int, table: str = "domain") -> torch.Tensor:
        """(n_items, q) the vectors that score domain D's items from a ``table`` state: ``mixed`` (H) or
        ``domain`` (h^D, S^D); ``items`` unless model.id_tables=per_encoder (module doc)."""
        return self.items if self.domain_items is None or table == "mixed" else self.domain_items[domain]


def modalities_of(cfg: ModelConfig) -> tuple[str, ...]:
    return tuple(m for m, on in (("id", cfg.use_id), ("image", cfg.use_image), ("text", cfg.use_text)) if on)


class LLMEMF(nn.Module):
    def __init__(self, cfg: ModelConfig, n_x: int, n_y: int, features: ItemFeatures | None = None,
                 trained=None):
        super().__init__()
        self.cfg, self.n_x, self.n_y = cfg, n_x, n_y
        self.max_len = cfg.max_len
        self.modalities = modalities_of(cfg)
        self.per_encoder = cfg.id_tables == "per_encoder"
        self.vectors = ItemVectors(n_x, n_y, cfg, self.modalities, features, trained, 3 if self.per_encoder else 1)
        self.negatives = None       # train.loss=sampled: a NegativeSampler the training loop sets (training only)
        net = lambda: PreferenceNetwork(cfg.hidden_size, cfg.n_heads, cfg.n_blocks, cfg.max_len,  # noqa: E731
                                        cfg.dropout, cfg.cross_attention, cfg.positions, cfg.mixed_weight)
        # Per domain, which state scores its items: 0 the combined h^D, 1 the single-domain S^D. Set by
        # model.head (select: by validation, llm_emf.training.heads), saved with the weights.
        self.register_buffer("head_single", torch.tensor([cfg.head == "single"] * 2))
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
            return [_stream("fused", self.fusion(), self.net, batch)]
        out = []
        for m in self.modalities:
            per_encoder = m == "id" and self.per_encoder
            vecs = tuple(self.vectors.id_rows(table=t) for t in range(3)) if per_encoder else self.vectors.modality(m)
            out.append(_stream(m, vecs, self.nets[m], batch))
        return out

    def _log_probs(self, streams, states_of, domain: int, table: str = "domain") -> torch.Tensor:
        """(N, n_D) log-probabilities over domain D's items; ``states_of(stream) -> (N, q)``, a ``table`` state."""
        sl = self.domain_slice(domain)
        if self.cfg.fusion == "early":
            return F.log_softmax(states_of(streams[0]) @ streams[0].items_for(domain, table)[sl].T, dim=-1)
        parts, log_weights = [], []
        for stream in streams:
            has = self.vectors.has(stream.modality)[sl]                         # (n_D,)
            logits = (states_of(stream) @ stream.items_for(domain, table)[sl].T).float().masked_fill(~has, MISSING)
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
        # zero terms keep every branch in the graph (DDP wants a gradient for every parameter)
        loss = sum(s.mixed.sum() + sum(x.sum() for x in (*s.domains, *s.singles)) for s in streams) * 0.0
        n = torch.zeros((), dtype=torch.long, device=targets.device)
        for d in (0, 1):
            in_d = (targets != PAD) & in_domain(targets, self.n_x, d)               # (B, L)
            if not bool(in_d.any()):
                continue
            y = targets[in_d] - self.domain_slice(d).start                    # (N,)
            if self.training and self.negatives is not None and self.negatives.samples(d):
                loss = loss + self._sampled_domain_loss(streams, in_d, y, d)   # train.loss=sampled
                n = n + in_d.sum()
                continue
            if self.cfg.fusion == "early" and self.cfg.fused_loss:
                loss = loss + self._fused_domain_loss(streams[0], in_d, y, d)
                n = n + in_d.sum()
                continue
            for states_of, weight, table in self._loss_terms(d, in_d):
                log_probs = self._log_probs(streams, states_of, d, table)     # (N, n_D)
                loss = loss + weight * F.nll_loss(log_probs.float(), y)
            n = n + in_d.sum()
        return loss, n

    def _loss_terms(self, domain: int, in_d: torch.Tensor) -> list[tuple]:
        """``[(states_of(stream) -> (N, q), weight, table)]`` of domain D's loss: the combined state h^D
        ("specific", unless model.head=single), lambda * the mixed state H ("shared"), and the single-domain
        state S^D when model.head trains it (single, select). Terms of weight 0 are left out: the item matmul
        dominates. ``table``: which item vectors score the term (``Stream.items_for``)."""
        head = self.cfg.head
        terms = [(lambda s: s.domains[domain][in_d], 0.0 if head == "single" else 1.0, "domain"),
                 (lambda s: s.mixed[in_d], self.cfg.loss_weight, "mixed"),
                 (lambda s: s.singles[domain][in_d], 1.0 if head in ("single", "select") else 0.0, "domain")]
        return [term for term in terms if term[1] > 0]

    def _term_groups(self, domain: int, in_d: torch.Tensor) -> dict[str, list[tuple]]:
        """``_loss_terms`` as ``{table: [(states_of, weight)]}``, the terms scored by the same item vectors
        together: one group unless model.id_tables=per_encoder, so the default path computes as it always did."""
        groups: dict[str, list[tuple]] = {}
        for states_of, w, table in self._loss_terms(domain, in_d):
            groups.setdefault(table if self.per_encoder else "shared", []).append((states_of, w))
        return groups

    def _fused_domain_loss(self, stream: Stream, in_d: torch.Tensor, y: torch.Tensor, domain: int) -> torch.Tensor:
        """Early fusion's loss terms (``_loss_terms``) in one chunked softmax pass per item table."""
        loss, n, sl = 0.0, y.shape[0], self.domain_slice(domain)
        for table, terms in self._term_groups(domain, in_d).items():
            rows, weights = [states_of(stream) for states_of, _ in terms], [w for _, w in terms]   # each (N, q)
            row_weights = torch.cat([torch.full((n,), w / n, device=y.device) for w in weights])
            loss = loss + linear_cross_entropy(torch.cat(rows), stream.items_for(domain, table)[sl],
                                               y.repeat(len(rows)), row_weights)
        return loss

    def _sampled_domain_loss(self, streams: list[Stream], in_d: torch.Tensor, y: torch.Tensor,
                             domain: int) -> torch.Tensor:
        """train.loss=sampled: every loss term (``_loss_terms``) of every stream against one candidate set drawn
        for this domain and batch (llm_emf.model.sampled_loss); late fusion mixes the streams' likelihoods."""
        loss, n = 0.0, y.shape[0]
        late = self.cfg.fusion == "late"
        candidates = self.negatives.candidates(domain, y)               # one draw, whatever table scores
        for table, terms in self._term_groups(domain, in_d).items():
            row_weights = torch.cat([torch.full((n,), w / n, device=y.device) for _, w in terms])
            parts = [LossPart(torch.cat([states_of(s) for states_of, _ in terms]), s.items_for(domain, table),
                              self.vectors.has(s.modality) if late else None,
                              self.late_weights[s.modality]() if late else None) for s in streams]
            targets = (y + self.domain_slice(domain).start).repeat(len(terms))
            loss = loss + sampled_loss(parts, targets, candidates, row_weights)
        return loss

    # -- inference --------------------------------------------------------------------------------
    def build_eval_batch(self, inputs: Ragged) -> MixedBatch:
        return mixed_batch(inputs, self.n_x, self.max_len)

    @torch.no_grad()
    def score(self, batch: MixedBatch, domain: int) -> torch.Tensor:
        """(B, n_D) scores over all items of ``domain`` from the state after each row's last item."""
        streams = self._streams(batch)
        if self.cfg.fusion == "early":
            fused = streams[0]
            return self.head_states(fused, domain)[:, -1] @ fused.items_for(domain)[self.domain_slice(domain)].T
        return self._log_probs(streams, lambda s: self.head_states(s, domain)[:, -1], domain)

    @torch.no_grad()
    def item_scores(self, batch: MixedBatch, domain: int) -> ItemScores:
        """``score``'s scores as an :class:`ItemScores` (``llm_emf.model.item_scores``): the states after each
        row's last item and the domain's item vectors, scored a chunk of items at a time, never (B, n_D)."""
        streams = self._streams(batch)
        sl = self.domain_slice(domain)
        if self.cfg.fusion == "early":
            return DotScores(self.head_states(streams[0], domain)[:, -1].contiguous(), streams[0].items_for(domain)[sl])
        parts = [MixtureStream(self.head_states(s, domain)[:, -1].contiguous(), s.items_for(domain)[sl],
                               self.vectors.has(s.modality)[sl],
                               torch.log(self.late_weights[s.modality]().clamp(min=1e-6))) for s in streams]
        log_norm = torch.logsumexp(torch.stack([p.log_weight for p in parts]), dim=0)
        return MixtureScores(parts, log_norm, MISSING)

    def head_states(self, stream: Stream, domain: int) -> torch.Tensor:
        """(B, L, q) the states that score ``domain``'s items: combined h^D, or S^D where ``head_single`` says."""
        return stream.singles[domain] if bool(self.head_single[domain]) else stream.domains[domain]

    def embedding_penalty(self, batch: MixedBatch) -> torch.Tensor:
        """train.embedding_l2's penalty (``ItemVectors.id_penalty``) on the ID rows the batch reads: its inputs
        (mixed and single-domain sequences) and targets; per table under model.id_tables=per_encoder, where
        the mixed table serves the mixed sequence and a domain's table its own sequence, each also the targets."""
        targets = batch.targets.flatten()
        if not self.per_encoder:
            return self.vectors.id_penalty([torch.cat([batch.items.flatten(), *(s.flatten() for s in batch.seq),
                                                       targets])])
        return self.vectors.id_penalty([torch.cat([batch.items.flatten(), targets]),
                                        *(torch.cat([s.flatten(), targets]) for s in batch.seq)])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Weights saved before model.head existed scored with the combined state.
        state_dict.setdefault(prefix + "head_single", torch.zeros(2, dtype=torch.bool))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _stream(modality: str, vecs, net: PreferenceNetwork, batch: MixedBatch) -> Stream:
    """``net``'s pass over ``vecs``: (n_items, q), or a (mixed, X, Y) tuple under model.id_tables=per_encoder."""
    if isinstance(vecs, tuple):
        return Stream(modality, vecs[0], *net(vecs, batch), domain_items=vecs[1:])
    return Stream(modality, vecs, *net(vecs, batch))


def _init_weights(module: nn.Module) -> None:
    # Small normal init (as SASRec/nanoGPT); biases zero; LayerNorm at identity.
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
