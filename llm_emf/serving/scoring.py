"""Scoring with trained models: the evaluator's scorer for a model, and top-k lists for a batch of histories
or one user.

Models follow the contract of ``llm_emf.model`` (``build_eval_batch``, ``score``, ``domain_slice``); a run's
models, one per domain with that domain's best-validation state, come from ``llm_emf.serving.run.load_models``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from llm_emf.model.batch import Ragged, eval_inputs


def make_scorer(model: torch.nn.Module, batch_size: int = 512, device: str | torch.device = "cpu"):
    """The evaluator's scorer: ``scorer(rows, domain) -> (B, n_domain_items)`` on CPU, float32.

    ``rows`` are SEQUENCE_SCHEMA rows whose last item is the target; the model sees items[:-1].
    """
    def scorer(rows: pa.Table, domain: int) -> torch.Tensor:
        was_training = model.training
        model.eval()
        out = []
        try:
            for start in range(0, rows.num_rows, batch_size):
                chunk = rows.slice(start, batch_size)
                batch = model.build_eval_batch(eval_inputs(chunk)).to(device)
                out.append(model.score(batch, domain).float().cpu())
        finally:
            model.train(was_training)
        n_d = model.n_x if domain == 0 else model.n_y
        return torch.cat(out) if out else torch.zeros(0, n_d)
    return scorer


def recommend(models: dict[int, torch.nn.Module], history: list[int], domain: int, k: int,
              exclude_seen: bool = True) -> list[tuple[int, float]]:
    """Top-k ``(item_index, score)`` of ``domain`` for a user whose history is ``history`` (item indices)."""
    inputs = Ragged(np.asarray(history, dtype=np.int64), np.array([0]), np.array([len(history)]))
    indices, scores = top_k(models, inputs, domain, k, exclude_seen)
    return [(int(i), float(s)) for i, s in zip(indices[0], scores[0]) if i >= 0]


def top_k(models: dict, inputs, domain: int, k: int, exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(indices (B, k) item_index, scores (B, k))`` of ``domain`` for a batch of histories (``Ragged``);
    positions past the domain's unseen items (when ``exclude_seen`` leaves fewer than k) hold index -1 and
    score -inf."""
    model = models[domain]
    lo = model.domain_slice(domain).start
    with torch.no_grad():
        scores = model.score(model.build_eval_batch(inputs), domain).float()            # (B, n_D)
    if exclude_seen:
        rows_in_order = inputs.take(np.arange(len(inputs.starts)))               # values compacted, row-major
        rows = np.repeat(np.arange(len(inputs.starts)), rows_in_order.lengths)
        local = rows_in_order.values.astype(np.int64) - lo
        keep = (local >= 0) & (local < scores.shape[1])
        scores[torch.as_tensor(rows[keep]), torch.as_tensor(local[keep])] = -torch.inf
    top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
    indices = top.indices.numpy().astype(np.int64) + lo
    indices[~torch.isfinite(top.values).numpy()] = -1
    return indices, top.values.numpy()
