"""Sweeps as MLflow runs: a parent run with one child run per trial, and the best child tagged.

``SweepRuns`` is the sweep half of :class:`~llm_emf.tracking.tracker.Tracker` (its base class): the methods
use the tracker's ``run_id``, ``experiment_id``, ``uri``, ``cfg``, ``_fingerprint`` and ``_guard`` (which
runs a client call only while tracking works, and turns a failure into a warning).
"""

from __future__ import annotations

import math
from typing import Self

from .run_info import metric_key

PARENT_TAG = "mlflow.parentRunId"


class SweepRuns:
    run_id: str | None
    experiment_id: str | None

    @classmethod
    def start_parent(cls, cfg, sweep_name: str, **kwargs) -> Self:
        """A started parent run for a sweep; its children are the trials."""
        tags = {"llm_emf.role": "sweep", **kwargs.pop("tags", {})}
        return cls(cfg, sweep_name, tags=tags, **kwargs).start()

    def child(self, run_name: str, cfg=None, **kwargs) -> Self:
        """An unstarted child run of this one (same store), e.g. one Tune trial with its own config."""
        tags = {"llm_emf.role": "trial", **kwargs.pop("tags", {})}
        kwargs.setdefault("dataset_fingerprint", self._fingerprint)
        return type(self)(cfg if cfg is not None else self.cfg, run_name, uri=self.uri, parent_run_id=self.run_id,
                          tags=tags, **kwargs)

    def child_runs(self) -> list:
        """This run's children (MLflow ``Run`` objects); empty when tracking is inactive."""
        def search(c):
            runs, token = [], None
            while True:
                page = c.search_runs([self.experiment_id], f"tags.`{PARENT_TAG}` = '{self.run_id}'",
                                     max_results=1000, page_token=token)
                runs.extend(page)
                token = page.token
                if not token:
                    return runs
        return self._guard(search) or []

    def close_children(self, decide) -> int:
        """Settle children whose process ended before it could close them (e.g. a trial Tune stopped):
        ``decide(run) -> (status, tags) | None`` for each child; None leaves it alone. Returns how many."""
        def close(c):
            n = 0
            for run in self.child_runs():
                verdict = decide(run)
                if verdict is None:
                    continue
                status, tags = verdict
                for key, value in tags.items():
                    c.set_tag(run.info.run_id, key, value)
                if run.info.status != status:
                    c.set_terminated(run.info.run_id, status)
                n += 1
            return n
        return self._guard(close) or 0

    def mark_best(self, child_run_id: str) -> None:
        """Tag ``best_trial=true`` on the child (false on any previous best) and ``best_run_id`` on this run."""
        def tag(c):
            previous = c.get_run(self.run_id).data.tags.get("best_run_id")
            if previous and previous != child_run_id:
                c.set_tag(previous, "best_trial", "false")
            c.set_tag(child_run_id, "best_trial", "true")
            c.set_tag(self.run_id, "best_run_id", child_run_id)
        self._guard(tag)

    def tag_best_child(self, metric: str, mode: str = "max") -> str | None:
        """Find the child with the best latest value of ``metric``, tag it with ``mark_best``, return its id."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode: expected 'max' or 'min', found {mode!r}")
        key = metric_key(metric)
        scored = [(r.data.metrics[key], r.info.run_id) for r in self.child_runs()
                  if key in r.data.metrics and not math.isnan(r.data.metrics[key])]
        if not scored:
            return None
        best = (max if mode == "max" else min)(scored)[1]
        self.mark_best(best)
        self.set_tags({"best_metric": key, "best_value": dict((i, v) for v, i in scored)[best]})
        return best
