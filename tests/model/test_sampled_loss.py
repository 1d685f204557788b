"""train.loss=sampled: the sampled softmax equals the full one on the full candidate set, its log-Q correction and
hit masking are what the formula says, its draws follow the seed, and training with it learns."""

import math
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F

from llm_emf.config.fields import lookup_field
from llm_emf.config.train import TrainConfig
from llm_emf.model import build_model
from llm_emf.model import sampled_loss as sl
from llm_emf.model.batch import Ragged
from llm_emf.model.sampled_loss import (Candidates, LossPart, NegativeSampler, negative_sampler, resolve_loss,
                                        sampled_log_prob, sampled_loss, target_counts)

from model_tiny import N_X, N_Y, tiny_config

TRAINING = Path(__file__).resolve().parents[1] / "training"
if str(TRAINING) not in sys.path:                  # the tiny learnable dataset of the training tests
    sys.path.insert(0, str(TRAINING))

pytestmark = pytest.mark.unit

SEQS = [[0, 8, 1, 9, 10], [11, 12, 3], [4, 2, 13, 5, 14], [6, 15, 7, 0, 9]]


def ragged(rows):
    return Ragged.from_arrow(pa.array(rows, pa.list_(pa.int32())))


def test_every_item_as_candidate_without_log_q_is_the_full_softmax():
    g = torch.Generator().manual_seed(0)
    states = torch.randn(13, 8, generator=g, dtype=torch.float64, requires_grad=True)
    items = torch.randn(21, 8, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 21, (13,), generator=g)
    weights = torch.rand(13, generator=g, dtype=torch.float64)
    cands = Candidates(torch.arange(21), torch.zeros(21, dtype=torch.float64))
    sampled = sampled_loss([LossPart(states, items)], targets, cands, weights)
    sampled.backward()
    grads = states.grad.clone(), items.grad.clone()
    states.grad = items.grad = None
    full = (weights * F.cross_entropy(states @ items.T, targets, reduction="none")).sum()
    full.backward()
    assert sampled.item() == pytest.approx(full.item(), rel=1e-10)
    torch.testing.assert_close(grads[0], states.grad)
    torch.testing.assert_close(grads[1], items.grad)


def _hand_sampler(drawn):
    # domain X of 4 items with training target counts 6, 3, 1, 0: p = (0.6, 0.3, 0.1, 0); uniform q = 1/4;
    # the draws are fixed so the candidates are known
    sampler = NegativeSampler(4, 2, np.array([6, 3, 1, 0, 1, 1]), negatives=len(drawn))
    sampler.draw = lambda domain: torch.tensor(drawn)
    return sampler


def test_log_q_correction_by_hand():
    # N = 3 targets (0, 0, 1) and M = 4 draws (2, 3, 0, 3): unique candidates 0 (k=3), 1 (k=1), 2 (k=1), 3 (k=2),
    # expected counts E = N p + M q: 0: 1.8 + 1 = 2.8, 1: 0.9 + 1 = 1.9, 2: 0.3 + 1 = 1.3, 3: 0 + 1 = 1
    cands = _hand_sampler([2, 3, 0, 3]).candidates(0, torch.tensor([0, 0, 1]))
    assert cands.index.tolist() == [0, 1, 2, 3]
    expected = [math.log(3 / 2.8), math.log(1 / 1.9), math.log(1 / 1.3), math.log(2 / 1)]
    assert cands.bias.tolist() == pytest.approx(expected, rel=1e-6)
    # scores exp(s) = 1, 2, 3, 4 (state 1, item vectors log 1..log 4). Target 0: itself uncorrected, its own
    # column masked, the others weighted k / E: Z = 1 + 2/1.9 + 3/1.3 + 4*2; target 1: Z = 2 + 1*3/2.8 + 3/1.3 + 8
    items = torch.log(torch.tensor([[1.0], [2.0], [3.0], [4.0], [1.0], [1.0]]))
    log_p = sampled_log_prob(LossPart(torch.ones(2, 1), items), torch.tensor([0, 1]), cands)
    z0, z1 = 1 + 2 / 1.9 + 3 / 1.3 + 8, 2 + 3 / 2.8 + 3 / 1.3 + 8
    assert log_p.tolist() == pytest.approx([math.log(1 / z0), math.log(2 / z1)], rel=1e-6)


def test_log_q_makes_the_normaliser_estimate_unbiased():
    # targets drawn from p and items from q (popularity ** 1): the corrected candidates' sum of exp(score)
    # averages to the full softmax's normaliser; without the correction it is far off
    counts = np.array([50, 20, 10, 5, 1, 1, 1])
    scores = torch.tensor([0.5, 1.0, -1.0, 1.0, 0.0, 3.0, 1.5])
    sampler = NegativeSampler(5, 2, counts, negatives=3, alpha=1.0, seed=1)
    g = torch.Generator().manual_seed(2)
    p = torch.tensor(counts[:5] / counts[:5].sum())
    estimates, plain = [], []
    for _ in range(8000):                              # standard error of the mean ~0.8%
        targets = torch.multinomial(p, 2, replacement=True, generator=g)
        cands = sampler.candidates(0, targets)
        estimates.append(float((scores[cands.index].exp() * cands.bias.exp()).sum()))
        plain.append(float(scores[cands.index].exp().sum()))
    full = float(scores[:5].exp().sum())
    assert np.mean(estimates) == pytest.approx(full, rel=0.03)
    assert abs(np.mean(plain) / full - 1) > 0.3


def test_accidental_hits_of_the_target_are_masked():
    # every draw is the target itself: the target is the only candidate left, so its probability is 1;
    # counted again as a negative it would cost log(1 + k / E) > 0
    cands = _hand_sampler([1, 1, 1]).candidates(0, torch.tensor([1]))
    assert cands.index.tolist() == [1]
    states, items = torch.randn(1, 3), torch.randn(6, 3)
    assert sampled_log_prob(LossPart(states, items), torch.tensor([1]), cands).item() == 0.0
    # two targets: each row masks only its own target, the other's stays a negative
    cands = _hand_sampler([0, 0]).candidates(0, torch.tensor([0, 1]))
    log_p = sampled_log_prob(LossPart(torch.ones(2, 1), torch.zeros(6, 1)), torch.tensor([0, 1]), cands)
    e = dict(zip(cands.index.tolist(), cands.bias.exp().tolist()))
    assert log_p.tolist() == pytest.approx([-math.log(1 + e[1]), -math.log(1 + e[0])], rel=1e-6)


def test_draws_follow_seed_epoch_and_rank():
    counts = np.arange(40)
    draws = lambda **kw: [NegativeSampler(20, 20, counts, 64, **kw).draw(d) for d in (0, 1)]  # noqa: E731
    a, b = draws(seed=3), draws(seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], draws(seed=4)[0])
    assert not torch.equal(a[0], draws(seed=3, rank=1)[0])
    sampler = NegativeSampler(20, 20, counts, 64, seed=3)
    first = sampler.draw(0)
    sampler.draw(0)
    sampler.set_epoch(1)
    second_epoch = sampler.draw(0)
    sampler.set_epoch(0)
    assert torch.equal(sampler.draw(0), first) and not torch.equal(second_epoch, first)


def test_popularity_sampler_follows_counts_and_uniform_reaches_untrained_items():
    counts = np.array([0, 1, 3, 0, 1, 1])
    popular = NegativeSampler(4, 2, counts, 40000, alpha=1.0).draw(0)
    assert np.bincount(popular.numpy(), minlength=4) / 40000 == pytest.approx([0, 0.25, 0.75, 0], abs=0.01)
    uniform = NegativeSampler(4, 2, counts, 40000).draw(0)
    assert np.bincount(uniform.numpy(), minlength=4) / 40000 == pytest.approx([0.25] * 4, abs=0.01)


def test_target_counts_skip_each_sequence_first_item():
    assert target_counts(ragged([[0, 1, 1], [2], [3, 0]]), 5).tolist() == [1, 2, 0, 0, 0]


def test_auto_is_full_up_to_the_threshold_and_sampled_above(monkeypatch):
    # the config's help names the threshold the code uses
    assert f"{sl.SAMPLED_ABOVE:,} items" in lookup_field(TrainConfig, "loss")[0].metadata["help"]
    assert resolve_loss("auto", sl.SAMPLED_ABOVE) == "full"
    assert resolve_loss("auto", sl.SAMPLED_ABOVE + 1) == "sampled"
    assert resolve_loss("full", 10 ** 8) == "full" and resolve_loss("sampled", 3) == "sampled"
    counts = np.ones(N_X + N_Y, dtype=np.int64)
    assert negative_sampler("auto", N_X, N_Y, counts, 8, 0.0, seed=0) is None
    monkeypatch.setattr(sl, "SAMPLED_ABOVE", N_X)                         # X at the threshold, Y above
    assert negative_sampler("auto", N_X, N_Y, counts, 8, 0.0, seed=0).sampled == (False, True)


MODELS = {"early": dict(), "early_unfused": dict(fused_loss=False), "early_text": dict(use_text=True),
          "late": dict(use_text=True, use_image=True, fusion="late", learnable_weights=True),
          "sasrec": dict(name="sasrec"), "no_shared_term": dict(loss_weight=0.0)}


@pytest.mark.parametrize("variant", list(MODELS))
def test_models_with_every_item_as_candidate_and_no_log_q_match_the_full_loss(variant, features):
    torch.manual_seed(0)
    model = build_model(tiny_config(**MODELS[variant]).model, N_X, N_Y, features).train()   # dropout is 0
    batch = model.build_training_batch(ragged(SEQS))
    full, n_full = model(batch)
    # 4000 uniform draws from 7 or 9 items leave none out (a miss has probability < 1e-200)
    model.negatives = NegativeSampler(N_X, N_Y, np.ones(N_X + N_Y), 4000, seed=0, log_q=False)
    sampled, n = model(batch)
    assert int(n) == int(n_full)
    assert sampled.item() == pytest.approx(full.item(), rel=1e-5)
    sampled.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    # a real subset with log-Q gives a different, finite loss; evaluation mode never samples
    model.negatives = NegativeSampler(N_X, N_Y, np.ones(N_X + N_Y), 2, seed=0)
    subset, _ = model(batch)
    assert torch.isfinite(subset) and subset.item() != pytest.approx(full.item(), rel=1e-3)
    model.eval()
    with torch.no_grad():
        assert model(batch)[0].item() == pytest.approx(full.item(), rel=1e-6)


def test_training_with_the_sampled_loss_learns(tmp_path):
    from llm_emf.training import train
    from llm_emf.training.loop import loss_sampler
    from train_tiny_dataset import tiny_dataset, tiny_train_config

    tiny_dataset().write(tmp_path / "dataset")
    # 4 drawn negatives per domain besides ~10 in-batch targets: a strict subset of the 12 and 15 items
    cfg = tiny_train_config(tmp_path, epochs=4, run_name="sampled", loss="sampled", sampled_negatives=4)
    from llm_emf.data.schema import Dataset
    sampler = loss_sampler(cfg, Dataset.read(cfg.data.dataset), 0)
    assert sampler.sampled == (True, True) and sampler.negatives == 4
    result = train(cfg)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0]
    # validation ranks the full catalog: random full-ranking MRR over 12 / 15 items is ~0.26 / ~0.22
    assert result.history[-1]["valid_mrr"] > 0.5


@pytest.mark.parametrize("model", [dict(name="sasrec"), dict(fusion="late", use_id=True, cross_attention=False)])
def test_sampled_loss_trains_sasrec_and_late_fusion_and_resumes_exactly(tmp_path, model):
    from llm_emf.training import train
    from train_tiny_dataset import tiny_dataset, tiny_train_config

    tiny_dataset().write(tmp_path / "dataset")

    def config(epochs, name):
        cfg = tiny_train_config(tmp_path, epochs=epochs, run_name=name, loss="sampled", sampled_negatives=4)
        for k, v in model.items():
            setattr(cfg.model, k, v)
        return cfg

    whole = train(config(2, "whole"))
    assert whole.history[1]["train_loss"] < whole.history[0]["train_loss"]
    train(config(1, "resumed"))
    resumed = train(config(2, "resumed"))                  # the same run name continues from epoch 1
    assert resumed.history == whole.history                # same draws in epoch 2 as without the stop


def test_bf16_autocast_stays_close_to_fp32():
    torch.manual_seed(0)
    model = build_model(tiny_config().model, N_X, N_Y).train()
    model.negatives = NegativeSampler(N_X, N_Y, np.ones(N_X + N_Y), 3, seed=0)
    batch = model.build_training_batch(ragged(SEQS))
    fp32, _ = model(batch)
    model.negatives.set_epoch(0)                             # the same draws again
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16, _ = model(batch)
    bf16.backward()
    assert bf16.dtype == torch.float32 and bf16.item() == pytest.approx(fp32.item(), rel=2e-2)
