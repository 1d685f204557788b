"""Load a trained run back: find its checkpoint, rebuild its models, and offer the evaluator's scorer.

A run is addressed by its run folder (``train.storage/run_name``) or directly by a checkpoint folder, a local
path or an object-store URI. The model is rebuilt from the checkpoint's own ``config.yaml``; each domain uses
its best-validation state.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import torch

from llm_emf import files
from llm_emf.checkpoints import (DIGEST_FILE, STATE_FILE, CorruptCheckpoint, check_features, features_fingerprint,
                                 load_checkpoint_config, load_state)
from llm_emf.config import Config, ConfigError
from llm_emf.data.cold import trained_items
from llm_emf.data.schema import DataError, Dataset
from llm_emf.hashing import file_sha256
from llm_emf.model import build_model, load_features_for

from .catalog import ITEM_ROWS, match_catalog
from .scoring import DomainScorers, make_scorer


SWAPPABLE_UNSEEN = ("neighbor", "zero", "mean")
UNSEEN_WEIGHT = "vectors.unseen"
RESULTS_FILE = "results.json"


def find_checkpoint(path: str | Path) -> Path | str:
    """The checkpoint folder of ``path``: itself, the one results.json names, or the newest one inside (a
    Path for a local folder, the URI for a remote one).

    A run folder is relocatable: results.json names its checkpoint by absolute path, and a checkpoint inside
    the run folder is looked up relative to the folder given, so a copy (another disk, another bucket) reads
    its own checkpoint, never the original's. When results.json records the checkpoint's sha256, the copy's
    state file must match it (CorruptCheckpoint otherwise, naming the file)."""
    path = str(path)
    if files.is_file(files.join(path, STATE_FILE)):
        return _typed(path)
    if not files.is_dir(path):
        raise ConfigError(f"expected a run folder or checkpoint folder, found no such folder '{path}'")
    results = files.join(path, RESULTS_FILE)
    if files.is_file(results):
        named = _checkpoint_named_by(path, results)
        if named is not None:
            return _typed(named)
    fs, root = files.filesystem(path)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    found = [i for i in infos if i.type == pafs.FileType.File and i.base_name == STATE_FILE
             and not Path(i.path).parent.name.startswith("corrupt")]           # set aside
    if not found:
        raise ConfigError(f"{path}: expected a training checkpoint ({STATE_FILE}) inside, found none")
    newest = max(found, key=lambda i: (i.mtime_ns or 0, i.path))
    rel = Path(newest.path).parent.relative_to(root)                 # under root: rebuild the caller's form
    folder = files.join(path, *rel.parts)
    if files.is_file(results):
        warnings.warn(f"{results}: the checkpoint it names is not in {path}; using the newest checkpoint found "
                      f"inside, {folder}", stacklevel=2)
    return _typed(folder)


def read_results(results: str) -> dict:
    """A run's results.json as a mapping; a truncated or unreadable file is a DataError naming it."""
    try:
        record = json.loads(files.read_text(results))
    except json.JSONDecodeError as e:
        raise DataError(results, e.lineno, "a JSON object written by `llm-emf train`",
                        f"invalid JSON ({e.msg}, column {e.colno}); the file may be truncated: copy it again "
                        f"from the original run folder, or pass the checkpoint folder itself") from None
    except UnicodeDecodeError as e:
        raise DataError(results, None, "UTF-8 JSON written by `llm-emf train`",
                        f"an undecodable byte at offset {e.start}") from None
    if not isinstance(record, dict):
        raise DataError(results, None, "a JSON object written by `llm-emf train`", type(record).__name__)
    return record


def _inside(child: str, parent: str) -> str | None:
    """``child`` relative to ``parent`` (posix form) when it lies inside it, else None."""
    if not child or not parent:
        return None
    c, p = child.rstrip("/"), parent.rstrip("/")
    if c.startswith(p + "/"):
        return c[len(p) + 1:]
    if files.is_remote(child) or files.is_remote(parent):
        return None
    try:
        return Path(c).resolve().relative_to(Path(p).resolve()).as_posix()
    except ValueError:
        return None


def _checkpoint_named_by(path: str, results: str) -> str | None:
    """The checkpoint ``results`` names, looked up in the run folder ``path`` first (see find_checkpoint);
    None when it is not there (the caller then looks for the newest one inside)."""
    record = read_results(results)
    named = str(record.get("checkpoint") or "")
    if not named:
        return None
    rel = _inside(named, str(record.get("run_dir") or ""))
    if rel is None:                      # trained with its checkpoint outside the run folder: that place
        return named if files.is_file(files.join(named, STATE_FILE)) else None
    here = files.join(path, *rel.split("/"))
    if not files.is_file(files.join(here, STATE_FILE)):
        return None
    expected = record.get("checkpoint_sha256")
    if expected:
        _check_recorded_digest(here, str(expected), results)
    return here


def _check_recorded_digest(folder: str, expected: str, results: str) -> None:
    """``folder``'s state file against the sha256 ``results`` recorded for it. The folder's own digest file
    is compared first (load_state then checks the file against it); without one the file is hashed."""
    state = files.join(folder, STATE_FILE)
    digest = files.join(folder, DIGEST_FILE)
    found = files.read_text(digest).strip() if files.is_file(digest) else file_sha256(state)
    if found != expected:
        source = DIGEST_FILE if files.is_file(digest) else "the file itself"
        raise CorruptCheckpoint(f"{state}: expected sha256 {expected} (recorded in {results}), found {found} "
                                f"(from {source}): this is not the checkpoint the run's results describe "
                                f"(replaced, truncated or corrupted); it is not loaded")


def _typed(folder: str) -> Path | str:
    return folder if files.is_remote(folder) else Path(folder)


def load_models(run: str | Path, dataset: Dataset | None = None, features_path: str | None = None,
                unseen_id: str | None = None, unseen_neighbors: int | None = None
                ) -> tuple[Config, Dataset, dict[int, torch.nn.Module]]:
    """(config of the run, dataset, {domain: model with that domain's best-validation state}).

    ``dataset`` may be another catalog than the one trained on, as long as it keeps every trained item
    (catalog.py): new items are scored from their content, read from ``features_path`` (default: the
    run's ``model.features``, which ``llm-emf embed`` extends in place). ``unseen_id`` (and
    ``unseen_neighbors``) replace the run's ``model.unseen_id`` with a choice that has no trained weights
    (neighbor, zero, mean): a trained model can be served with another rule for its cold items.
    """
    folder = find_checkpoint(run)
    cfg = load_checkpoint_config(folder)
    if features_path:
        cfg.model.features = features_path
    swapped = unseen_id is not None and unseen_id != cfg.model.unseen_id
    if unseen_id is not None:
        if unseen_id not in SWAPPABLE_UNSEEN:
            raise ConfigError(f"unseen_id: expected one of {SWAPPABLE_UNSEEN} (no trained weights) to replace the "
                              f"run's '{cfg.model.unseen_id}', found '{unseen_id}'")
        cfg.model.unseen_id = unseen_id
    if unseen_neighbors is not None:
        cfg.model.unseen_neighbors = unseen_neighbors
    dataset = dataset if dataset is not None else Dataset.read(cfg.data.dataset)
    state = load_state(folder)
    record = state.get("catalog")
    mapping = match_catalog(record, dataset, str(folder)) if record else None
    features = load_features_for(cfg.model, dataset.items)
    if mapping is None:
        check_features(state, features_fingerprint(features), folder, cfg.model.features)
        trained = np.asarray(record["trained"]) if record else trained_items(dataset)
    else:       # the trained items' vectors must be the ones trained with; new items' are new
        known = None if features is None else features.take(mapping.new_of_old)
        check_features(state, features_fingerprint(known), folder, cfg.model.features)
        trained = mapping.trained
    rows = state["model"].get(ITEM_ROWS)             # absent only in models without an ID table
    n_trained = len(record["item_id"]) if record else (dataset.n_items if rows is None else rows.shape[0])
    if mapping is None and n_trained != dataset.n_items:
        raise ConfigError(f"{folder}: expected a dataset with the {n_trained:,} items this run was trained on, "
                          f"found {dataset.n_items:,} in '{dataset.meta.name}'")
    models = {}
    for d, name in enumerate(dataset.meta.domains):
        model = build_model(cfg.model, dataset.n_x, dataset.n_y, features, trained)
        weights = state["best_states"].get(name, state["model"])
        weights = weights if mapping is None else mapping.remap_state(weights)
        if swapped:     # the run's learned unseen-item vector has no use under the new rule
            weights = {k: v for k, v in weights.items() if not k.endswith(UNSEEN_WEIGHT)}
        _load_weights(model, weights, folder)
        models[d] = model.eval()
    return cfg, dataset, models


def _load_weights(model: torch.nn.Module, weights: dict, folder: Path | str) -> None:
    """Strict, except for the learned unseen-item vector: a model trained with every item seen never had
    one, and on a grown catalog its new items start from zero (no ID part), which is what it knows."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    wrong = [k for k in missing if not k.endswith(UNSEEN_WEIGHT)] + list(unexpected)
    if wrong:
        raise ConfigError(f"{folder}: expected a checkpoint of this model's architecture, found mismatched "
                          f"weights {wrong[:4]}")


def load_scorer(run: str | Path, dataset: Dataset, cfg: Config | None = None):
    """The evaluator's scorer for a trained run (each domain scored by its best-validation model), chunked
    path included (``DomainScorers``)."""
    run_cfg, dataset, models = load_models(run, dataset)
    batch_size = (cfg or run_cfg).train.eval_batch_size
    return DomainScorers({d: make_scorer(m, batch_size) for d, m in models.items()})
