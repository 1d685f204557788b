"""The chunked, fused softmax loss equals the plain matmul + cross-entropy, value and gradients."""

import pytest
import torch
import torch.nn.functional as F

from llm_emf.model.fused_loss import linear_cross_entropy

pytestmark = pytest.mark.unit


def _plain(states, items, targets, weights):
    ce = F.cross_entropy(states @ items.T, targets, reduction="none")
    return (weights * ce).sum()


@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_value_and_gradients_match_the_unfused_loss(chunk):
    g = torch.Generator().manual_seed(0)
    states = torch.randn(23, 8, generator=g, dtype=torch.float64, requires_grad=True)
    items = torch.randn(41, 8, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 41, (23,), generator=g)
    weights = torch.rand(23, generator=g, dtype=torch.float64)
    fused = linear_cross_entropy(states, items, targets, weights, chunk=chunk)
    (3.0 * fused).backward()
    gs, gi = states.grad.clone(), items.grad.clone()
    states.grad = items.grad = None
    plain = _plain(states, items, targets, weights)
    (3.0 * plain).backward()
    # the loss accumulates in fp32 by design; gradients are computed in the inputs' precision then fp32
    assert fused.item() == pytest.approx(plain.item(), rel=1e-5)
    torch.testing.assert_close(gs, states.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gi, items.grad, rtol=1e-5, atol=1e-6)


def test_hand_computed_value():
    # two items scored 0 and log 3 -> softmax (1/4, 3/4); target 0 costs log 4, target 1 costs log 4/3
    states = torch.tensor([[1.0], [1.0]])
    items = torch.tensor([[0.0], [torch.log(torch.tensor(3.0))]])
    loss = linear_cross_entropy(states, items, torch.tensor([0, 1]), torch.tensor([1.0, 2.0]))
    expected = torch.log(torch.tensor(4.0)) + 2 * torch.log(torch.tensor(4.0 / 3.0))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_bf16_autocast_runs_the_matmuls_in_bf16_and_stays_close():
    g = torch.Generator().manual_seed(1)
    states = torch.randn(64, 16, generator=g, requires_grad=True)
    items = torch.randn(300, 16, generator=g, requires_grad=True)
    targets = torch.randint(0, 300, (64,), generator=g)
    weights = torch.full((64,), 1 / 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = linear_cross_entropy(states, items, targets, weights, chunk=16)
    fused.backward()
    assert fused.dtype == torch.float32 and states.grad.dtype == torch.float32
    plain = _plain(states.detach(), items.detach(), targets, weights)
    assert fused.item() == pytest.approx(plain.item(), rel=2e-2)


def test_no_gradient_work_without_requires_grad():
    states, items = torch.randn(5, 4), torch.randn(9, 4)
    loss = linear_cross_entropy(states, items, torch.zeros(5, dtype=torch.long), torch.ones(5))
    assert not loss.requires_grad
    assert loss.item() == pytest.approx(_plain(states, items, torch.zeros(5, dtype=torch.long), torch.ones(5)).item(),
                                        rel=1e-5)


def test_a_target_far_below_the_top_logit_keeps_a_finite_exact_loss():
    # logit gap 200: the target's softmax probability underflows fp32 (e^-200), its log-probability does not
    states = torch.tensor([[1.0], [1.0]])
    items = torch.tensor([[200.0], [0.0], [1.0]])
    targets = torch.tensor([1, 0])
    loss = linear_cross_entropy(states, items, targets, torch.tensor([1.0, 1.0]))
    expected = F.cross_entropy(states @ items.T, targets, reduction="sum")
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() == pytest.approx(200.0, rel=1e-6)
