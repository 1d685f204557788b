"""The test cases behind every run's per-case ranks: which target each rank belongs to, and its training count.

The evaluator ranks the test rows of each domain in the order ``np.flatnonzero(case_domain == domain)``
(llm_emf/evaluation/evaluator.py); the lists here follow that order, so ``ranks[protocol][domain][i]`` and
``targets[domain][i]`` describe the same case.
"""

from __future__ import annotations

import numpy as np


def targets_by_domain(dataset_path: str) -> tuple[dict, dict]:
    """Per domain, the test cases' target item_index and its training count, in the evaluator's case order
    (``np.flatnonzero(case_domain == domain)`` over the test rows): the order of every run's ranks."""
    from llm_emf.data.cold import train_counts
    from llm_emf.data.schema import Dataset
    from llm_emf.evaluation.evaluator import result_domain_names, split_targets

    dataset = Dataset.read(dataset_path)
    targets = split_targets(dataset.split("test"), "test", dataset.n_items)          # (N,)
    counts = train_counts(dataset)                                                     # (n_items,)
    in_y = targets >= dataset.n_x
    by_domain = {name: targets[np.flatnonzero(in_y == bool(d))]
                 for d, name in enumerate(result_domain_names(dataset.meta.domains))}
    return ({d: t.tolist() for d, t in by_domain.items()},
            {d: counts[t].tolist() for d, t in by_domain.items()})


def ranks_of(test) -> dict:
    """``EvalResult.ranks`` as JSON lists: ``{protocol: {domain: [rank, ...]}}``."""
    return {p: {d: [int(x) for x in r] for d, r in doms.items()} for p, doms in test.ranks.items()}


def check_case_order(run: dict, targets: dict) -> None:
    """RuntimeError unless every ranks list has one entry per test target of its domain: ranks that do not
    line up with the targets would put cases in the wrong popularity bucket without any other sign."""
    for protocol, doms in run["ranks"].items():
        for domain, ranks in doms.items():
            if len(ranks) != len(targets.get(domain, ())):
                raise RuntimeError(f"{run['variant']} seed {run['seed']}: {len(ranks)} {protocol} ranks for "
                                   f"{domain}, but {len(targets.get(domain, ()))} test targets")
