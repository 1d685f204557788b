"""model.id_tables=per_encoder and train.embedding_l2 in the training loop: the penalty is added to the loss a step
backpropagates (and reports), and training with either knob still learns the tiny dataset."""

import numpy as np
import pytest
import torch

from llm_emf.data.cold import trained_items
from llm_emf.model import build_model
from llm_emf.model.batch import sequences_of
from llm_emf.training.loop import build_optimizer, loss_sampler, train_epoch

from train_tiny_dataset import tiny_dataset, tiny_train_config

pytestmark = pytest.mark.unit


def setup(tmp_path, model: dict, train: dict):
    """A seeded model of the tiny dataset's config with ``model`` and ``train`` keys set, its optimizer, the
    training sequences, and the config."""
    cfg = tiny_train_config(tmp_path, **train)
    for k, v in model.items():
        setattr(cfg.model, k, v)
    cfg.validate()
    ds = tiny_dataset()
    torch.manual_seed(cfg.seed)
    net = build_model(cfg.model, ds.n_x, ds.n_y, None, trained_items(ds))
    net.negatives = loss_sampler(cfg, ds, 0)
    seqs = sequences_of(ds.split("train"))
    seqs = seqs.take(np.flatnonzero(seqs.lengths >= 2))
    return net, build_optimizer(net, cfg), seqs, cfg


@pytest.mark.parametrize("model", [{}, {"id_tables": "per_encoder"}, {"name": "sasrec"}])
def test_embedding_l2_adds_its_penalty_to_the_step_loss(tmp_path, model):
    losses, penalty = {}, None
    for l2 in (0.0, 0.5):
        net, (opt, sched), seqs, cfg = setup(tmp_path, model, {"embedding_l2": l2, "batch_size": 10_000})
        rows = np.arange(len(seqs.starts))                             # one batch: the reported loss is its loss
        if penalty is None:
            penalty = net.embedding_penalty(net.build_training_batch(seqs.take(rows))).item()
        torch.manual_seed(0)                                           # the same dropout masks in both runs
        losses[l2] = train_epoch(net, opt, sched, seqs, rows, cfg, "cpu")
    assert penalty > 0
    assert losses[0.5] - losses[0.0] == pytest.approx(0.5 * penalty, abs=1e-5)


@pytest.mark.parametrize("model,train", [
    ({"id_tables": "per_encoder"}, {}),
    ({"id_tables": "per_encoder", "head": "select"}, {"loss": "sampled", "sampled_negatives": 5}),
    ({"id_tables": "per_encoder", "fusion": "late", "head": "single"}, {}),
    ({}, {"embedding_l2": 0.01}),
    ({"id_tables": "per_encoder"}, {"embedding_l2": 0.01}),
    ({"name": "sasrec"}, {"embedding_l2": 0.01, "loss": "sampled", "sampled_negatives": 5}),
])
def test_training_with_either_knob_lowers_the_loss(tmp_path, model, train):
    net, (opt, sched), seqs, cfg = setup(tmp_path, model, train)
    losses = []
    for epoch in range(4):
        torch.manual_seed(epoch)
        if net.negatives is not None:
            net.negatives.set_epoch(epoch)
        order = np.random.default_rng(epoch).permutation(len(seqs.starts))
        losses.append(train_epoch(net, opt, sched, seqs, order, cfg, "cpu"))
    assert all(np.isfinite(losses)) and losses[-1] < 0.9 * losses[0], losses
