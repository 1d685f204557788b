"""model.head and model.mixed_weight: which state scores a domain, the loss terms each head trains, and the
per-domain choice of model.head=select."""

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from llm_emf.evaluation import EvalResult
from llm_emf.model import build_model
from llm_emf.model.batch import PAD, Ragged, training_batch
from llm_emf.training.heads import merge_by_domain

from model_tiny import N_X, N_Y, random_features, tiny_config

pytestmark = pytest.mark.unit

SEQS = [[0, 8, 1, 9, 10], [11, 12, 3], [4, 2, 13, 5, 14]]
DOMAINS = ((0, (0, N_X)), (1, (N_X, N_X + N_Y)))


def ragged(rows):
    return Ragged.from_arrow(pa.array(rows, pa.list_(pa.int32())))


def make(**model):
    torch.manual_seed(0)
    return build_model(tiny_config(use_text=True, **model).model, N_X, N_Y, random_features())


def reference_loss(model, batch, weights: dict[str, float]) -> torch.Tensor:
    """sum over domains of the weighted mean CE of each state kind (combined h, mixed H, single S)."""
    with torch.no_grad():
        vecs = model.fusion()
        H, combined, singles = model.net(vecs, batch)
    total = 0.0
    for d, (lo, hi) in DOMAINS:
        states = {"combined": combined[d], "mixed": H, "single": singles[d]}
        for kind, w in weights.items():
            ce = [-torch.log_softmax(vecs[lo:hi] @ states[kind][b, t], 0)[int(batch.targets[b, t]) - lo]
                  for b in range(len(SEQS)) for t in range(6)
                  if batch.targets[b, t] != PAD and lo <= int(batch.targets[b, t]) < hi]
            total = total + w * torch.stack(ce).mean()
    return total


@pytest.mark.parametrize("head,weights", [
    ("combined", {"combined": 1.0, "mixed": 0.5}),
    ("single", {"single": 1.0, "mixed": 0.5}),
    ("select", {"combined": 1.0, "mixed": 0.5, "single": 1.0}),
])
@pytest.mark.parametrize("fused", [True, False])
def test_each_head_trains_its_loss_terms(head, weights, fused):
    model = make(head=head, loss_weight=0.5, fused_loss=fused)
    batch = training_batch(ragged(SEQS), N_X, 6)
    loss, n = model(batch)
    assert int(n) == 10
    torch.testing.assert_close(loss.detach(), reference_loss(model, batch, weights), rtol=1e-5, atol=1e-5)


def test_single_state_has_no_cross_domain_input():
    """S^X at a column depends only on the X items so far: changing a Y item leaves it, but not h^X, as is."""
    model = make().eval()
    a, b = [[0, 8, 1, 9]], [[0, 12, 1, 9]]
    with torch.no_grad():
        vecs = model.fusion()
        _, comb_a, single_a = model.net(vecs, training_batch(ragged(a), N_X, 6))
        _, comb_b, single_b = model.net(vecs, training_batch(ragged(b), N_X, 6))
    torch.testing.assert_close(single_a[0], single_b[0])
    assert not torch.allclose(comb_a[0][:, -1], comb_b[0][:, -1])


def test_score_uses_the_chosen_head_per_domain():
    model = make(head="select").eval()
    batch = model.build_eval_batch(ragged(SEQS))
    with torch.no_grad():
        vecs = model.fusion()
        _, combined, singles = model.net(vecs, batch)
        model.head_single[:] = torch.tensor([False, True])
        torch.testing.assert_close(model.score(batch, 0), combined[0][:, -1] @ vecs[:N_X].T)
        torch.testing.assert_close(model.score(batch, 1), singles[1][:, -1] @ vecs[N_X:].T)


def test_mixed_weight_scales_the_mixed_state_in_the_combined_one():
    batch = training_batch(ragged(SEQS), N_X, 6)
    outs = {}
    for alpha in (0.0, 1.0):
        model = make(mixed_weight=alpha, cross_attention=False).eval()
        with torch.no_grad():
            outs[alpha] = model.net(model.fusion(), batch)
    H, combined1, singles = outs[1.0]
    _, combined0, _ = outs[0.0]
    torch.testing.assert_close(combined0[0], singles[0])               # alpha 0: the domain's own state
    torch.testing.assert_close(combined1[0], H + singles[0])


def test_weights_saved_without_a_head_load_as_combined():
    model = make(head="single")
    state = {k: v for k, v in make().state_dict().items() if k != "head_single"}
    model.load_state_dict(state)
    assert model.head_single.tolist() == [False, False]


def _result(mrr_x: float, mrr_y: float, tag: float) -> EvalResult:
    metrics = {p: {"Food": {"MRR": mrr_x, "HR@10": tag}, "Kitchen": {"MRR": mrr_y, "HR@10": tag}}
               for p in ("sampled", "full")}
    ranks = {p: {"Food": np.array([int(tag)]), "Kitchen": np.array([int(tag)])} for p in ("sampled", "full")}
    return EvalResult("valid", ("sampled", "full"), metrics, {"Food": 1, "Kitchen": 1},
                      {p: {"Food": 5, "Kitchen": 6} for p in ("sampled", "full")}, ranks=ranks)


@pytest.mark.parametrize("single_mrr,expected", [((0.1, 0.5), ["combined", "single"]),
                                                 ((0.3, 0.2), ["single", "combined"]),
                                                 ((0.2, 0.4), ["combined", "combined"])])   # ties keep combined
def test_select_keeps_per_domain_the_head_with_the_better_validation_mrr(single_mrr, expected):
    model = make(head="select")
    combined, single = _result(0.2, 0.4, tag=1.0), _result(*single_mrr, tag=2.0)
    merged, heads = merge_by_domain(model, [combined, single], "full")
    assert list(heads.values()) == expected
    assert model.head_single.tolist() == [h == "single" for h in expected]
    for name, head in heads.items():
        source = single if head == "single" else combined
        assert merged.metrics["sampled"][name] == source.metrics["sampled"][name]   # every protocol follows
        assert merged.ranks["full"][name][0] == (2 if head == "single" else 1)
    assert merged.info["heads"] == heads


def test_select_keeps_combined_for_a_domain_without_cases():
    model = make(head="select")
    merged, heads = merge_by_domain(model, [_result(0.2, math.nan, 1.0), _result(0.1, math.nan, 2.0)], "full")
    assert heads == {"Food": "combined", "Kitchen": "combined"}
