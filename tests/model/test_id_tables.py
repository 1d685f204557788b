"""model.id_tables and train.embedding_l2, two ablations: the default path computes what it always did; under
per_encoder each encoder reads its own ID table, each state is scored with the documented table (h^D and S^D
with domain D's, the shared term's H with the mixed encoder's), and the tables save and load; the embedding
penalty is the sum of squares of the ID rows a batch reads, checked by hand."""

import hashlib

import numpy as np
import pyarrow as pa
import pytest
import torch

from llm_emf.checkpoints import load_state, save_checkpoint
from llm_emf.config import ConfigError
from llm_emf.model import build_model
from llm_emf.model.batch import PAD, Ragged, training_batch
from llm_emf.model.sampled_loss import Candidates
from llm_emf.serving.catalog import CatalogMap

from model_tiny import N_X, N_Y, random_features, tiny_config

pytestmark = pytest.mark.unit

SEQS = [[0, 8, 1, 9, 10], [11, 12, 3], [4, 2, 13, 5, 14]]     # items 6, 7 and 15 appear nowhere
X_ONLY = [[0, 1, 2, 3], [4, 5, 6]]
DOMAINS = ((0, (0, N_X)), (1, (N_X, N_X + N_Y)))
DOMAIN_TABLES = {"vectors.id_domain.0.weight", "vectors.id_domain.1.weight",
                 "fusion.vectors.id_domain.0.weight", "fusion.vectors.id_domain.1.weight"}


def ragged(rows):
    return Ragged.from_arrow(pa.array(rows, pa.list_(pa.int32())))


def make(use_text=True, **model):
    torch.manual_seed(0)
    features = random_features() if use_text else None
    return build_model(tiny_config(use_text=use_text, **model).model, N_X, N_Y, features)


def tables(model) -> list[torch.Tensor]:
    return [model.vectors.id_table(t).weight for t in range(3)]


def test_default_path_is_pinned():
    """model.id_tables=shared and train.embedding_l2=0 (the defaults): the state_dict keys, the initial weights of
    seed 0 and three Adam steps' losses are the ones recorded before either knob existed."""
    model = make(dropout=0.1)
    keys = list(model.state_dict())
    assert len(keys) == 122 and not any("id_domain" in k for k in keys)
    assert hashlib.sha256("\n".join(keys).encode()).hexdigest() == \
        "fbba84fa34106ae1537ee806e98e7a725ec267bf9a4adb0693f15f052e81108e"
    total = sum(float(p.detach().double().sum()) for p in model.parameters())
    assert total == pytest.approx(303.1482924629786, rel=1e-12)
    assert model.vectors.id.weight[0, :4].tolist() == pytest.approx(
        [-0.03096083179116249, -0.020965151488780975, -0.020256733521819115, 0.0009433411760255694], rel=1e-6)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = training_batch(ragged(SEQS), N_X, 6)
    losses = []
    for _ in range(3):
        loss, _ = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses == pytest.approx([8.414079666137695, 7.306551933288574, 6.454825401306152], rel=1e-5)


def test_per_encoder_adds_a_table_per_domain_encoder_and_each_encoder_reads_its_own():
    shared, model = make(), make(id_tables="per_encoder")
    assert set(model.state_dict()) - set(shared.state_dict()) == DOMAIN_TABLES
    mixed, x, y = tables(model)
    assert len({t.data_ptr() for t in (mixed, x, y)}) == 3
    assert not torch.equal(mixed, x) and not torch.equal(x, y)
    model.eval()
    with torch.no_grad():
        vecs = model.fusion()                     # one per table, the same text part added to each
        assert len(vecs) == 3
        torch.testing.assert_close(vecs[1] - vecs[0], x - mixed)
        batch = training_batch(ragged(SEQS), N_X, 6)
        before = model.net(vecs, batch)
        x[:N_X] += 1.0                             # domain X's table, its X rows: only S^X reads them
        after = model.net(model.fusion(), batch)
    torch.testing.assert_close(after[0], before[0])                   # H
    torch.testing.assert_close(after[2][1], before[2][1])             # S^Y
    assert not torch.allclose(after[2][0], before[2][0])              # S^X


def test_a_step_on_the_x_single_head_loss_leaves_the_mixed_table_unchanged():
    """head=single without the shared term: the loss is S^X's scored with X's table, so only X's table moves;
    with one shared table the same step moves that table."""
    batch = training_batch(ragged(X_ONLY), N_X, 6)
    for id_tables in ("per_encoder", "shared"):
        model = make(id_tables=id_tables, head="single", loss_weight=0.0)
        start = [t.detach().clone() for t in tables(model)] if id_tables == "per_encoder" else None
        first = model.vectors.id.weight.detach().clone()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        loss, _ = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if id_tables == "shared":
            assert not torch.equal(model.vectors.id.weight, first)
            continue
        mixed, x, y = tables(model)
        assert torch.equal(mixed, start[0]) and torch.equal(y, start[2])
        assert not torch.equal(x[:N_X], start[1][:N_X])
        assert torch.equal(x[N_X:], start[1][N_X:])                   # X's table: its Y rows are never read


def reference_loss(model, batch, weights: dict[str, float]) -> torch.Tensor:
    """sum over domains of the weighted mean CE of each state kind, scored with the documented table:
    combined h^D and single S^D with domain D's table (vecs[1 + D]), mixed H with the mixed one (vecs[0])."""
    with torch.no_grad():
        vecs = model.fusion()
        H, combined, singles = model.net(vecs, batch)
    total = 0.0
    for d, (lo, hi) in DOMAINS:
        states = {"combined": (combined[d], vecs[1 + d]), "mixed": (H, vecs[0]), "single": (singles[d], vecs[1 + d])}
        for kind, w in weights.items():
            s, items = states[kind]
            ce = [-torch.log_softmax(items[lo:hi] @ s[b, t], 0)[int(batch.targets[b, t]) - lo]
                  for b in range(len(SEQS)) for t in range(6)
                  if batch.targets[b, t] != PAD and lo <= int(batch.targets[b, t]) < hi]
            total = total + w * torch.stack(ce).mean()
    return total


class EveryItem:
    """A stand-in sampler whose candidates are all the domain's items, uncorrected: the sampled loss is then the
    full softmax (tests/model/test_sampled_loss.py), so it must score with the same tables as the full one."""

    def samples(self, domain):
        return True

    def candidates(self, domain, y):
        lo, hi = DOMAINS[domain][1]
        return Candidates(torch.arange(lo, hi), torch.zeros(hi - lo))


HEADS = [("combined", {"combined": 1.0, "mixed": 0.5}), ("single", {"single": 1.0, "mixed": 0.5}),
         ("select", {"combined": 1.0, "mixed": 0.5, "single": 1.0})]


@pytest.mark.parametrize("head,weights", HEADS)
@pytest.mark.parametrize("loss", ["fused", "unfused", "sampled"])
def test_each_loss_term_is_scored_with_its_table(head, weights, loss):
    model = make(id_tables="per_encoder", head=head, loss_weight=0.5, fused_loss=loss == "fused")
    if loss == "sampled":
        model.negatives = EveryItem()
    batch = training_batch(ragged(SEQS), N_X, 6)
    total, n = model(batch)
    assert int(n) == 10
    torch.testing.assert_close(total.detach(), reference_loss(model, batch, weights), rtol=1e-5, atol=1e-5)


def test_scores_of_both_heads_use_the_domain_table():
    model = make(id_tables="per_encoder", head="select").eval()
    batch = model.build_eval_batch(ragged(SEQS))
    with torch.no_grad():
        vecs = model.fusion()
        _, combined, singles = model.net(vecs, batch)
        for d, (lo, hi) in DOMAINS:
            for single, states in ((False, combined[d]), (True, singles[d])):
                model.head_single[d] = single
                expected = states[:, -1] @ vecs[1 + d][lo:hi].T
                torch.testing.assert_close(model.score(batch, d), expected)
                torch.testing.assert_close(model.item_scores(batch, d).dense(), expected)   # chunked scorer


def test_late_fusion_scores_with_the_domain_table():
    model = make(use_text=False, id_tables="per_encoder", fusion="late", head="single").eval()
    batch = model.build_eval_batch(ragged(SEQS))
    with torch.no_grad():
        vecs = tuple(model.vectors.id_rows(table=t) for t in range(3))
        _, _, singles = model.nets["id"](vecs, batch)
        for d, (lo, hi) in DOMAINS:
            expected = torch.log_softmax(singles[d][:, -1] @ vecs[1 + d][lo:hi].T, dim=-1)
            torch.testing.assert_close(model.score(batch, d), expected)
            torch.testing.assert_close(model.item_scores(batch, d).dense(), expected)


def test_per_encoder_weights_save_and_load(tmp_path):
    cfg = tiny_config(use_text=True, id_tables="per_encoder")
    model = make(id_tables="per_encoder")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss, _ = model(training_batch(ragged(SEQS), N_X, 6))
    loss.backward()
    opt.step()
    save_checkpoint(tmp_path / "ckpt", {"model": model.state_dict()}, cfg)
    state = load_state(tmp_path / "ckpt")["model"]
    torch.manual_seed(1)                                             # other initial weights
    loaded = build_model(cfg.model, N_X, N_Y, random_features())
    loaded.load_state_dict(state)
    batch = model.build_eval_batch(ragged(SEQS))
    for d in (0, 1):
        torch.testing.assert_close(loaded.eval().score(batch, d), model.eval().score(batch, d), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="id_domain"):              # not silently read as a shared-table model
        make().load_state_dict(state)


def test_a_grown_catalog_remaps_the_domain_tables_too():
    state = make(id_tables="per_encoder").state_dict()
    new_of_old = np.concatenate([np.arange(N_X), np.arange(N_X + 1, N_X + N_Y + 1)])   # one new X item
    remapped = CatalogMap(new_of_old, np.ones(N_X + N_Y + 1, dtype=bool), 1).remap_state(state)
    for key in DOMAIN_TABLES | {"vectors.id.weight"}:
        assert remapped[key].shape[0] == N_X + N_Y + 1
        torch.testing.assert_close(remapped[key][N_X + 1:], state[key][N_X:])


@pytest.mark.parametrize("model,train,message", [
    ({"name": "sasrec", "id_tables": "per_encoder"}, {}, r"model.id_tables=per_encoder .* model.name=sasrec"),
    ({"use_id": False, "use_text": True, "id_tables": "per_encoder"}, {}, r"model.id_tables=per_encoder .*"
                                                                           r"model.use_id=false"),
    ({"use_id": False, "use_text": True}, {"embedding_l2": 0.1}, r"train.embedding_l2 .* model.use_id=true"),
])
def test_combinations_that_cannot_work_name_their_keys(model, train, message):
    cfg = tiny_config()
    for k, v in model.items():
        setattr(cfg.model, k, v)
    for k, v in train.items():
        setattr(cfg.train, k, v)
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def squares(weight: torch.Tensor, rows) -> float:
    return sum(float(weight[i].detach().double().pow(2).sum()) for i in sorted(rows))


def test_embedding_penalty_by_hand():
    """The sum of squared entries of each row the batch reads, once: every item of SEQS (inputs and targets),
    not 6, 7 or 15; under per_encoder the mixed table's rows of all of them, a domain table's of its domain's."""
    batch = training_batch(ragged(SEQS), N_X, 6)
    seen = {i for s in SEQS for i in s}
    x_items, y_items = {i for i in seen if i < N_X}, {i for i in seen if i >= N_X}
    model = make()
    with torch.no_grad():
        model.vectors.id.weight.normal_()                     # rows of unit scale: the sum is far from rounding
    assert model.embedding_penalty(batch).item() == pytest.approx(squares(model.vectors.id.weight, seen), rel=1e-5)

    model = make(id_tables="per_encoder")
    mixed, x, y = tables(model)
    with torch.no_grad():
        for t in (mixed, x, y):
            t.normal_()
    expected = squares(mixed, seen) + squares(x, x_items) + squares(y, y_items)
    assert model.embedding_penalty(batch).item() == pytest.approx(expected, rel=1e-5)

    # SASRec reads each domain's subsequence alone: user 2's X part is item 3 alone, which supervises nothing
    sasrec, read = make(name="sasrec"), sorted(seen - {3})
    with torch.no_grad():
        sasrec.vectors.id.weight.normal_()
    penalty = sasrec.embedding_penalty(sasrec.build_training_batch(ragged(SEQS)))
    assert penalty.item() == pytest.approx(squares(sasrec.vectors.id.weight, read), rel=1e-5)
    penalty.backward()                                      # d/dE of sum E^2: 2E on the rows read, 0 elsewhere
    grad = sasrec.vectors.id.weight.grad
    torch.testing.assert_close(grad[read], 2 * sasrec.vectors.id.weight[read].detach())
    assert torch.all(grad[[3, 6, 7, 15]] == 0)


@pytest.mark.parametrize("unseen_id", ["learned", "mean"])
def test_each_table_fills_untrained_items_from_its_own_rows(unseen_id):
    trained = torch.ones(N_X + N_Y, dtype=torch.bool)
    trained[[3, 12]] = False                                       # one untrained item per domain
    cfg = tiny_config(id_tables="per_encoder", unseen_id=unseen_id)
    model = build_model(cfg.model, N_X, N_Y, None, trained)
    if unseen_id == "learned":
        assert model.vectors.unseen.shape == (3, 2, 16)             # one unseen vector per table and domain
        with torch.no_grad():
            model.vectors.unseen.normal_()
    for t, table in enumerate(tables(model)):
        rows = model.vectors.id_rows(table=t).detach()
        torch.testing.assert_close(rows[trained], table[trained].detach())
        for item, (lo, hi) in ((3, (0, N_X)), (12, (N_X, N_X + N_Y))):
            domain = int(item >= N_X)
            known = [i for i in range(lo, hi) if trained[i]]
            expected = model.vectors.unseen[t, domain] if unseen_id == "learned" else table[known].mean(0)
            torch.testing.assert_close(rows[item], expected.detach())
