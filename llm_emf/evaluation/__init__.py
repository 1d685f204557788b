"""Evaluation: ranks and metrics (MRR, NDCG@k, HR@k) per domain under the sampled and full protocols."""

from .baselines import PopularityScorer
from .evaluator import PROTOCOLS, Scorer, evaluate, protocols_from_config, split_targets
from .metrics import chunked_target_ranks, metric_names, metrics_from_ranks, target_ranks
from .negatives import load_or_create_negatives, negatives_path, sample_negatives
from .result import EvalResult

__all__ = ["evaluate", "EvalResult", "Scorer", "PROTOCOLS", "protocols_from_config", "split_targets",
           "target_ranks", "chunked_target_ranks", "metrics_from_ranks", "metric_names", "PopularityScorer",
           "negatives_path", "sample_negatives", "load_or_create_negatives"]
