"""The model's CPU dropout (llm_emf.model.layers.Dropout): nn.Dropout's distribution, scaling and gradient."""

import pytest
import torch

from llm_emf.model.layers import Dropout

pytestmark = pytest.mark.unit


def test_drops_a_fraction_p_and_rescales_the_rest():
    torch.manual_seed(0)
    x = torch.full((200_000,), 2.0, requires_grad=True)
    y = Dropout(0.25).train()(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.75, abs=0.005)
    assert torch.all(y[kept] == 2.0 / 0.75)
    y.sum().backward()                                    # gradient: the same mask, same scale
    assert torch.equal(x.grad, kept.float() / 0.75)


def test_eval_mode_p0_and_p1():
    x = torch.randn(4, 5)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.count_nonzero(Dropout(1.0).train()(x)) == 0


def test_bf16_input_keeps_its_dtype_and_is_seeded():
    x = torch.randn(64, 32, dtype=torch.bfloat16)
    torch.manual_seed(3)
    a = Dropout(0.1).train()(x)
    torch.manual_seed(3)
    b = Dropout(0.1).train()(x)
    assert a.dtype == torch.bfloat16 and torch.equal(a, b)
