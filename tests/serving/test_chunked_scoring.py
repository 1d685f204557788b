"""Scoring in item chunks: the running top-k against a dense sort, and the models' ``item_scores`` against their
dense ``score`` (same scores, same top-k lists, same evaluation ranks)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from llm_emf.config import Config
from llm_emf.data.schema import ITEM_SCHEMA, SEQUENCE_SCHEMA, Dataset, DatasetMeta
from llm_emf.evaluation import evaluate
from llm_emf.model import build_model
from llm_emf.model.batch import Ragged
from llm_emf.model.features import ItemFeatures
from llm_emf.model.item_scores import DenseScores, SeenItems
from llm_emf.serving.scoring import chunked_top_k, make_scorer, top_k

N = 19


def _reference_top_k(scores: torch.Tensor, k: int, rows=None, cols=None):
    """A stable descending sort of each masked row: ties by lower column, NaN first."""
    masked = scores.clone()
    if rows is not None:
        masked[torch.as_tensor(rows), torch.as_tensor(cols)] = -math.inf
    order = torch.sort(masked, dim=1, descending=True, stable=True)
    k = min(k, scores.shape[1])
    return order.indices[:, :k], order.values[:, :k]


@pytest.mark.parametrize("chunk", [1, 2, 4, N - 1, N, N + 6])
@pytest.mark.parametrize("k", [1, 3, 7, N, N + 2])
def test_running_top_k_equals_a_stable_sort_of_the_whole_row(chunk, k):
    g = np.random.default_rng(k * 100 + chunk)
    for _ in range(4):
        scores = torch.as_tensor(g.integers(0, 3, size=(6, N)), dtype=torch.float32)     # ties everywhere
        scores[1, 5], scores[2, [0, N - 1]] = math.nan, -math.inf
        rows, cols = np.repeat(np.arange(6), 6), g.integers(0, N, size=36)
        rows[:N], cols[:N] = 5, np.arange(N)                                # row 5: everything seen
        for seen in (None, SeenItems(rows, cols, N)):
            got_cols, got_values = chunked_top_k(DenseScores(scores), k, seen, chunk=chunk)
            ref_cols, ref_values = _reference_top_k(scores, k, *((rows, cols) if seen else (None, None)))
            assert got_cols.tolist() == ref_cols.tolist()
            torch.testing.assert_close(got_values, ref_values, equal_nan=True)


def test_running_top_k_equals_torch_topk_on_distinct_scores():
    scores = torch.randn(8, 5000, generator=torch.Generator().manual_seed(0))
    for chunk in (1, 37, 1000, None):
        cols, values = chunked_top_k(DenseScores(scores), 10, chunk=chunk)
        top = torch.topk(scores, 10, dim=1)
        assert torch.equal(cols, top.indices) and torch.equal(values, top.values)


def test_top_k_arguments():
    with pytest.raises(ValueError, match="k: expected a positive integer, found 0"):
        chunked_top_k(DenseScores(torch.zeros(1, 3)), 0)


# -- the models ----------------------------------------------------------------------------------------

N_X, N_Y = 11, 13
HISTORIES = [[0, 12, 1, 13], [14, 15, 3], [4, 2, 16, 5, 17, 6], [20], [7, 7, 21]]


def _model(**settings):
    torch.manual_seed(0)
    cfg = Config()
    m = cfg.model
    m.hidden_size, m.n_heads, m.n_blocks, m.max_len, m.dropout = 16, 2, 1, 6, 0.0
    for key, value in settings.items():
        setattr(m, key, value)
    cfg.validate()
    g = torch.Generator().manual_seed(1)
    n = N_X + N_Y
    has_text, has_image = torch.ones(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)
    has_text[[2, 15]], has_image[[0, 3, 18]] = False, False
    features = ItemFeatures(torch.randn(n, 5, generator=g) * has_text[:, None],
                            torch.randn(n, 4, generator=g) * has_image[:, None], has_text, has_image)
    trained = torch.ones(n, dtype=torch.bool)
    trained[[1, 9, 10, 14, 22, 23]] = False                            # cold items share the unseen ID vector
    return build_model(m, N_X, N_Y, features, trained.numpy()).eval()


MODELS = {
    "id_only": dict(),
    "early_text_image": dict(use_text=True, use_image=True),
    "late_text_image": dict(use_text=True, use_image=True, fusion="late"),
    "sasrec": dict(name="sasrec"),
}


def _inputs(histories=HISTORIES) -> Ragged:
    return Ragged.from_arrow(pa.array(histories, pa.list_(pa.int32())))


def _old_top_k(model, inputs: Ragged, domain: int, k: int):
    """top_k as it was before chunking: the dense (B, n_D) scores, seen items at -inf, torch.topk."""
    lo = model.domain_slice(domain).start
    scores = model.score(model.build_eval_batch(inputs), domain).float()
    rows = np.repeat(np.arange(len(inputs.starts)), inputs.lengths)
    local = inputs.values - lo
    keep = (local >= 0) & (local < scores.shape[1])
    scores[torch.as_tensor(rows[keep]), torch.as_tensor(local[keep])] = -math.inf
    top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
    indices = top.indices.numpy() + lo
    indices[~torch.isfinite(top.values).numpy()] = -1
    return indices, top.values.numpy()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_item_scores_are_the_dense_scores(name):
    model = _model(**MODELS[name])
    batch = model.build_eval_batch(_inputs())
    for domain in (0, 1):
        dense = model.score(batch, domain).float()
        chunked = model.item_scores(batch, domain)
        assert (chunked.n_rows, chunked.n_items) == tuple(dense.shape)
        torch.testing.assert_close(chunked.dense(), dense, rtol=1e-5, atol=1e-5)
        for width in (1, 3, 5):
            blocks = torch.cat([block for _, block in chunked.chunks(width)], dim=1)
            torch.testing.assert_close(blocks, dense, rtol=1e-5, atol=1e-5)
        cols = torch.tensor([[0, 4, 4], [1, 2, 3], [5, 0, 1], [2, 2, 2], [3, 1, 0]])
        torch.testing.assert_close(chunked.at(cols), dense.gather(1, cols), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_chunked_top_k_lists_equal_the_dense_ones(name):
    model = _model(**MODELS[name])
    models = {0: model, 1: model}
    inputs = _inputs()
    for domain in (0, 1):
        for exclude_seen in (True, False):
            expected = top_k(models, inputs, domain, 4, exclude_seen)
            for chunk in (1, 2, 5, 100):
                got = top_k(models, inputs, domain, 4, exclude_seen, chunk=chunk)
                assert got[0].tolist() == expected[0].tolist()
                np.testing.assert_allclose(got[1], expected[1], rtol=1e-5, atol=1e-6)
        # against the pre-chunking code, where the scores are distinct (cold items tie: torch.topk's order
        # among them is unspecified; the chunked lists put the lower item_index first)
        old_indices, old_values = _old_top_k(model, inputs, domain, 3)
        new_indices, new_values = top_k(models, inputs, domain, 2, True)
        distinct = np.array([len(set(np.round(v, 6))) == len(v) for v in old_values])     # no tie up to the cut
        assert distinct.sum() >= 2
        assert new_indices[distinct].tolist() == old_indices[distinct, :2].tolist()
        np.testing.assert_allclose(new_values, old_values[:, :2], rtol=1e-5, atol=1e-6)


def _dataset() -> Dataset:
    g = np.random.default_rng(0)
    rows = []
    for u in range(30):
        seq = [int(i) for i in g.integers(0, N_X + N_Y, size=int(g.integers(2, 8)))]
        rows.append({"user_id": f"u{u}", "split": "train" if u < 10 else "test", "items": seq, "timestamps": None})
    n = N_X + N_Y
    items = pa.table({"item_index": pa.array(range(n), pa.int32()), "item_id": [f"i{i}" for i in range(n)],
                      "domain": pa.array([0] * N_X + [1] * N_Y, pa.int8()), "title": [None] * n,
                      "image_uri": [None] * n, "attributes": [None] * n}, schema=ITEM_SCHEMA)
    return Dataset(items, pa.Table.from_pylist(rows, schema=SEQUENCE_SCHEMA),
                   DatasetMeta(name="chunks", domains=("X", "Y"), n_items=(N_X, N_Y), fingerprint="fp"))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_evaluation_ranks_are_the_same_through_chunks_and_dense_scores(name, tmp_path, monkeypatch):
    import llm_emf.model.item_scores as item_scores

    model, dataset = _model(**MODELS[name]), _dataset()
    cfg = Config()
    cfg.data.dataset, cfg.eval.n_negatives = str(tmp_path / "ds"), 5
    scorer = make_scorer(model, batch_size=4)
    for ties, exclude_seen in (("pessimistic", True), ("optimistic", False)):
        cfg.eval.ties, cfg.eval.exclude_seen = ties, exclude_seen
        first = None
        for batch_size in (7, 1):
            cfg.train.eval_batch_size = batch_size
            dense = evaluate(lambda rows, d: scorer(rows, d), dataset, "test", cfg)   # no item_scores: dense
            for width in (1, 100):
                monkeypatch.setattr(item_scores, "SCORE_CHUNK_BYTES", 4 * batch_size * width)
                monkeypatch.setattr(item_scores, "MIN_CHUNK_ITEMS", 1)
                chunked = evaluate(scorer, dataset, "test", cfg)
                first = first or chunked
                for protocol in ("full", "sampled"):
                    for domain, ranks in chunked.ranks[protocol].items():
                        # chunked ranks depend on neither the chunk width nor the batch size
                        assert ranks.tolist() == first.ranks[protocol][domain].tolist()
                        # a one-row dense product can tell equal item vectors (the cold items) apart by float
                        # noise, chunks cannot: the dense full ranks of one-row batches are not the reference
                        if batch_size > 1 or protocol == "sampled":
                            assert ranks.tolist() == dense.ranks[protocol][domain].tolist(), \
                                (protocol, domain, ties, exclude_seen, batch_size, width)
