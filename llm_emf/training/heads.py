"""Validation with ``model.head=select``: each domain keeps the head that ranks its validation cases better.

The model trains both heads of a domain (the combined state h^D, which reads the other domain, and the
single-domain state S^D, which does not). Every epoch both are validated and, per domain, the one with the
higher MRR under ``train.select_protocol`` is kept (ties keep the combined head, the paper's): it is written
into the model's ``head_single`` buffer, so the state saved as that domain's best, the test metrics and every
recommendation use it. The choice is made on validation only; test never sees both.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from llm_emf.evaluation import PROTOCOLS, EvalResult, evaluate
from llm_emf.serving.scoring import make_scorer

HEAD_NAMES = ("combined", "single")


def selects_head(model: torch.nn.Module) -> bool:
    cfg = getattr(model, "cfg", None)
    return getattr(cfg, "head", "") == "select" and hasattr(model, "head_single")


def validate(model: torch.nn.Module, dataset, cfg, device) -> tuple[EvalResult, dict[str, str]]:
    """The validation result of ``model`` and, per domain name, the head it used (``combined``/``single``)."""
    run = lambda: evaluate(make_scorer(model, cfg.train.eval_batch_size, device), dataset, "valid", cfg,  # noqa: E731
                           protocols=PROTOCOLS, scorer_name=cfg.model.name)
    if not selects_head(model):
        result = run()
        return result, {name: HEAD_NAMES[int(model.head_single[i])] if hasattr(model, "head_single")
                        else "single" for i, name in enumerate(result.domains)}
    by_head = []
    for single in (False, True):
        model.head_single.fill_(single)
        by_head.append(run())
    return merge_by_domain(model, by_head, cfg.train.select_protocol)


def merge_by_domain(model: torch.nn.Module, by_head: list[EvalResult], protocol: str
                    ) -> tuple[EvalResult, dict[str, str]]:
    """Per domain, the result of the head (index into ``by_head``: 0 combined, 1 single) with the higher MRR;
    sets ``model.head_single`` to the choice."""
    combined, single = by_head
    chosen: dict[str, str] = {}
    metrics = {p: {} for p in combined.metrics}
    ranks = {p: {} for p in combined.ranks}
    by_target = {kind: {p: {} for p in ms} for kind, ms in combined.by_target.items()}
    for i, name in enumerate(combined.domains):
        a, b = combined.metrics[protocol][name]["MRR"], single.metrics[protocol][name]["MRR"]
        pick = 1 if b > a else 0                                       # NaN (no cases) keeps combined
        model.head_single[i] = bool(pick)
        chosen[name] = HEAD_NAMES[pick]
        source = by_head[pick]
        for p in metrics:
            metrics[p][name] = dict(source.metrics[p][name])
        for p in ranks:
            if name in source.ranks.get(p, {}):
                ranks[p][name] = source.ranks[p][name]
        for kind, ms in by_target.items():
            for p in ms:
                ms[p][name] = dict(source.by_target[kind][p][name])
    info = {**combined.info, "heads": dict(chosen)}
    return replace(combined, metrics=metrics, ranks=ranks, by_target=by_target, info=info), chosen
