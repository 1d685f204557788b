"""PNG plots of a run: training curves and per-domain metric bars.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend switch), so this is
safe in headless Ray workers and threads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from llm_emf import files

from .run_info import flatten_numeric

_VALID_COMPONENT = re.compile(r"(^|[/_.\s-])val(id(ation)?)?($|[/_.\s-])")


def _norm(name: str) -> str:
    """'NDCG@10', 'ndcg_at_10' and 'ndcg_10' all compare equal."""
    return re.sub(r"[^a-z0-9]", "", name.lower().replace("_at_", "").replace("@", ""))


def _ordered_keys(rows: Sequence[Mapping[str, float]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _save(fig: Figure, path: str | Path) -> Path | str:
    """The PNG at ``path``, whole or absent: a local Path, or an object-store URI (drawn locally, uploaded)."""
    FigureCanvasAgg(fig)
    with files.local_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return str(path) if files.is_remote(path) else Path(path)


def curve_panels(rows: Sequence[Mapping[str, float]]) -> dict[str, list[str]]:
    """Panel title -> flattened history keys drawn in it: every loss; validation MRR and NDCG keys (all
    MRR/NDCG keys when none is marked as validation)."""
    keys = [k for k in _ordered_keys(rows) if k != "epoch"]
    ranking = [k for k in keys if any(m in _norm(k.rsplit("/", 1)[-1]) for m in ("mrr", "ndcg"))]
    shown = [k for k in ranking if _VALID_COMPONENT.search(k.lower())] or ranking
    panels = {
        "loss": [k for k in keys if "loss" in k.lower()],
        "MRR": [k for k in shown if "mrr" in _norm(k.rsplit("/", 1)[-1])],
        "NDCG": [k for k in shown if "ndcg" in _norm(k.rsplit("/", 1)[-1])],
    }
    panels = {title: ks for title, ks in panels.items() if ks}
    if not panels:
        raise ValueError(f"history: expected loss, MRR or NDCG values per epoch, found keys {keys[:12]}")
    return panels


def training_curves(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path | str:
    """Loss and validation MRR / NDCG (one line per key, so per domain and cut-off) against epoch.

    ``history`` is the trainer's per-epoch list of (possibly nested) dicts; ``epoch`` is the x axis
    (the row's position when missing). Returns ``path``.
    """
    rows = [flatten_numeric(row) for row in history]
    epochs = [row.get("epoch", i) for i, row in enumerate(rows)]
    panels = curve_panels(rows)

    fig = Figure(figsize=(5 * len(panels), 4), layout="constrained")
    for ax, (title, panel_keys) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels.items()):
        for key in panel_keys:
            points = [(e, row[key]) for e, row in zip(epochs, rows) if key in row]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=key)
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def _metric_by_group(results: Mapping[str, Any], metric: str) -> dict[str, float]:
    """``{'sampled/X': 0.31, ...}``: values whose last key component is ``metric``, grouped by the rest."""
    wanted = _norm(metric)
    found = {}
    for key, value in flatten_numeric(results).items():
        *group, last = key.split("/")
        if _norm(last) == wanted and not math.isnan(value):
            found["/".join(group) or "all"] = value
    return found


def _strip_common_prefix(per_model: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """'metrics/full/Food' and 'metrics/full/Kitchen' -> 'Food', 'Kitchen': short, still distinct labels."""
    groups = _ordered_keys(list(per_model.values()))
    parts = [g.split("/") for g in groups]
    drop = 0
    while all(len(p) > drop + 1 for p in parts) and len({p[drop] for p in parts}) == 1:
        drop += 1
    return {name: {"/".join(g.split("/")[drop:]): v for g, v in vals.items()} for name, vals in per_model.items()}


def as_mapping(results: Any) -> Mapping[str, Any]:
    """Results as a mapping: a dict as is, an object with ``to_dict()`` (e.g. ``EvalResult``) converted."""
    return results.to_dict() if hasattr(results, "to_dict") else results


def _plot_mapping(results: Any) -> Mapping[str, Any]:
    """Only the metrics of an ``EvalResult`` (``metrics[protocol][domain][metric]``), so they group like a dict's."""
    metrics = getattr(results, "metrics", None)
    return metrics if isinstance(metrics, Mapping) else as_mapping(results)


def bar_values(results_by_model: Mapping[str, Any], metric: str) -> dict[str, dict[str, float]]:
    """Model -> group -> value of ``metric``, as ``metric_bars`` draws them (NaN, i.e. no cases, is left out)."""
    values = {name: _metric_by_group(_plot_mapping(res), metric) for name, res in results_by_model.items()}
    if not any(values.values()):
        sample = [k for res in results_by_model.values() for k in flatten_numeric(_plot_mapping(res))][:12]
        raise ValueError(f"results_by_model: expected values for metric '{metric}', found keys {sample}")
    return _strip_common_prefix(values)


def metric_bars(results_by_model: Mapping[str, Any], path: str | Path, metric: str = "MRR",
                title: str | None = None) -> Path | str:
    """Grouped bars of one metric: a group per domain (and protocol), a bar per model or trial.

    ``results_by_model`` maps a model/trial name to its (nested) results or ``EvalResult``, e.g.
    ``{"sasrec": {"X": {"MRR": 0.31}, "Y": {"MRR": 0.22}}}``. The metric is the last component of a nested
    key and matches 'NDCG@10', 'ndcg_at_10' or 'ndcg_10' alike; the rest of the key names the group (leading
    components shared by every group are dropped). Returns ``path``.
    """
    per_model = bar_values(results_by_model, metric)
    groups = _ordered_keys(list(per_model.values()))

    n_models = len(per_model)
    width = 0.8 / n_models
    fig = Figure(figsize=(max(5.0, 1.2 * len(groups) * max(1, n_models) ** 0.5 + 2), 4), layout="constrained")
    ax = fig.subplots()
    for m, (name, values) in enumerate(per_model.items()):
        xs = [g + (m - (n_models - 1) / 2) * width for g in range(len(groups))]
        heights = [values.get(group, float("nan")) for group in groups]
        bars = ax.bar(xs, heights, width=width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(groups)), groups)
    ax.set(ylabel=metric, title=title or f"{metric} per domain")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
