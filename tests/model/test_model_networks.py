"""The networks: shapes of every module, causality (no future leakage), masking of missing modalities."""

import pyarrow as pa
import pytest
import torch

from llm_emf.model import build_model
from llm_emf.model.batch import PAD, Ragged, training_batch
from llm_emf.model.items import EarlyFusion, ItemVectors
from llm_emf.model.layers import Block, CausalEncoder, CrossDomainAttention, MaskedAttention, causal_mask
from llm_emf.model.network import PreferenceNetwork
from llm_emf.serving.scoring import make_scorer

from model_tiny import N_X, N_Y, random_features, tiny_config

pytestmark = pytest.mark.unit

# Y items are N_X..N_X+N_Y-1. Sequences shorter than max_len (6) so no window truncation is involved.
SEQS = [[0, 8, 1, 9, 10], [11, 12, 3], [4, 2, 13, 5, 14]]


def ragged(rows):
    return Ragged.from_arrow(pa.array(rows, pa.list_(pa.int32())))


VARIANTS = {
    "id_only": dict(),
    "early_full": dict(use_text=True, use_image=True),
    "early_learnable": dict(use_text=True, use_image=True, learnable_weights=True),
    "late_full": dict(use_text=True, use_image=True, fusion="late"),
    "no_cross": dict(use_text=True, cross_attention=False),
    "no_id": dict(use_id=False, use_text=True, use_image=True),
    "moe_whiten": dict(use_text=True, use_image=True, adaptor="moe", text_norm="whiten"),
    "linear_raw": dict(use_text=True, adaptor="linear", text_norm="none"),
    "right_positions": dict(use_text=True, positions="right"),
    "start_positions": dict(use_text=True, positions="start"),
    "dropouts": dict(use_text=True, use_image=True, id_dropout=0.5, content_dropout=0.3),
}


def make(variant, features=None, **extra):
    torch.manual_seed(0)
    cfg = tiny_config(**VARIANTS[variant], **extra)
    feats = features if features is not None else random_features()
    return build_model(cfg.model, N_X, N_Y, feats).eval()


def test_layer_shapes():
    B, L, d = 3, 6, 16
    x = torch.randn(B, L, d)
    valid = torch.tensor([[0, 0, 1, 1, 1, 1]] * B, dtype=torch.bool)
    allowed = causal_mask(valid)
    assert allowed.shape == (B, L, L)
    assert MaskedAttention(d, 2, 0.0)(x, x, allowed).shape == (B, L, d)
    assert Block(d, 2, 0.0)(x, allowed).shape == (B, L, d)
    for positions in ("relative", "right", "start"):
        out = CausalEncoder(d, 2, 2, L, 0.0, positions)(x, valid)
        assert out.shape == (B, L, d) and torch.all(out[:, :2] == 0)        # pads are zero
    time = torch.tensor([[-1, -1, 2, 3, 5, -1]] * B)
    cross = CrossDomainAttention(d, 2, 0.0)(x, x, time, valid)
    assert cross.shape == (B, L, d) and torch.all(cross[:, [0, 1, 5]] == 0)  # nothing to see -> zero


@pytest.mark.parametrize("adaptor", ["linear", "domain", "moe"])
@pytest.mark.parametrize("norm", ["none", "center", "whiten"])
def test_item_vectors_and_fusion_shapes(features, adaptor, norm):
    cfg = tiny_config(adaptor=adaptor, text_norm=norm).model
    vecs = ItemVectors(N_X, N_Y, cfg, ("id", "image", "text"), features)
    for m in ("id", "image", "text"):
        assert vecs.modality(m).shape == (N_X + N_Y, 16)
        assert torch.all(vecs.modality(m)[~vecs.has(m)] == 0)                # items without it get nothing
    assert EarlyFusion(vecs, cfg)().shape == (N_X + N_Y, 16)
    assert not any(n.endswith("features") for n, _ in vecs.named_parameters())   # frozen: buffers only
    assert "text_features" in dict(vecs.named_buffers())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_network_forward_and_score_shapes(variant):
    model = make(variant)
    batch = training_batch(ragged(SEQS), N_X, 6)
    model.train()
    loss, n = model(batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and int(n) == sum(len(s) - 1 for s in SEQS)
    loss.backward()
    model.eval()
    ev = model.build_eval_batch(ragged(SEQS))
    assert model.score(ev, 0).shape == (3, N_X) and model.score(ev, 1).shape == (3, N_Y)


def test_preference_network_states_shape():
    net = PreferenceNetwork(16, 2, 1, 6, 0.0, cross_attention=True)
    H, (hx, hy), _ = net(torch.randn(N_X + N_Y, 16), training_batch(ragged(SEQS), N_X, 6))
    assert H.shape == hx.shape == hy.shape == (3, 6, 16)


def test_sasrec_baseline_shapes_and_loss():
    torch.manual_seed(0)
    model = build_model(tiny_config(name="sasrec").model, N_X, N_Y)
    loss, n = model(model.build_training_batch(ragged(SEQS)))
    # X subsequences [0,1],[3],[4,2,5] give 3 X targets; Y [8,9,10],[11,12],[13,14] give 4 Y targets
    assert int(n) == 7 and torch.isfinite(loss)
    ev = model.build_eval_batch(ragged(SEQS))
    assert model.score(ev, 0).shape == (3, N_X) and model.score(ev, 1).shape == (3, N_Y)


def _all_states(model, rows):
    """Mixed states H and combined states h^X, h^Y at every column, for every stream."""
    batch = training_batch(ragged(rows), N_X, 6)
    with torch.no_grad():
        return [(s[2], s[3][0], s[3][1]) for s in model._streams(batch)]


@pytest.mark.parametrize("variant", ["id_only", "early_full", "late_full", "no_cross"])
@pytest.mark.parametrize("change", [("same_domain", 2, 7), ("to_other_domain", 2, 3)])
def test_no_future_leakage(variant, change):
    """Changing the item at input position k leaves every state at positions < k unchanged."""
    _, k, new_item = change
    model = make(variant)
    seq = [0, 8, 1, 9, 10, 12]             # inputs 0,8,1,9,10 in columns 1..5 of a 6-wide window
    changed = list(seq)
    changed[k] = new_item
    col = 6 - (len(seq) - 1) + k           # window column of input position k
    before, after = _all_states(model, [seq]), _all_states(model, [changed])
    for s_before, s_after in zip(before, after):
        for a, b in zip(s_before, s_after):            # H, h^X, h^Y (all three encoders + cross-attention)
            torch.testing.assert_close(a[:, :col], b[:, :col], rtol=0, atol=1e-6)
            assert not torch.allclose(a[:, col:], b[:, col:])   # and the change is visible from k on


def test_masked_modality_features_do_not_change_scores():
    """Item 2 has no text and item 3 no image: whatever sits in those rows must not matter."""
    base = random_features()
    noisy = random_features()
    noisy.text[2] = torch.randn(noisy.text.shape[1]) * 100
    noisy.image[3] = torch.randn(noisy.image.shape[1]) * 100
    for variant in ("early_full", "late_full"):
        m1, m2 = make(variant, base), make(variant, noisy)
        ev = m1.build_eval_batch(ragged([[2, 3, 9], [3, 11, 2]]))
        for d in (0, 1):
            torch.testing.assert_close(m1.score(ev, d), m2.score(ev, d))
    # and a real (unmasked) feature does change the scores
    changed = random_features()
    changed.text[4] = -changed.text[4]
    m1, m3 = make("early_full", base), make("early_full", changed)
    ev = m1.build_eval_batch(ragged([[4, 9]]))
    assert not torch.allclose(m1.score(ev, 0), m3.score(ev, 0))


def test_late_fusion_gives_items_without_a_modality_no_mass_from_it():
    model = make("late_full")
    ev = model.build_eval_batch(ragged([[1, 9]]))
    log_p = model.score(ev, 0)                                       # (1, N_X) log P over X items
    assert log_p.shape == (1, N_X)
    p = log_p.exp()[0]
    # Each modality's softmax runs over the items that have it, so the weighted mixture is a distribution.
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)
    # Items 0 and 3 have no image: with weights 1, 1, 1 they get at most the ID and text thirds.
    image_only = torch.zeros(N_X, dtype=torch.bool)
    image_only[[0, 3]] = True
    assert float(p[image_only].max()) <= 2 / 3
    model.late_weights["image"].value.fill_(1000.0)                  # almost all weight on the image stream
    p = model.score(ev, 0).exp()[0]
    assert float(p[image_only].max()) < 0.01


def test_scorer_contract_runs_in_chunks_and_restores_train_mode():
    model = make("early_full")
    model.train()
    rows = pa.table({"items": pa.array(SEQS * 3, pa.list_(pa.int32()))})
    scores = make_scorer(model, batch_size=4)(rows, 1)
    assert scores.shape == (9, N_Y) and scores.dtype == torch.float32
    assert model.training
    # scores of a row don't depend on its batch neighbours
    single = make_scorer(model, batch_size=1)(rows.slice(5, 1), 1)
    torch.testing.assert_close(single[0], scores[5], rtol=1e-5, atol=1e-5)


def test_loss_matches_a_per_position_reference():
    """loss = sum over domains of mean CE(h^D_t) + lambda * mean CE(H_t), over positions whose next item is in D."""
    model = make("early_full", loss_weight=0.5)
    batch = training_batch(ragged(SEQS), N_X, 6)
    loss, _ = model(batch)
    with torch.no_grad():
        vecs = model.fusion()
        H, (hx, hy), _ = model.net(vecs, batch)
    expected = 0.0
    for d, h, (lo, hi) in ((0, hx, (0, N_X)), (1, hy, (N_X, N_X + N_Y))):
        spec, shared = [], []
        for b in range(len(SEQS)):
            for t in range(6):
                target = int(batch.targets[b, t])
                if target == PAD or not lo <= target < hi:
                    continue
                for state, out in ((h[b, t], spec), (H[b, t], shared)):
                    logits = vecs[lo:hi] @ state
                    out.append(-torch.log_softmax(logits, 0)[target - lo])
        expected += torch.stack(spec).mean() + 0.5 * torch.stack(shared).mean()
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("extra", [dict(use_text=True, use_image=True), dict(name="sasrec")])
def test_fused_loss_gives_the_unfused_loss_and_gradients(extra):
    grads = {}
    for fused in (True, False):
        torch.manual_seed(0)
        cfg = tiny_config(**extra, loss_weight=0.5, fused_loss=fused)
        model = build_model(cfg.model, N_X, N_Y, random_features())
        batch = model.build_training_batch(ragged(SEQS))
        loss, n = model(batch)
        loss.backward()
        grads[fused] = (loss.detach(), int(n), {k: p.grad.clone() for k, p in model.named_parameters()
                                                if p.grad is not None})
    (loss_f, n_f, g_f), (loss_u, n_u, g_u) = grads[True], grads[False]
    assert n_f == n_u > 0
    torch.testing.assert_close(loss_f, loss_u, rtol=1e-5, atol=1e-6)
    assert g_f.keys() == g_u.keys()
    for k in g_f:
        torch.testing.assert_close(g_f[k], g_u[k], rtol=1e-4, atol=1e-6, msg=k)


@pytest.mark.parametrize("positions,independent", [("relative", True), ("start", True), ("right", False)])
def test_earlier_states_do_not_learn_how_many_items_follow(positions, independent):
    """Appending an item must not change the states of the items before it (relative and start positions);
    SASRec's right-aligned positions do change them: each column's position counts the items after it."""
    torch.manual_seed(0)
    enc = CausalEncoder(16, 2, 2, 6, 0.0, positions).eval()
    x = torch.randn(1, 6, 16)
    short_valid = torch.tensor([[0, 0, 1, 1, 1, 1]], dtype=torch.bool)      # 4 items in columns 2..5
    long_valid = torch.tensor([[0, 1, 1, 1, 1, 1]], dtype=torch.bool)       # the same 4 + one more
    short_x = torch.cat([torch.zeros(1, 2, 16), x[:, 1:5]], dim=1)
    long_x = torch.cat([torch.zeros(1, 1, 16), x[:, 1:6]], dim=1)
    with torch.no_grad():
        short, long = enc(short_x, short_valid), enc(long_x, long_valid)
    same = torch.allclose(short[:, 2:], long[:, 1:5], atol=1e-5)
    assert same == independent


def test_relative_positions_give_the_newest_item_the_same_slot_for_any_length():
    """The state after the newest item of a 1-item and a 5-item history read the same distance-0 bias."""
    torch.manual_seed(0)
    enc = CausalEncoder(16, 1, 1, 6, 0.0, "relative").eval()
    item = torch.randn(1, 1, 16)
    one = torch.cat([torch.zeros(1, 5, 16), item], dim=1)
    valid = torch.tensor([[0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    with torch.no_grad():
        alone = enc(one, valid)[:, -1]
        enc.distance_bias[0].weight[1:] = -1e4                              # only distance 0 may be attended
        many = enc(torch.cat([torch.randn(1, 5, 16), item], dim=1), torch.ones(1, 6, dtype=torch.bool))[:, -1]
    torch.testing.assert_close(alone, many, atol=1e-5, rtol=0)


def test_conditioning_centres_or_whitens_each_domain():
    from llm_emf.model.items import condition_features
    g = torch.Generator().manual_seed(0)
    common = torch.randn(8, generator=g) * 3                                # a shared direction: anisotropic
    m = common + torch.randn(400, 8, generator=g) * torch.linspace(0.5, 2, 8)    # spread 0.25..4 per direction
    has = torch.ones(400, dtype=torch.bool)
    has[[3, 300]] = False
    m[~has] = 0
    centred = condition_features(m, has, 200, "center")
    white = condition_features(m, has, 200, "whiten")
    for rows in (slice(0, 200), slice(200, 400)):
        keep = has[rows]
        c, w = centred[rows][keep].double(), white[rows][keep].double()
        torch.testing.assert_close(c.norm(dim=-1), torch.ones(len(c), dtype=torch.float64), atol=1e-5, rtol=0)
        # whitened: zero mean, covariance I/e (diagonal a little under 1 where the 1% eigenvalue floor bites)
        assert w.mean(0).abs().max() < 1e-5
        cov = (w - w.mean(0)).T @ (w - w.mean(0)) / (len(w) - 1) * 8
        off = cov - torch.diag(cov.diagonal())
        assert off.abs().max() < 0.02 and cov.diagonal().min() > 0.85 and cov.diagonal().max() < 1.0
    assert torch.all(centred[~has] == 0) and torch.all(white[~has] == 0)
    assert torch.equal(condition_features(m, has, 200, "none"), m)


def test_id_dropout_scores_dropped_items_from_their_content_in_training_only(features):
    cfg = tiny_config(use_text=True, use_image=True, id_dropout=1.0, unseen_id="zero").model
    torch.manual_seed(0)
    vecs = ItemVectors(N_X, N_Y, cfg, ("id", "text", "image"), features)
    fusion = EarlyFusion(vecs, cfg)
    content = vecs.modality("text") + vecs.modality("image")
    with torch.no_grad():
        trained = fusion.train()()
        assert torch.allclose(trained, content)                          # every item had content: all IDs dropped
        torch.testing.assert_close(fusion.eval()(), content + vecs.modality("id"))   # never at inference
    cfg.content_dropout, cfg.id_dropout = 1.0, 0.0
    with torch.no_grad():
        torch.testing.assert_close(EarlyFusion(vecs, cfg).train()(), vecs.modality("id"))
