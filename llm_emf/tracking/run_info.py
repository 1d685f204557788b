"""What a run is tagged with (code version, data, seed, protocol) and how values become MLflow params/metrics."""

from __future__ import annotations

import functools
import json
import numbers
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import llm_emf
from llm_emf import files
from llm_emf.config.redact import redact_uri

PARAM_VALUE_LIMIT = 6000     # MLflow rejects longer param values
UNKNOWN = "unknown"


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """HEAD of the git checkout holding this package, or 'unknown' (an installed wheel, no git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(llm_emf.__file__).parent, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else UNKNOWN


def dataset_fingerprint(cfg) -> str:
    """The fingerprint recorded in ``<data.dataset>/dataset.json`` (a local folder or an object-store URI), or
    'unknown' when there is none."""
    try:
        return str(files.read_json(files.join(cfg.data.dataset, "dataset.json")).get("fingerprint") or UNKNOWN)
    except (OSError, ValueError, AttributeError):
        return UNKNOWN


def default_tags(cfg, fingerprint: str) -> dict[str, str]:
    commit = git_commit()
    tags = {
        "git_commit": commit,
        "dataset_fingerprint": fingerprint or UNKNOWN,
        "seed": str(cfg.seed),
        "protocol": cfg.eval.protocol,
        "llm_emf_version": llm_emf.__version__,
    }
    if commit != UNKNOWN:
        tags["mlflow.source.git.commit"] = commit   # shown by the MLflow UI
    return tags


def param_value(value: Any, limit: int = PARAM_VALUE_LIMIT) -> str:
    """A param/tag value as text: lists and dicts as JSON, passwords in URIs redacted; longer than ``limit`` is
    cut with a marker."""
    text = json.dumps(value, sort_keys=True, default=str) if isinstance(value, (list, tuple, dict)) else str(value)
    text = redact_uri(text)
    if len(text) <= limit:
        return text
    marker = f"...[truncated from {len(text)} chars; full value in config.yaml]"
    return text[:limit - len(marker)] + marker


def metric_key(name: str) -> str:
    """MLflow metric names allow letters, digits, '_', '-', '.', ' ', '/' and ':'; 'NDCG@10' -> 'NDCG_at_10'."""
    name = str(name).replace("@", "_at_")
    return re.sub(r"[^\w\-. /:]", "_", name)[:250]


def flatten_numeric(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested mapping, keys joined with '/'; text, bools and None are skipped."""
    out: dict[str, float] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_numeric(value, name + "/"))
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[name] = float(value)
        elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:   # numpy / torch scalars
            item = value.item()
            if isinstance(item, numbers.Real) and not isinstance(item, bool):
                out[name] = float(item)
    return out


def describe_error(e: BaseException) -> str:
    text = redact_uri(f"{type(e).__name__}: {e}")
    return text if len(text) <= 500 else text[:500] + " ..."


def json_default(obj: Any) -> Any:
    """numpy scalars/arrays and paths in results."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"results: cannot write {type(obj).__name__} to JSON")
