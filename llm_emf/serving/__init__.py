"""Serving a trained run: load it back (``run.py``), score with its models (``scoring.py``), on a grown catalog
(``catalog.py``), and batch recommendations for every user of a split as a Ray Data job (``batch.py``).

Checkpoints are read through ``llm_emf.checkpoints``, the module training writes them with: serving never
imports training.
"""

from .run import find_checkpoint, load_models, load_scorer, read_results
from .scoring import DomainScorers, ModelScorer, make_scorer, recommend, top_k

__all__ = ["find_checkpoint", "load_models", "load_scorer", "read_results", "make_scorer", "ModelScorer",
           "DomainScorers", "recommend", "top_k"]
