"""MLflow run tracking that never stops training.

``Tracker`` wraps one MLflow run through its own ``MlflowClient`` (no global ``mlflow.*`` state, so
Ray workers and Tune trials each keep an independent client). If the store cannot be reached or a
call fails, it warns once, naming the URI and the error, and turns into a no-op; callers keep their
own local results files, so nothing is lost.

    with Tracker(cfg, "sasrec-food-kitchen", dataset_fingerprint=meta.fingerprint) as tr:
        tr.log_history(history)          # per-epoch dicts -> metrics with step = epoch
        tr.log_results(results)          # results.json + numeric leaves as metrics
        tr.log_training_curves(history, run_dir / "training_curves.png")

A sweep is a parent run with one child per trial: ``Tracker.start_parent(cfg, name)``, then in each trial
``Tracker(trial_cfg, name, uri=parent.uri, parent_run_id=parent.run_id)``, finally
``parent.tag_best_child("valid/X/mrr")``. Create a Tracker inside the process that uses it (driver, Ray
worker, Tune trial) and pass only strings (``uri``, run ids) between processes.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from llm_emf import files
from llm_emf.config import flatten_config, save_config
from llm_emf.config.redact import redact_uri

from . import plots
from .run_info import (dataset_fingerprint, default_tags, describe_error, flatten_numeric, json_default, metric_key,
                       param_value)
from .sweeps import PARENT_TAG, SweepRuns
from .uri import (artifact_root, client_uri, credentials_problem, is_http, limit_http_retries, probe_server,
                  resolve_tracking_uri, sqlite_path)

BATCH_PARAMS, BATCH_METRICS = 100, 1000          # MLflow's per-request limits
_warned_uris: set[str] = set()                   # "warn once" is per process and URI


class _RedactingStream:
    """A text stream that writes through to ``stream`` with passwords in URIs redacted."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact_uri(text))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def redacting_stdout(needed: bool = True):
    """While the block runs, what is printed to ``sys.stdout`` (MLflow prints "View run <name> at: <uri>" when a
    run ends) has passwords in URIs redacted. Used only for a URI whose credentials could not be moved out of it
    (``uri.client_uri``)."""
    if not needed or isinstance(sys.stdout, _RedactingStream):
        yield
        return
    original = sys.stdout
    sys.stdout = _RedactingStream(original)
    try:
        yield
    finally:
        if isinstance(sys.stdout, _RedactingStream) and sys.stdout._stream is original:
            sys.stdout = original


class TrackingWarning(UserWarning):
    """Experiment tracking failed; training goes on without it."""


class Tracker(SweepRuns):
    """One MLflow run. Use as a context manager, or call ``start()`` and ``end()``; a sweep's parent and
    children come from ``start_parent`` and ``child`` (``sweeps.SweepRuns``)."""

    def __init__(self, cfg, run_name: str = "", *, uri: str | None = None, parent_run_id: str | None = None,
                 run_id: str | None = None, tags: Mapping[str, Any] | None = None,
                 dataset_fingerprint: str | None = None, log_config: bool = True):
        self.cfg = cfg
        self.enabled = bool(cfg.tracking.enabled)
        self.uri = uri or resolve_tracking_uri(cfg)
        self.run_name = run_name
        self.parent_run_id = parent_run_id
        self.run_id = run_id                      # given: resume that run (its params are already logged)
        self._resumed = run_id is not None
        self.experiment_id: str | None = None
        self.error: str | None = None             # why tracking stopped, for the caller's own records
        self._extra_tags = dict(tags or {})
        self._fingerprint = dataset_fingerprint
        self._log_config = log_config
        self._client = None
        self._mlflow_uri = self.uri           # what MLflow's client is given (no credentials in it, if it can)
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def display_uri(self) -> str:
        """``uri`` with any password redacted: what to print or save (``uri`` itself is for connecting)."""
        return redact_uri(self.uri)

    @property
    def active(self) -> bool:
        return self.enabled and self.error is None and self.run_id is not None and self._started

    def start(self) -> "Tracker":
        if not self.enabled or self._started or self.error is not None:
            return self
        problem = credentials_problem(self.uri) or probe_server(self.uri, self.cfg.tracking.timeout_s)
        if problem is not None:
            self._fail(problem)
            return self
        if is_http(self.uri):
            limit_http_retries(self.cfg.tracking.timeout_s)
        try:
            self._retry_locked(self._open_run)
        except Exception as e:  # noqa: BLE001 - any store failure must leave training running
            self._fail(describe_error(e))
            return self
        self._started = True
        if self._log_config and not self._resumed:   # MLflow refuses to change a logged param's value
            self.log_params(flatten_config(self.cfg))
            self.log_config()
        return self

    def end(self, status: str = "FINISHED") -> None:
        self._guard(lambda c: c.set_terminated(self.run_id, status))
        self._started = False

    def __enter__(self) -> "Tracker":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.end("FINISHED")
        else:
            self.set_tags({"failure": f"{exc_type.__name__}: {exc}"})
            self.end("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")
        return False

    def _open_run(self) -> None:
        from mlflow import MlflowClient

        db = sqlite_path(self.uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)   # sqlite creates the file, not its folder
        # Credentials stay out of the URI MLflow sees (uri.client_uri), so its own output ("View run <name> at:
        # <uri>/..." when a run ends, its errors) cannot show them; where they cannot, its printing is redacted.
        self._mlflow_uri = client_uri(self.uri)
        client = MlflowClient(tracking_uri=self._mlflow_uri)
        self.experiment_id = self._experiment_id(client)
        if self.run_id is None:
            tags = {**default_tags(self.cfg, self._fingerprint or dataset_fingerprint(self.cfg)), **self._extra_tags}
            if self.parent_run_id:
                tags[PARENT_TAG] = self.parent_run_id
            tags = {k: param_value(v) for k, v in tags.items()}
            self.run_id = client.create_run(self.experiment_id, tags=tags, run_name=self.run_name or None).info.run_id
        else:
            client.update_run(self.run_id, status="RUNNING")
        self._client = client

    def _experiment_id(self, client) -> str:
        name = self.cfg.tracking.experiment
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        try:
            return client.create_experiment(name, artifact_location=artifact_root(self.cfg, self.uri))
        except Exception:
            exp = client.get_experiment_by_name(name)   # another process created it first
            if exp is None:
                raise
            return exp.experiment_id

    # -- failure handling ------------------------------------------------------------------------
    def _fail(self, problem: str) -> None:
        self.error = redact_uri(problem)     # MLflow's errors quote the URL they called, password included
        if self.uri not in _warned_uris:
            _warned_uris.add(self.uri)
            warnings.warn(f"MLflow tracking at {self.display_uri} failed: {self.error}. Training goes on without "
                          "tracking; metrics stay in the local results files.", TrackingWarning, stacklevel=3)

    def _retry_locked(self, fn):
        """sqlite shared by several trial processes may be briefly locked; retry a few times."""
        for attempt in range(3):
            try:
                return fn()
            except Exception as e:  # noqa: BLE001
                if sqlite_path(self.uri) is None or "locked" not in str(e).lower() or attempt == 2:
                    raise
                time.sleep(0.5 * (attempt + 1))

    def _guard(self, fn) -> Any:
        """Run ``fn(client)`` if tracking is active; the first failure warns and disables tracking."""
        if not self.active:
            return None
        try:
            with redacting_stdout(self._mlflow_uri != redact_uri(self._mlflow_uri)):
                return self._retry_locked(lambda: fn(self._client))
        except Exception as e:  # noqa: BLE001 - tracking must never stop training
            self._fail(describe_error(e))
            return None

    # -- params, tags, metrics -------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k)[:250], param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), BATCH_PARAMS):
            self._guard(lambda c, chunk=items[i:i + BATCH_PARAMS]: c.log_batch(self.run_id, params=chunk))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(str(k)[:250], param_value(v, limit=8000)) for k, v in tags.items()]
        for i in range(0, len(items), BATCH_PARAMS):
            self._guard(lambda c, chunk=items[i:i + BATCH_PARAMS]: c.log_batch(self.run_id, tags=chunk))

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Numeric leaves of a (nested) mapping; nested keys are joined with '/'."""
        self._log_metric_rows([(metrics, step)])

    def log_history(self, history: Iterable[Mapping[str, Any]]) -> None:
        """Per-epoch dicts -> metrics with ``step = row['epoch']`` (the row's position if it has none)."""
        self._log_metric_rows([(row, int(row.get("epoch", i))) for i, row in enumerate(history)])

    def _log_metric_rows(self, rows: list[tuple[Mapping[str, Any], int | None]]) -> None:
        if not self.active:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(metric_key(k), v, now, step or 0)
                 for row, step in rows for k, v in flatten_numeric(row).items() if k != "epoch"]
        for i in range(0, len(items), BATCH_METRICS):
            self._guard(lambda c, chunk=items[i:i + BATCH_METRICS]: c.log_batch(self.run_id, metrics=chunk))

    # -- artifacts -------------------------------------------------------------------------------
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file, or a folder's contents, under ``artifact_path`` in the run; one in an object store
        (``s3://...``, e.g. a run folder there) is logged from a local copy."""
        if files.is_remote(path):
            if self.active:
                with files.local_copy(path) as local:
                    self.log_artifact(local, artifact_path)
            return
        path = Path(path)
        if path.is_dir():
            self._guard(lambda c: c.log_artifacts(self.run_id, str(path), artifact_path))
        else:
            self._guard(lambda c: c.log_artifact(self.run_id, str(path), artifact_path))

    def log_config(self, cfg=None, name: str = "config.yaml") -> None:
        """The resolved config as YAML (the full values of any truncated params are here)."""
        if not self.active:
            return
        with tempfile.TemporaryDirectory() as tmp:
            self.log_artifact(save_config(cfg if cfg is not None else self.cfg, Path(tmp) / name))

    def log_results(self, results: Mapping[str, Any], name: str = "results.json", as_metrics: bool = True,
                    prefix: str = "") -> None:
        """``results`` (a mapping or ``EvalResult``) as a JSON artifact and, with ``as_metrics``, its numeric
        leaves as metrics named by their '/'-joined keys after ``prefix``."""
        if not self.active:
            return
        results = plots.as_mapping(results)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_text(redact_uri(json.dumps(results, indent=2, default=json_default)), encoding="utf-8")
            self.log_artifact(path)
        if as_metrics:
            self.log_metrics({f"{prefix}{k}": v for k, v in flatten_numeric(results).items()})

    def log_training_curves(self, history: list[Mapping[str, Any]], path: str | Path | None = None) -> None:
        """Draw loss and validation MRR/NDCG vs epoch; keep the PNG at ``path`` (if given) and log it."""
        self._log_plot(lambda p: plots.training_curves(history, p), path, "training_curves.png")

    def log_metric_bars(self, results_by_model: Mapping[str, Mapping], metric: str = "MRR",
                        path: str | Path | None = None) -> None:
        """Per-domain grouped bars of ``metric`` across models/trials; kept at ``path`` and logged."""
        name = f"{metric_key(metric).replace('/', '_')}_bars.png"
        self._log_plot(lambda p: plots.metric_bars(results_by_model, p, metric=metric), path, name)

    def _log_plot(self, draw, path: str | Path | None, default_name: str) -> None:
        if path is not None:             # the kept copy (a local path or a URI) is drawn whether or not tracking works
            self.log_artifact(draw(path), "plots")
        elif self.active:
            with tempfile.TemporaryDirectory() as tmp:
                self.log_artifact(draw(Path(tmp) / default_name), "plots")

    def log_checkpoint(self, path_or_uri: str | Path, upload: bool | None = None) -> None:
        """Record where the checkpoint is (tag ``checkpoint``); upload it too if asked or configured."""
        text = str(path_or_uri)
        local = None if "://" in text else Path(text)
        self.set_tags({"checkpoint": str(local.resolve()) if local else text})
        upload = self.cfg.tracking.log_checkpoints if upload is None else upload
        if upload and local is not None and local.exists():
            self.log_artifact(local, "checkpoint")
