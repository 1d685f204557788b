"""Full-protocol ranks counted chunk by chunk (``chunked_target_ranks``) against the dense ``target_ranks``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from llm_emf.evaluation.metrics import chunked_target_ranks, target_ranks
from llm_emf.model.item_scores import DenseScores, DotScores, SeenItems

N = 23


def _dense_reference(scores, target, rows, cols, ties):
    """The dense path as the evaluator ran it: seen pairs at -inf (never the target), then target_ranks."""
    masked = scores.clone()
    keep = cols != target.numpy()[rows]
    masked[torch.as_tensor(rows[keep]), torch.as_tensor(cols[keep])] = -math.inf
    return target_ranks(masked, target, ties)


def _case(seed: int, rows: int = 9):
    g = np.random.default_rng(seed)
    scores = torch.as_tensor(g.integers(0, 4, size=(rows, N)), dtype=torch.float32)   # many exact ties
    target = torch.as_tensor(g.integers(0, N, size=rows))
    target[0], target[1] = 0, N - 1                                    # in the first and the last chunk
    seen_rows = np.repeat(np.arange(rows), 5)
    seen_cols = g.integers(0, N, size=rows * 5)
    return scores, target, seen_rows, seen_cols


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("chunk", [1, 2, 5, N - 1, N, N + 7])
@pytest.mark.parametrize("exclude_seen", [False, True])
def test_chunked_ranks_equal_dense_ranks_with_exact_ties(ties, chunk, exclude_seen):
    for seed in range(5):
        scores, target, rows, cols = _case(seed)
        if exclude_seen:
            keep = cols != target.numpy()[rows]                        # the evaluator never lists the target
            seen = SeenItems(rows[keep], cols[keep], N)
            expected = _dense_reference(scores, target, rows, cols, ties)
        else:
            seen, expected = None, target_ranks(scores, target, ties)
        got = chunked_target_ranks(DenseScores(scores), target, ties, seen, chunk=chunk)
        assert got.tolist() == expected.tolist()
        assert got.dtype == torch.long


def test_a_seen_target_stays_a_candidate_and_nan_and_inf_follow_the_dense_rules():
    scores = torch.tensor([[1.0, 2.0, 2.0, 0.5],
                           [math.nan, 1.0, 3.0, 0.0],          # NaN target: worst rank
                           [-math.inf, 1.0, 3.0, 0.0],         # -inf target ties with the masked items
                           [1.0, math.nan, 1.0, 0.0]])         # a NaN candidate counts neither way
    target = torch.tensor([1, 0, 0, 2])
    # row 0 lists its own target (it stays a candidate) and its tied rival (masked: below the target)
    rows, cols = np.array([0, 0, 2, 2]), np.array([1, 2, 1, 3])
    for ties, by_hand in (("pessimistic", [1, 4, 4, 2]), ("optimistic", [1, 4, 2, 1])):
        keep = cols != target.numpy()[rows]
        expected = _dense_reference(scores, target, rows, cols, ties)
        assert expected.tolist() == by_hand
        for chunk in (1, 3, 4):
            got = chunked_target_ranks(DenseScores(scores), target, ties, SeenItems(rows, cols, 4), chunk=chunk)
            assert got.tolist() == expected.tolist()
            without_target = SeenItems(rows[keep], cols[keep], 4)
            assert chunked_target_ranks(DenseScores(scores), target, ties, without_target, chunk).tolist() == \
                expected.tolist()


def test_integer_scores_rank_like_their_float_values():
    scores = torch.tensor([[3, 1, 3, 2], [0, 0, 0, 0]])
    target = torch.tensor([0, 2])
    for ties in ("pessimistic", "optimistic"):
        assert chunked_target_ranks(DenseScores(scores), target, ties, chunk=2).tolist() == \
            target_ranks(scores, target, ties).tolist()


@pytest.mark.parametrize("rows", [1, 2, 5, 17, 128])
def test_items_with_equal_vectors_tie_exactly_in_every_chunking(rows):
    """Cold items share one ID vector: equal vectors must score equal to the target's in every chunk, so the
    pessimistic rule counts them all, whatever the chunk width and batch size (the BLAS kernel for a product
    depends on its shape, and a one-row product's on the item's position)."""
    g = torch.Generator().manual_seed(rows)
    n, q = 301, 64
    items = torch.randn(n, q, generator=g)
    shared = torch.randn(q, generator=g)
    twins = torch.unique(torch.cat([torch.randperm(n, generator=g)[:36], torch.tensor([0, n - 3, n - 2, n - 1])]))
    items[twins] = shared
    states = torch.randn(rows, q, generator=g)
    target = twins[torch.arange(rows) % len(twins)]
    target[0] = twins[-1]
    # float64 reference, computed the same way for every item: equal vectors give equal scores
    exact = (items.double()[None] * states.double()[:, None]).sum(-1)
    reference = target_ranks(exact, target, "pessimistic")
    optimistic = target_ranks(exact, target, "optimistic")
    assert (reference - optimistic == len(twins) - 1).all()            # the twins really tie
    for chunk in (1, 2, 3, 7, 64, 256, n - 1, n, n + 3):
        scores = DotScores(states, items)
        assert chunked_target_ranks(scores, target, "pessimistic", chunk=chunk).tolist() == reference.tolist()
        assert chunked_target_ranks(scores, target, "optimistic", chunk=chunk).tolist() == optimistic.tolist()


def test_bad_arguments():
    scores = DenseScores(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="ties must be one of"):
        chunked_target_ranks(scores, torch.tensor([0, 1]), ties="random")
    with pytest.raises(ValueError, match=r"expected target_col \(2,\)"):
        chunked_target_ranks(scores, torch.tensor([0]))
    with pytest.raises(ValueError, match="chunk size: expected a positive number of items, found 0"):
        chunked_target_ranks(scores, torch.tensor([0, 1]), chunk=0)
