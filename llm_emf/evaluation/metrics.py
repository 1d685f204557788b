"""Rank-based metrics for next-item prediction: the rank of the target among its candidates, then MRR,
NDCG@k and HR@k (method.md, "Protocol and metrics"; the formulas of C2DSR's ``cal_test_score``).

Tie handling. method.md says: "Rank = 1 + number of candidates with a strictly higher score (ties count
against the model)". The two halves disagree when another candidate has exactly the target's score, so
both readings are implemented and named:

- ``ties="pessimistic"`` (default): rank = 1 + #{c != target : s_c > s_t} + #{c != target : s_c == s_t}.
  Every tied candidate is placed above the target, so ties count against the model and a model that
  scores everything equally gets the worst rank, never the best.
- ``ties="optimistic"``: rank = 1 + #{c : s_c > s_t}, the strictly-higher count alone (C2DSR's code,
  which also adds a 1e-5 margin). Tied candidates are placed below the target.

With continuous model scores ties are rare and both agree; they differ for count-based scorers such as
the popularity baseline, where many items share a count. A NaN target score gets the worst rank under
either rule (a broken model must not look good).
"""

from __future__ import annotations

import math

import torch

from llm_emf.model.item_scores import ItemScores, SeenItems

TIE_RULES = ("pessimistic", "optimistic")


def target_ranks(scores: torch.Tensor, target_col: torch.Tensor, ties: str = "pessimistic") -> torch.Tensor:
    """1-based rank of each row's target among that row's candidates.

    scores: ``(B, C)`` candidate scores; target_col: ``(B,)`` column of the target in each row.
    Candidates scored ``-inf`` (masked) can only be above the target if the target itself is ``-inf``.
    Returns ``(B,)`` int64.
    """
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}, found '{ties}'")
    if scores.dim() != 2 or target_col.shape != scores.shape[:1]:
        raise ValueError(f"expected scores (B, C) and target_col (B,), found {tuple(scores.shape)} and "
                         f"{tuple(target_col.shape)}")
    target_col = target_col.to(scores.device, torch.long)
    target_score = scores.gather(1, target_col[:, None])             # (B, 1)
    higher = (scores > target_score).sum(dim=1)                      # (B,) the target is never > itself
    if ties == "pessimistic":
        tied = (scores == target_score).sum(dim=1) - 1               # (B,) minus the target itself
        ranks = 1 + higher + tied
    else:
        ranks = 1 + higher
    n_cand = scores.shape[1]
    return torch.where(torch.isnan(target_score[:, 0]), torch.full_like(ranks, n_cand), ranks)


def chunked_target_ranks(scores: ItemScores, target_col: torch.Tensor, ties: str = "pessimistic",
                         seen: SeenItems | None = None, chunk: int | None = None) -> torch.Tensor:
    """:func:`target_ranks` over all ``scores.n_items`` columns, one chunk of items at a time.

    A rank needs only how many candidates score above (and, pessimistic, equal to) the target, so each
    chunk adds its counts and is dropped: memory is one ``(B, chunk)`` block (``chunk`` items, default the
    byte budget's, ``llm_emf.model.item_scores.chunk_size``). ``seen`` pairs are set to -inf first, as a masked
    dense matrix holds them. The target's score comes from ``scores.target_scores`` (computed as its chunk
    computes it), and its own column is left out of the counts, so it never counts against itself. Same
    result as ``target_ranks`` on the dense (masked) matrix when the scores are the same.
    """
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {TIE_RULES}, found '{ties}'")
    if target_col.shape != (scores.n_rows,):
        raise ValueError(f"expected target_col ({scores.n_rows},), found {tuple(target_col.shape)}")
    device = scores.device
    target_col = target_col.to(device, torch.long)
    width = scores.width(chunk)
    target_score = _floating(scores.target_scores(target_col, width))[:, None]      # (B, 1)
    above = torch.zeros(scores.n_rows, dtype=torch.long, device=device)
    for lo, block in scores.chunks(width):                         # block: (B, C), ours to modify
        block = _floating(block)
        if seen is not None:
            seen.mask(block, lo)
        here = torch.nonzero((target_col >= lo) & (target_col < lo + block.shape[1])).flatten()
        block[here, target_col[here] - lo] = math.nan              # NaN is neither above nor tied
        # pessimistic: 1 + #above + #tied = 1 + #(>=), one pass over the block
        above += (block >= target_score if ties == "pessimistic" else block > target_score).sum(dim=1)
    ranks = 1 + above
    return torch.where(torch.isnan(target_score[:, 0]), torch.full_like(ranks, scores.n_items), ranks)


def _floating(t: torch.Tensor) -> torch.Tensor:
    # integer scores (counts) become float64, exact to 2**53, so -inf and NaN can mark masked and target columns
    return t if t.is_floating_point() else t.double()


def metric_names(ks: list[int] | tuple[int, ...]) -> list[str]:
    """Names in report order: MRR, NDCG@k for k > 1 (NDCG@1 equals HR@1), then HR@k."""
    ks = sorted(set(int(k) for k in ks))
    return ["MRR"] + [f"NDCG@{k}" for k in ks if k > 1] + [f"HR@{k}" for k in ks]


def metric_sums(ranks: torch.Tensor, ks: list[int] | tuple[int, ...]) -> dict[str, float]:
    """Per-metric sums over cases (divide by the case count for means; sums merge across batches).

    ranks: ``(N,)`` 1-based ranks. NDCG@k = 1/log2(rank+1) if rank <= k else 0 (one relevant item, so
    the ideal DCG is 1); HR@k = [rank <= k]; MRR = 1/rank. A k at or above the candidate count simply
    makes HR@k = 1 for every case.
    """
    r = ranks.to(torch.float64)
    sums = {"MRR": (1.0 / r).sum().item()}
    gain = 1.0 / torch.log2(r + 1.0)                                 # (N,)
    for k in sorted(set(int(k) for k in ks)):
        if k < 1:
            raise ValueError(f"cut-off k must be >= 1, found {k}")
        hit = r <= k                                                 # (N,) bool
        if k > 1:
            sums[f"NDCG@{k}"] = torch.where(hit, gain, torch.zeros_like(gain)).sum().item()
        sums[f"HR@{k}"] = hit.sum().item()
    return {name: float(sums[name]) for name in metric_names(ks)}


def metrics_from_ranks(ranks: torch.Tensor, ks: list[int] | tuple[int, ...]) -> dict[str, float]:
    """Mean metrics over the cases in ``ranks``; NaN for every metric when there are no cases."""
    n = int(ranks.numel())
    if n == 0:
        return {name: math.nan for name in metric_names(ks)}
    return {name: s / n for name, s in metric_sums(ranks, ks).items()}
