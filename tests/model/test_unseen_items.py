"""Items in no training sequence: their ID part is model.unseen_id, never their own random row."""

import pyarrow as pa
import pytest
import torch

from llm_emf.model import build_model
from llm_emf.model.batch import Ragged
from llm_emf.model.items import EarlyFusion, ItemVectors

from model_tiny import N_X, N_Y, random_features, tiny_config

pytestmark = pytest.mark.unit

# Items 3 (X) and 12, 13 (Y) are in no training sequence.
TRAINED = torch.ones(N_X + N_Y, dtype=torch.bool)
TRAINED[[3, 12, 13]] = False
SEQS = [[0, 8, 1, 9, 10], [11, 2, 14], [4, 15, 5, 6]]


def _vectors(mode, **extra):
    torch.manual_seed(0)
    cfg = tiny_config(unseen_id=mode, **extra).model
    return ItemVectors(N_X, N_Y, cfg, ("id",), None, TRAINED), cfg


def test_unseen_rows_get_the_chosen_vector_and_trained_rows_their_own():
    w = _vectors("zero")[0].id.weight.detach()
    zero = _vectors("zero")[0].id_rows().detach()
    assert torch.all(zero[[3, 12, 13]] == 0) and torch.equal(zero[TRAINED], w[TRAINED])

    mean = _vectors("mean")[0].id_rows().detach()
    known_x, known_y = TRAINED[:N_X], TRAINED[N_X:]
    torch.testing.assert_close(mean[3], w[:N_X][known_x].mean(0))
    torch.testing.assert_close(mean[12], w[N_X:][known_y].mean(0))
    torch.testing.assert_close(mean[13], w[N_X:][known_y].mean(0))

    vecs, _ = _vectors("learned")
    with torch.no_grad():
        vecs.unseen.copy_(torch.stack([torch.full((16,), 1.0), torch.full((16,), 2.0)]))
    learned = vecs.id_rows().detach()
    assert torch.all(learned[3] == 1.0) and torch.all(learned[[12, 13]] == 2.0)
    assert torch.equal(learned[TRAINED], w[TRAINED])


def test_an_unseen_items_own_row_cannot_change_any_score():
    torch.manual_seed(0)
    model = build_model(tiny_config().model, N_X, N_Y, None, TRAINED).eval()
    batch = model.build_eval_batch(Ragged.from_arrow(pa.array(SEQS, pa.list_(pa.int32()))))
    before = model.score(batch, 1)
    with torch.no_grad():
        model.vectors.id.weight[[3, 12, 13]] = 100.0
    torch.testing.assert_close(model.score(batch, 1), before)
    # ID only: both unseen Y items share one vector, so they tie (an honest "cannot tell them apart").
    assert torch.equal(before[:, 12 - N_X], before[:, 13 - N_X])


def test_content_separates_unseen_items_that_ids_cannot():
    torch.manual_seed(0)
    model = build_model(tiny_config(use_text=True).model, N_X, N_Y, random_features(), TRAINED).eval()
    batch = model.build_eval_batch(Ragged.from_arrow(pa.array(SEQS, pa.list_(pa.int32()))))
    scores = model.score(batch, 1)
    assert not torch.allclose(scores[:, 12 - N_X], scores[:, 13 - N_X])


def test_the_learned_unseen_vector_is_trained_by_unseen_items_serving_as_negatives():
    torch.manual_seed(0)
    model = build_model(tiny_config().model, N_X, N_Y, None, TRAINED).train()
    loss, _ = model(model.build_training_batch(Ragged.from_arrow(pa.array(SEQS, pa.list_(pa.int32())))))
    loss.backward()
    assert model.vectors.unseen.grad is not None and bool(torch.all(model.vectors.unseen.grad.abs().sum(1) > 0))
    assert torch.all(model.vectors.id.weight.grad[[3, 12, 13]] == 0)     # their own rows learn nothing


def test_id_dropout_with_a_learned_unseen_vector_trains_it_in_id_only_models_too():
    vecs, cfg = _vectors("learned", id_dropout=1.0)
    fusion = EarlyFusion(vecs, cfg).train()
    with torch.no_grad():
        vecs.unseen.fill_(3.0)
    assert torch.all(fusion() == 3.0)                          # every ID dropped to the unseen vector
    assert torch.equal(fusion.eval()(), vecs.id_rows())        # never at inference


def test_a_mask_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="trained-item mask covers 3 items, the dataset has 16"):
        ItemVectors(N_X, N_Y, tiny_config().model, ("id",), None, torch.ones(3, dtype=torch.bool))


def test_sasrec_uses_the_same_rule():
    torch.manual_seed(0)
    model = build_model(tiny_config(name="sasrec").model, N_X, N_Y, None, TRAINED).eval()
    batch = model.build_eval_batch(Ragged.from_arrow(pa.array(SEQS, pa.list_(pa.int32()))))
    scores = model.score(batch, 1)
    assert torch.equal(scores[:, 12 - N_X], scores[:, 13 - N_X])


def test_neighbor_mode_lends_the_row_of_the_most_similar_trained_item_of_the_same_domain():
    feats = random_features()
    # Make item 3 (X, unseen) a near-copy of item 5's text and item 12 (Y) of item 9's.
    feats.text[3] = feats.text[5] * 2.0 + 1e-3
    feats.text[12] = feats.text[9] + 1e-3
    torch.manual_seed(0)
    cfg = tiny_config(use_text=True, unseen_id="neighbor").model
    vecs = ItemVectors(N_X, N_Y, cfg, ("id", "text"), feats, TRAINED)
    rows, w = vecs.id_rows().detach(), vecs.id.weight.detach()
    assert torch.equal(rows[3], w[5]) and torch.equal(rows[12], w[9])
    assert torch.equal(rows[TRAINED], w[TRAINED])
    assert torch.all(vecs.neighbor_weight[TRAINED] == 0)                    # without ID dropout: no lists
    cfg.id_dropout = 0.5                                                     # every item borrows in training
    vecs = ItemVectors(N_X, N_Y, cfg, ("id", "text"), feats, TRAINED)
    lender = vecs.neighbor_index[:, 0]
    assert bool(TRAINED[lender].all())                                      # lenders are trained items
    assert bool((lender != torch.arange(N_X + N_Y)).all())                  # never an item itself
    assert torch.equal(lender >= N_X, torch.arange(N_X + N_Y) >= N_X)       # of the same domain


def test_neighbor_mode_weights_neighbours_by_similarity_and_id_dropout_borrows_too():
    feats = random_features()
    torch.manual_seed(0)
    cfg = tiny_config(use_text=True, unseen_id="neighbor", unseen_neighbors=3, id_dropout=1.0).model
    vecs = ItemVectors(N_X, N_Y, cfg, ("id", "text"), feats, TRAINED)
    has = feats.has_text.bool()
    assert not bool(has.all())                                              # the fixture has text-less items
    torch.testing.assert_close(vecs.neighbor_weight.sum(1), has.float())    # those have no neighbours
    w = vecs.id.weight
    expected = (vecs.neighbor_weight.unsqueeze(-1) * w[vecs.neighbor_index]).sum(1)
    fusion = EarlyFusion(vecs, cfg).train()
    id_terms = (fusion() - cfg.text_weight * vecs.modality("text")).detach()
    torch.testing.assert_close(id_terms[has], expected[has].detach())       # every ID term with content borrowed
    torch.testing.assert_close(id_terms[~has & TRAINED], w[~has & TRAINED].detach())   # nothing to borrow by


def test_neighbor_mode_needs_content():
    with pytest.raises(ValueError, match="unseen_id=neighbor finds an item's neighbours by its text/image"):
        _vectors("neighbor")


def test_auto_borrows_neighbours_with_content_and_learns_a_vector_without():
    assert _vectors("auto")[0].unseen_id == "learned"
    cfg = tiny_config(use_text=True, unseen_id="auto").model
    assert ItemVectors(N_X, N_Y, cfg, ("id", "text"), random_features(), TRAINED).unseen_id == "neighbor"
