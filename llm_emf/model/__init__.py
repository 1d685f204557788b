"""The LLM-EMF network and the SASRec baseline (method.md stages 2-3).

``build_model(cfg.model, n_x, n_y, features)`` returns a module with the common contract:
``build_training_batch(Ragged)``, ``forward(batch) -> (loss, n_positions)``, ``build_eval_batch(Ragged)``,
``score(batch, domain) -> (B, n_domain_items)`` and ``item_scores(batch, domain) -> ItemScores``, the same
scores computed a chunk of items at a time (``item_scores.py``: what full ranking and top-k lists use, so memory
does not grow with the catalog). Scoring with a model (the evaluator's scorer, top-k lists) is
``llm_emf.serving.scoring``.
"""

from __future__ import annotations

import pyarrow as pa
import torch

from llm_emf.config import ConfigError
from llm_emf.config.model import ModelConfig

from .batch import Ragged
from .features import ItemFeatures, load_item_features
from .llm_emf import LLMEMF
from .sasrec import SASRecPair


def needs_features(cfg: ModelConfig) -> bool:
    return cfg.use_text or cfg.use_image


def load_features_for(cfg: ModelConfig, items: pa.Table) -> ItemFeatures | None:
    """The feature table named by ``model.features``, aligned to ``items``; None for ID-only models."""
    if not needs_features(cfg):
        return None
    if not cfg.features:
        raise ConfigError("model.features: expected a feature table path (use_text or use_image is on), found ''")
    return load_item_features(cfg.features, items)


def build_model(cfg: ModelConfig, n_x: int, n_y: int, features: ItemFeatures | None = None,
                trained=None) -> torch.nn.Module:
    """``trained``: (n_items,) bool, items in some training sequence (``llm_emf.data.cold.trained_items``);
    the others get ``model.unseen_id`` as their ID part. None treats every item as trained."""
    if needs_features(cfg) and features is None:
        raise ConfigError("model: use_text/use_image need item features (model.features)")
    cls = SASRecPair if cfg.name == "sasrec" else LLMEMF
    return cls(cfg, n_x, n_y, features, trained)


__all__ = ["LLMEMF", "SASRecPair", "ItemFeatures", "Ragged", "build_model", "load_features_for",
           "load_item_features", "needs_features"]
