"""Sampled softmax for large catalogs (``train.loss=sampled``): in-batch plus drawn negatives, log-Q corrected.

The full loss scores every item of the target's domain at every supervised position (~2 q n_D FLOP each way):
at hundreds of thousands of items per domain it is the whole training step (bench/results/catalog_scale.md).
Large-catalog recommenders train instead on a candidate set per batch (Jean et al. 2015; Yi et al. 2019;
Yang et al. 2020, "mixed negative sampling"), and so does this module:

- **Candidates** per domain and batch: the batch's targets in that domain (in-batch negatives, N draws from
  the training target distribution p) plus M items drawn with replacement from the sampler q
  (``train.sampled_negatives``), merged into unique items c with multiplicity k_c. One candidate set serves
  every row of the domain: the specific and shared terms, and every modality of late fusion.
- **log-Q correction.** c's expected count among the candidates is E_c = N p(c) + M q(c); its logit enters
  as s_c - log E_c + log k_c, i.e. every occurrence weighted 1 / E_c, so sum_c k_c exp(s_c) / E_c is an
  unbiased estimate of the softmax normaliser over all items. Using both sources' probabilities for every
  candidate (the balance heuristic of multiple importance sampling) rather than log p for in-batch items and
  log q for drawn ones keeps the weight of a rare item that happens to be a batch target bounded by the
  drawn share M q(c), where 1 / p(c) alone would be huge.
- **The target** enters with its own, uncorrected logit: its term of the normaliser is known exactly, and
  its occurrences among the candidates (accidental hits) are masked so it is not counted twice. With every
  item of the domain as candidates and no correction the loss is the full softmax exactly
  (tests/model/test_sampled_loss.py).

The loss is a training-time approximation only: validation, test and serving rank the full catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

LOSSES = ("auto", "full", "sampled")
MISSING = -1.0e4   # as llm_emf.model.llm_emf.MISSING: an item lacking a late-fusion modality gets no probability

# train.loss=auto: the full softmax up to this many items in a domain, sampled above. bench/train/catalog_scale.py
# (bench/results/catalog_scale.md; ID-only, q=64, batch 256, one CPU thread): sampled trains more sequences per
# CPU second from ~10k items (1.2x), 2.7x at 30k, 7.4x at 100k, 15x at 300k, 31x at 3M. The threshold sits above
# that speed crossover: up to 100k the full softmax costs at most ~7x per step, and it is the loss every quality
# number was measured with (docs/method.md, Stage 3).
SAMPLED_ABOVE = 100_000


def resolve_loss(loss: str, n_domain_items: int, threshold: int | None = None) -> str:
    """``full`` or ``sampled`` for a domain of ``n_domain_items``; ``auto`` samples above ``threshold``
    (default :data:`SAMPLED_ABOVE`)."""
    threshold = SAMPLED_ABOVE if threshold is None else threshold
    if loss not in LOSSES:
        raise ValueError(f"train.loss: expected one of {list(LOSSES)}, found {loss!r}")
    if loss != "auto":
        return loss
    return "sampled" if n_domain_items > threshold else "full"


def target_counts(sequences, n_items: int) -> np.ndarray:
    """(n_items,) how often each item is a next-item target in ``sequences`` (a compact ``Ragged``: every
    entry but the first of each row): the training target distribution that in-batch negatives follow."""
    keep = np.ones(sequences.values.size, dtype=bool)
    keep[sequences.starts[sequences.lengths > 0]] = False
    return np.bincount(sequences.values[keep], minlength=n_items)[:n_items].astype(np.int64)


class Candidates(NamedTuple):
    index: torch.Tensor     # (C,) unique item indices (into the item table the loss is given)
    bias: torch.Tensor      # (C,) fp32 added to each candidate's logit: log k_c - log E_c (0 without log-Q)


@dataclass
class LossPart:
    """One preference network's rows for the sampled loss: early fusion and SASRec have one part, late fusion
    one per modality (mixed by ``log_weight``)."""
    states: torch.Tensor                     # (R, q)
    items: torch.Tensor                      # (n_items, q) the table ``Candidates.index`` and targets index
    has: torch.Tensor | None = None          # (n_items,) bool: items carrying this modality (late fusion)
    weight: torch.Tensor | None = None       # scalar fusion weight (late fusion)


class NegativeSampler:
    """Draws the per-domain candidate sets of ``train.loss=sampled`` (training only; never checkpointed).

    ``counts`` (n_x + n_y,) training target counts (``target_counts``). ``alpha``: the sampler draws item c of
    the domain with probability proportional to counts[c] ** alpha; 0 (``train.sampled_alpha``'s default) is
    uniform over all the domain's items, cold ones included, as 0 ** 0 = 1. Uniform is the default because the
    in-batch negatives already follow popularity, so the drawn ones should reach what they never do: the
    long tail and untrained items (mixed negative sampling), which are also where the evaluator's negatives
    lie (full ranking, or uniform draws). It costs O(M) per draw at any catalog size.

    ``sampled`` says, per domain, whether that domain trains with this loss (``train.loss=auto`` may sample
    one domain and not the other). Draws come from a generator reseeded per epoch from (seed, epoch, rank)
    by ``set_epoch``, so a run resumed from an epoch's checkpoint draws what the uninterrupted run drew.
    ``log_q=False`` leaves the logits uncorrected (a plain softmax over the unique candidates).
    """

    def __init__(self, n_x: int, n_y: int, counts: np.ndarray, negatives: int, alpha: float = 0.0,
                 sampled: tuple[bool, bool] = (True, True), seed: int = 0, rank: int = 0, log_q: bool = True):
        if len(counts) != n_x + n_y:
            raise ValueError(f"target counts cover {len(counts)} items, the catalog has {n_x + n_y}")
        if negatives < 1:
            raise ValueError(f"train.sampled_negatives: expected >= 1, found {negatives}")
        self.offsets, self.sizes = (0, n_x), (n_x, n_y)
        self.negatives, self.alpha, self.sampled = int(negatives), float(alpha), tuple(sampled)
        self.seed, self.rank, self.log_q = int(seed), int(rank), log_q
        counts = np.asarray(counts, dtype=np.float64)
        self._p, self._q, self._cdf = [], [], []
        for lo, n in zip(self.offsets, self.sizes):
            c = counts[lo:lo + n]
            self._p.append(torch.from_numpy(c / max(c.sum(), 1.0)))           # in-batch: target distribution
            w = np.power(c, self.alpha)                                          # 0 ** 0 = 1: uniform
            if w.sum() <= 0:                                                     # no trained item: fall back
                w = np.ones(n)
            q = w / w.sum()
            self._q.append(torch.from_numpy(q))
            self._cdf.append(None if self.alpha == 0 else torch.from_numpy(np.cumsum(q)))
        self._on_device: dict = {}
        self.generator = torch.Generator()
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Reseed the draws for ``epoch`` (called by the training loop before each epoch)."""
        seed = np.random.SeedSequence([self.seed, epoch, self.rank, 0x5A3]).generate_state(1)[0]
        self.generator.manual_seed(int(seed))

    def samples(self, domain: int) -> bool:
        return self.sampled[domain]

    def probabilities(self, domain: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(p, q) of the domain's items on ``device``, fp32: target distribution and sampler distribution."""
        key = (domain, str(device))
        if key not in self._on_device:
            self._on_device[key] = (self._p[domain].to(device, torch.float32), self._q[domain].to(device, torch.float32))
        return self._on_device[key]

    def draw(self, domain: int) -> torch.Tensor:
        """(M,) domain-local item indices from q, on the CPU (the generator lives there, so draws do not depend
        on the training device)."""
        n, m = self.sizes[domain], self.negatives
        if self._cdf[domain] is None:
            return torch.randint(n, (m,), generator=self.generator)
        u = torch.rand(m, generator=self.generator, dtype=torch.float64)
        # right: the first item whose cumulative share exceeds u, so an item of weight 0 is never drawn
        return torch.searchsorted(self._cdf[domain], u, right=True).clamp_(max=n - 1)

    def candidates(self, domain: int, targets: torch.Tensor) -> Candidates:
        """The candidate set for the batch's ``targets`` (N,) of ``domain`` (domain-local indices); the
        returned indices are global (domain offset added), as the item tables the loss reads."""
        drawn = self.draw(domain).to(targets.device)
        items, k = torch.unique(torch.cat([targets, drawn]), return_counts=True)   # (C,), (C,)
        if self.log_q:
            p, q = self.probabilities(domain, targets.device)
            expected = targets.shape[0] * p[items] + self.negatives * q[items]
            bias = torch.log(k.float()) - torch.log(expected.clamp_min(1e-12))
        else:
            bias = torch.zeros(items.shape, dtype=torch.float32, device=targets.device)
        return Candidates(items + self.offsets[domain], bias)


def negative_sampler(loss: str, n_x: int, n_y: int, counts: np.ndarray, negatives: int, alpha: float, seed: int,
                     rank: int = 0, threshold: int | None = None) -> NegativeSampler | None:
    """The sampler ``train.loss`` asks for, or None when every domain trains with the full softmax."""
    sampled = tuple(resolve_loss(loss, n, threshold) == "sampled" for n in (n_x, n_y))
    if not any(sampled):
        return None
    return NegativeSampler(n_x, n_y, counts, negatives, alpha, sampled, seed, rank)


def sampled_log_prob(part: LossPart, targets: torch.Tensor, cands: Candidates) -> torch.Tensor:
    """(R,) the sampled-softmax log-probability of each row's target: its logit against the normaliser
    estimated from the candidates (log-Q corrected, the target's own occurrences masked)."""
    dtype = torch.promote_types(part.states.dtype, torch.float32)                # bf16 matmuls: softmax in fp32
    cand_vecs = part.items[cands.index]                                          # (C, q)
    logits = (part.states @ cand_vecs.T).to(dtype) + cands.bias                  # (R, C)
    pos = (part.states * part.items[targets]).sum(-1).to(dtype)                  # (R,)
    if part.has is not None:
        logits = logits.masked_fill(~part.has[cands.index], MISSING)
        pos = pos.masked_fill(~part.has[targets], MISSING)
    logits = logits.masked_fill(cands.index.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))  # accidental hits
    log_z = torch.logsumexp(torch.cat([pos.unsqueeze(1), logits], dim=1), dim=1)
    return pos - log_z


def sampled_loss(parts: list[LossPart], targets: torch.Tensor, cands: Candidates,
                 row_weights: torch.Tensor) -> torch.Tensor:
    """``-sum_r row_weights[r] * log P(target_r)`` over the candidate set. One part: its sampled softmax;
    several (late fusion): the mixture of their sampled softmaxes with the parts' weights, as the full loss
    mixes full softmaxes (an item lacking a modality gets no probability from it)."""
    if len(parts) == 1 and parts[0].weight is None:
        return -(row_weights * sampled_log_prob(parts[0], targets, cands)).sum()
    terms, log_weights = [], []
    for part in parts:
        log_w = torch.log(part.weight.clamp(min=1e-6))
        log_p = sampled_log_prob(part, targets, cands)
        if part.has is not None:
            log_p = log_p + (~part.has[targets]).float() * MISSING
        terms.append(log_p + log_w)
        log_weights.append(log_w)
    mixture = torch.logsumexp(torch.stack(terms), dim=0) - torch.logsumexp(torch.stack(log_weights), dim=0)
    return -(row_weights * mixture).sum()
