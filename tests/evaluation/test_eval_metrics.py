"""Ranks and metrics against hand-computed values."""

import math

import pytest
import torch

from llm_emf.evaluation.metrics import metric_names, metrics_from_ranks, target_ranks

pytestmark = pytest.mark.unit


def test_rank_counts_strictly_higher_scores():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3],     # target col 2 (0.5): only 0.9 is higher -> rank 2
                           [0.1, 0.9, 0.5, 0.3],     # target col 1 (0.9): best -> rank 1
                           [0.1, 0.9, 0.5, 0.3]])    # target col 0 (0.1): ranked last -> rank 4
    ranks = target_ranks(scores, torch.tensor([2, 1, 0]))
    assert ranks.tolist() == [2, 1, 4]


def test_ties_count_against_the_model_by_default_and_for_it_when_optimistic():
    scores = torch.tensor([[0.7, 0.5, 0.5, 0.5, 0.2]])   # target col 1 ties with cols 2 and 3, below col 0
    target = torch.tensor([1])
    assert target_ranks(scores, target).tolist() == [4]                      # 1 + 1 higher + 2 tied
    assert target_ranks(scores, target, ties="pessimistic").tolist() == [4]
    assert target_ranks(scores, target, ties="optimistic").tolist() == [2]   # 1 + 1 strictly higher


def test_constant_scorer_gets_the_worst_rank_under_pessimistic_ties():
    scores = torch.zeros(3, 10)
    assert target_ranks(scores, torch.tensor([0, 4, 9])).tolist() == [10, 10, 10]
    assert target_ranks(scores, torch.tensor([0, 4, 9]), ties="optimistic").tolist() == [1, 1, 1]


def test_masked_candidates_and_nan_target():
    scores = torch.tensor([[-math.inf, 0.2, -math.inf], [math.nan, 0.1, 0.3]])
    assert target_ranks(scores, torch.tensor([1, 0])).tolist() == [1, 3]    # NaN target: worst rank


def test_bad_tie_rule_and_shapes_are_rejected():
    with pytest.raises(ValueError, match="ties must be one of"):
        target_ranks(torch.zeros(1, 2), torch.tensor([0]), ties="random")
    with pytest.raises(ValueError, match=r"expected scores \(B, C\)"):
        target_ranks(torch.zeros(2, 3), torch.tensor([0]))


def test_metrics_hand_computed():
    ranks = torch.tensor([1, 3, 7, 12])
    m = metrics_from_ranks(ranks, [1, 5, 10])
    assert list(m) == ["MRR", "NDCG@5", "NDCG@10", "HR@1", "HR@5", "HR@10"]
    assert m["MRR"] == pytest.approx((1 + 1 / 3 + 1 / 7 + 1 / 12) / 4)
    assert m["HR@1"] == pytest.approx(0.25)
    assert m["HR@5"] == pytest.approx(0.5)
    assert m["HR@10"] == pytest.approx(0.75)
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(8)) / 4)


def test_k_above_the_candidate_count_and_target_ranked_last():
    # 3 candidates, target last in every case: rank 3 <= every k >= 3
    ranks = target_ranks(torch.tensor([[0.9, 0.5, 0.1], [0.3, 0.2, 0.1]]), torch.tensor([2, 2]))
    assert ranks.tolist() == [3, 3]
    m = metrics_from_ranks(ranks, [1, 2, 50])
    assert m["HR@50"] == 1.0 and m["NDCG@50"] == pytest.approx(0.5)         # 1/log2(4)
    assert m["HR@1"] == 0.0 and m["HR@2"] == 0.0 and m["NDCG@2"] == 0.0
    assert m["MRR"] == pytest.approx(1 / 3)


def test_no_cases_gives_nan_and_names_skip_ndcg_at_1():
    assert metric_names([10, 1, 5]) == ["MRR", "NDCG@5", "NDCG@10", "HR@1", "HR@5", "HR@10"]
    m = metrics_from_ranks(torch.zeros(0, dtype=torch.long), [1, 5])
    assert all(math.isnan(v) for v in m.values())
