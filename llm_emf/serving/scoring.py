"""Scoring with trained models: the evaluator's scorer for a model, and top-k lists for a batch of histories
or one user.

Models follow the contract of ``llm_emf.model`` (``build_eval_batch``, ``score``, ``domain_slice``) and offer
``item_scores(batch, domain)``: the same scores as ``score``, computed a chunk of items at a time
(``llm_emf.model.item_scores``). The evaluator's full ranking and the top-k lists go through those chunks, so
memory is one ``(batch, chunk)`` block whatever the catalog size, never ``(batch, n_D)``. A run's models, one
per domain with that domain's best-validation state, come from ``llm_emf.serving.run.load_models``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from llm_emf.model.batch import Ragged, eval_inputs
from llm_emf.model.item_scores import DenseScores, ItemScores, SeenItems


def item_scores_of(model: torch.nn.Module, batch, domain: int) -> ItemScores:
    """The model's chunked scores, or its dense ``score`` wrapped when it has no ``item_scores``."""
    chunked = getattr(model, "item_scores", None)
    return chunked(batch, domain) if chunked is not None else DenseScores(model.score(batch, domain).float())


class ModelScorer:
    """The evaluator's scorer for one model, in sub-batches of ``batch_size`` rows.

    ``scorer(rows, domain)`` is the dense contract: ``(B, n_domain_items)`` on CPU, float32.
    ``scorer.item_scores(rows, domain)`` returns the same scores as an :class:`ItemScores`; ``evaluate``
    uses it when present, so full ranking never holds ``(B, n_D)``. ``rows`` are SEQUENCE_SCHEMA rows whose
    last item is the target; the model sees items[:-1].
    """

    def __init__(self, model: torch.nn.Module, batch_size: int = 512, device: str | torch.device = "cpu"):
        self.model, self.batch_size, self.device = model, batch_size, device

    def _each_batch(self, rows: pa.Table, fn) -> list:
        was_training = self.model.training
        self.model.eval()
        try:
            return [fn(self.model.build_eval_batch(eval_inputs(rows.slice(start, self.batch_size))).to(self.device))
                    for start in range(0, rows.num_rows, self.batch_size)]
        finally:
            self.model.train(was_training)

    def __call__(self, rows: pa.Table, domain: int) -> torch.Tensor:
        with torch.no_grad():
            out = self._each_batch(rows, lambda batch: self.model.score(batch, domain).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self._n_items(domain))

    def item_scores(self, rows: pa.Table, domain: int) -> ItemScores:
        with torch.no_grad():
            parts = self._each_batch(rows, lambda batch: item_scores_of(self.model, batch, domain))
        return ItemScores.cat(parts) if parts else DenseScores(torch.zeros(0, self._n_items(domain)))

    def _n_items(self, domain: int) -> int:
        return self.model.n_x if domain == 0 else self.model.n_y


def make_scorer(model: torch.nn.Module, batch_size: int = 512, device: str | torch.device = "cpu") -> ModelScorer:
    """The evaluator's scorer for ``model`` (see :class:`ModelScorer`)."""
    return ModelScorer(model, batch_size, device)


class DomainScorers:
    """One scorer per domain (``{domain: ModelScorer}``) behind the evaluator's scorer contract, chunked path
    included: each domain is scored by its own model (a run's best-validation state per domain)."""

    def __init__(self, scorers: dict[int, ModelScorer]):
        self.scorers = scorers

    def __call__(self, rows: pa.Table, domain: int) -> torch.Tensor:
        return self.scorers[domain](rows, domain)

    def item_scores(self, rows: pa.Table, domain: int) -> ItemScores:
        return self.scorers[domain].item_scores(rows, domain)


def recommend(models: dict[int, torch.nn.Module], history: list[int], domain: int, k: int,
              exclude_seen: bool = True) -> list[tuple[int, float]]:
    """Top-k ``(item_index, score)`` of ``domain`` for a user whose history is ``history`` (item indices)."""
    inputs = Ragged(np.asarray(history, dtype=np.int64), np.array([0]), np.array([len(history)]))
    indices, scores = top_k(models, inputs, domain, k, exclude_seen)
    return [(int(i), float(s)) for i, s in zip(indices[0], scores[0]) if i >= 0]


def top_k(models: dict, inputs, domain: int, k: int, exclude_seen: bool,
          chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(indices (B, k) item_index, scores (B, k))`` of ``domain`` for a batch of histories (``Ragged``), best
    first, equal scores by lower item_index; positions past the domain's unseen items (when ``exclude_seen``
    leaves fewer than k) hold index -1 and score -inf. Items are scored ``chunk`` at a time (default: the byte
    budget's, ``llm_emf.model.item_scores.chunk_size``)."""
    model = models[domain]
    lo = model.domain_slice(domain).start
    with torch.no_grad():
        scores = item_scores_of(model, model.build_eval_batch(inputs), domain)
        seen = SeenItems.of_histories(inputs, lo, scores.n_items) if exclude_seen else None
        cols, values = chunked_top_k(scores, k, seen, chunk)
    values = values.float().cpu().numpy()
    indices = cols.cpu().numpy().astype(np.int64) + lo
    indices[~np.isfinite(values)] = -1
    return indices, values


def chunked_top_k(scores: ItemScores, k: int, seen: SeenItems | None = None,
                  chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(columns (B, k'), values (B, k'))``, ``k' = min(k, n_items)``: each row's best items, ``seen`` pairs
    at -inf, ordered by score (descending, NaN first as ``torch.sort`` puts it) then column (ascending).

    A running top-k: each chunk's own top-k is merged into it and the chunk dropped. Chunks come in column
    order, so a stable sort of [running, chunk] keeps lower columns first among equal scores; the result is
    the first k' of a stable descending sort of the whole row.
    """
    if k < 1:
        raise ValueError(f"k: expected a positive integer, found {k}")
    k = min(k, scores.n_items)
    best_values = torch.empty(scores.n_rows, 0, device=scores.device)
    best_cols = torch.empty(scores.n_rows, 0, dtype=torch.long, device=scores.device)
    for lo, block in scores.chunks(chunk):
        if seen is not None:
            seen.mask(block, lo)
        values, cols = _block_top_k(block, k)
        by_col = torch.argsort(cols, dim=1)              # equal values in column order, for the stable sort
        values = torch.cat([best_values.to(values.dtype), values.gather(1, by_col)], dim=1)
        cols = torch.cat([best_cols, cols.gather(1, by_col) + lo], dim=1)
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
        best_values, best_cols = values.gather(1, order), cols.gather(1, order)
    return best_cols, best_values


def _block_top_k(block: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, columns)``: the set of a block's best ``min(k, width)`` per row that a stable descending
    sort would put first (in no particular order).

    ``torch.topk`` leaves open which of several items tied at the cut it keeps, so it is asked for one more:
    rows where the k-th and (k+1)-th values differ (the usual case with continuous scores) keep its set; the
    others (a tie at the cut, NaN, masked -inf at the cut) take a stable sort of the row.
    """
    width = block.shape[1]
    if width <= k:
        return block, torch.arange(width, device=block.device).expand(block.shape[0], -1)
    top = torch.topk(block, k + 1, dim=1)
    values, cols = top.values[:, :k], top.indices[:, :k]
    unsure = (top.values[:, k - 1] == top.values[:, k]) | torch.isnan(top.values).any(dim=1)
    redo = torch.nonzero(unsure).flatten()
    if redo.numel():
        ordered = torch.sort(block[redo], dim=1, descending=True, stable=True)
        values, cols = values.clone(), cols.clone()
        values[redo], cols[redo] = ordered.values[:, :k], ordered.indices[:, :k]
    return values, cols
