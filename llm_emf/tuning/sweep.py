"""``llm-emf tune``: a Ray Tune sweep over a search-space file, with ASHA, Optuna and MLflow.

Each trial is a function trainable that runs the same ``llm_emf.training.train`` a single run uses:
in-process when ``train.num_workers=0`` (its per-epoch reports go straight to Tune), or a ``TorchTrainer``
built inside the trial with ``TuneReportCallback`` (the Train V2 pattern; ``Tuner(trainer)`` is gone).
ASHA stops weak trials on ``valid_mrr``; Optuna proposes configs, seeded by ``cfg.seed``. A sweep with
the same name resumes with ``Tuner.restore``: finished trials are kept, unfinished ones continue from
their latest checkpoint. MLflow holds a parent run with one child per trial; the best child is tagged.
A resumed sweep reopens the same parent run, and a resumed trial its own child run.

Interrupting the driver (Ctrl-C, SIGINT) makes Tune save the experiment state before it stops; the sweep
then raises ``SweepInterrupted`` instead of writing a best config from half the trials. A driver that dies
without that chance (killed, node lost) restores from Tune's last periodic snapshot, so trials that
finished in the few seconds before it may run again.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from llm_emf.config import Config, ConfigError, save_config
from llm_emf.config.loader import from_dict, to_dict
from llm_emf import files
from llm_emf.storage import Storage
from llm_emf.ray_local import ensure_ray
from llm_emf.training.session import LocalSession
from llm_emf.tuning.space import apply_params, has_grid, load_space, n_trials, to_param_space

METRIC, MODE = "valid_mrr", "max"


PARENT_RUN_FILE = "mlflow_parent_run.json"   # in the sweep's folder: the run a resumed sweep reopens


class SweepInterrupted(KeyboardInterrupt):
    """The driver was interrupted; Tune saved the sweep's state and the same command resumes it."""


@dataclass
class SweepResult:
    name: str
    path: str
    best_params: dict
    best_metrics: dict
    best_config_path: str
    n_trials: int
    n_stopped_early: int
    parent_run_id: str | None
    failed_trials: list[str] = field(default_factory=list)   # "params: error" of trials that failed every retry


class TuneSession(LocalSession):
    """The in-process training session of one trial: reports go to Tune (and MLflow) as well."""

    def __init__(self, run_dir, tracker=None, use_gpu=False):
        super().__init__(run_dir, use_gpu=use_gpu)
        self.tracker = tracker

    def report(self, metrics: dict, folder: str | None) -> None:
        import ray.tune

        super().report(metrics, folder)
        if self.tracker is not None:
            self.tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                                     step=int(metrics.get("epoch", len(self.reports))))
        checkpoint = ray.tune.Checkpoint.from_directory(str(self.latest_path())) if folder else None
        ray.tune.report(metrics, checkpoint=checkpoint)

    @contextlib.contextmanager
    def latest_checkpoint(self):
        import ray.tune

        checkpoint = ray.tune.get_checkpoint()   # a restored trial, possibly on another node
        if checkpoint is None:
            with super().latest_checkpoint() as path:
                yield path
            return
        with checkpoint.as_directory() as folder:
            yield Path(folder)


def run_trial(params: dict, base: dict, tracking_uri: str | None, parent_run_id: str | None) -> None:
    """One trial: the base config with the sampled ``params`` applied, trained and tested."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from llm_emf.tracking import Tracker
    from llm_emf.training.api import train

    cfg = apply_params(from_dict(Config, base, "sweep base config"), params)
    trial = ray.tune.get_context()
    cfg.train.run_name = f"{trial.get_trial_name()}"
    cfg.train.storage = str(Path(trial.get_trial_dir()) / "train")
    name = f"{cfg.tune.name}/{trial.get_trial_name()}"
    tr = Tracker(cfg, name, uri=tracking_uri, parent_run_id=parent_run_id,
                 run_id=_run_to_resume(tracking_uri, parent_run_id, trial.get_trial_id()),
                 tags={"trial_id": trial.get_trial_id(), **{f"param.{k}": v for k, v in params.items()}}).start()
    finished = False
    try:
        if cfg.train.num_workers == 0:
            session = TuneSession(Path(cfg.train.storage) / cfg.train.run_name, tracker=tr, use_gpu=cfg.train.use_gpu)
            result = train(cfg, session=session)
        else:
            result = train(cfg, callbacks=[TuneReportCallback()])
            tr.log_history(result.history)
        tr.log_results(result.test)
        tr.log_training_curves(result.history, Path(result.run_dir) / "training_curves.png")
        tr.log_checkpoint(result.checkpoint)
        finished = True
        # The last report carries the test metrics at the best validation epochs (what the sweep prints).
        ray.tune.report({**result.history[-1], **_test_metrics(result.test.to_dict())})
    except SystemExit:
        # Tune ends a trial from inside report(): ASHA stopped it, or it reached max_t after finishing.
        # Status first: Tune may tear the trial's process down soon after this thread ends (the driver
        # closes any child left RUNNING, see run_sweep).
        tr.end("FINISHED" if finished else "KILLED")
        tr.set_tags({"stopped_early": str(not finished).lower()})
        raise
    except BaseException as e:
        tr.set_tags({"failure": f"{type(e).__name__}: {e}"})
        tr.end("FAILED")
        raise
    tr.set_tags({"stopped_early": "false"})
    tr.end("FINISHED")


def _run_to_resume(tracking_uri: str | None, parent_run_id: str | None, trial_id: str) -> str | None:
    """The child run an earlier attempt of this trial left open or KILLED (the driver was interrupted
    while it ran), so a restored trial keeps one run. A FAILED attempt keeps its own run and its error."""
    if not tracking_uri or not parent_run_id:
        return None
    from mlflow import MlflowClient

    from llm_emf.tracking.sweeps import PARENT_TAG

    try:
        client = MlflowClient(tracking_uri=tracking_uri)
        parent = client.get_run(parent_run_id)
        runs = client.search_runs([parent.info.experiment_id],
                                  f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.trial_id = '{trial_id}'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
    except Exception:   # noqa: BLE001 - tracking trouble must not stop a trial; it opens a new run
        return None
    if runs and runs[0].info.status in ("RUNNING", "KILLED") and "failure" not in runs[0].data.tags:
        return runs[0].info.run_id
    return None


def _closing_status(run) -> tuple[str, dict] | None:
    """A trial's run that was not fully closed: finished if it logged test results, else stopped early.
    A trial that raised (``failure`` tag, set by run_trial) stays FAILED: it was not stopped by ASHA."""
    if "failure" in run.data.tags:
        return None if run.info.status == "FAILED" else ("FAILED", {})
    if run.info.status != "RUNNING" and "stopped_early" in run.data.tags:
        return None
    tested = any(k.startswith("metrics/") for k in run.data.metrics)
    return ("FINISHED", {"stopped_early": "false"}) if tested else ("KILLED", {"stopped_early": "true"})


def _test_metrics(result: dict) -> dict:
    out = {}
    for protocol, domains in result["metrics"].items():
        for domain, metrics in domains.items():
            for name, value in metrics.items():
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    out[f"test/{protocol}/{domain}/{name}"] = value
    return out


def max_concurrent(cfg: Config) -> int:
    """Trials that fit at once: the cluster's CPUs (or GPUs) over what one trial asks for."""
    import ray

    if cfg.tune.max_concurrent_trials:
        return cfg.tune.max_concurrent_trials
    res = ray.cluster_resources()
    if cfg.train.use_gpu:
        per_trial = max(cfg.train.num_workers, 1)
        return max(1, int(res.get("GPU", 0) // per_trial))
    per_trial = cfg.tune.cpus_per_trial + cfg.train.num_workers * cfg.train.cpus_per_worker
    return max(1, int(res.get("CPU", 1) // per_trial)) if per_trial > 0 else 1


def _searcher(cfg: Config, space: dict):
    """Optuna (seeded) by default; Tune's seeded variant generator for grids or when asked."""
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    if cfg.tune.search == "random" or has_grid(space):
        return BasicVariantGenerator(random_state=cfg.seed, max_concurrent=max_concurrent(cfg))
    return OptunaSearch(seed=cfg.seed)


def _settled_trials(path: str) -> int:
    """Trials the saved experiment state holds as finished or failed: what a restore would not rerun.
    Tune returns normally after SIGINT and stops the running trials after saving, so the returned
    grid shows them TERMINATED; the saved state is what tells an interruption from a finished sweep."""
    from ray.tune import ExperimentAnalysis

    return sum(t.status in ("TERMINATED", "ERROR") for t in ExperimentAnalysis(path).trials)


def _start_parent(cfg: Config, storage: Storage, restoring: bool):
    """The sweep's parent run: the one recorded in the sweep's folder when resuming, else a new one."""
    from llm_emf.tracking import Tracker

    record = storage.path(cfg.tune.name, PARENT_RUN_FILE)
    saved = storage.read_json(record) if restoring else None
    parent = Tracker.start_parent(cfg, cfg.tune.name, run_id=(saved or {}).get("run_id"))
    if saved and not parent.active:   # the recorded run is gone (another store, deleted): start afresh
        parent = Tracker.start_parent(cfg, cfg.tune.name)
    if parent.active and (saved or {}).get("run_id") != parent.run_id:
        storage.write_json(record, {"run_id": parent.run_id, "tracking_uri": parent.display_uri})
    return parent


def run_sweep(cfg: Config, log=print, callbacks: list | None = None) -> SweepResult:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    space = load_space(cfg.tune.space)
    if not files.is_file(files.join(cfg.data.output, "dataset.json")):
        raise ConfigError(f"data.output: expected a prepared dataset folder, found no dataset.json in "
                          f"'{cfg.data.output}'")
    cfg = copy.deepcopy(cfg)
    cfg.data.output = files.absolute(cfg.data.output)       # trials run in their own folders (or nodes)
    if cfg.model.features:
        cfg.model.features = files.absolute(cfg.model.features)
    cfg.tune.name = cfg.tune.name or f"sweep-{Path(cfg.tune.space).stem}"
    storage = Storage(cfg.tune.storage)
    path = storage.path(cfg.tune.name)
    ensure_ray(cfg.pipeline.ray_address, dashboard=cfg.pipeline.ray_dashboard)

    restoring = tune.Tuner.can_restore(path)
    parent = _start_parent(cfg, storage, restoring)
    trainable = tune.with_parameters(run_trial, base=to_dict(cfg), tracking_uri=parent.uri if parent.active else None,
                                     parent_run_id=parent.run_id if parent.active else None)
    trainable = tune.with_resources(trainable, {"CPU": cfg.tune.cpus_per_trial,
                                                "GPU": 1 if cfg.train.use_gpu and cfg.train.num_workers == 0 else 0})
    if restoring:
        log(f"resuming sweep {cfg.tune.name} from {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=to_param_space(space),
            tune_config=tune.TuneConfig(
                metric=METRIC, mode=MODE, num_samples=cfg.tune.num_samples,
                max_concurrent_trials=max_concurrent(cfg),
                search_alg=_searcher(cfg, space),
                scheduler=ASHAScheduler(time_attr="training_iteration", max_t=cfg.train.epochs + 1,
                                        grace_period=cfg.tune.grace_period,
                                        reduction_factor=cfg.tune.reduction_factor)),
            run_config=tune.RunConfig(name=cfg.tune.name, storage_path=storage.path(), callbacks=callbacks,
                                      failure_config=tune.FailureConfig(max_failures=cfg.tune.max_retries),
                                      verbose=1 if os.environ.get("LLM_EMF_QUIET") is None else 0))
    try:
        grid = tuner.fit()
    finally:
        parent.close_children(_closing_status)   # trials whose process ended before closing its run
    settled, expected = _settled_trials(path), n_trials(space, cfg.tune.num_samples)
    if settled < expected:
        if parent.active:
            parent.end("KILLED")
        raise SweepInterrupted(f"sweep {cfg.tune.name} interrupted with {settled} of {expected} trials "
                               f"finished; its state is in {path}. Run the same command again to resume it.")
    failed = [f"{ {k: v for k, v in r.config.items() if k in space} }: {type(r.error).__name__}: "
              f"{str(r.error).strip().splitlines()[-1] if str(r.error).strip() else ''}" for r in grid if r.error]
    for line in failed:   # Tune retried each of these tune.max_retries times; the sweep went on without them
        log(f"trial failed after {cfg.tune.max_retries} retries: {line}")
    if failed and len(failed) == len(grid):
        raise RuntimeError(f"sweep {cfg.tune.name}: all {len(grid)} trials failed; first: {failed[0]}")
    best = grid.get_best_result(metric=METRIC, mode=MODE, scope="all")
    best_params = {k: v for k, v in best.config.items() if k in space}
    best_cfg = apply_params(copy.deepcopy(cfg), best_params)
    best_cfg.train.run_name = ""
    best_path = storage.path(cfg.tune.name, "best_config.yaml")
    save_config(best_cfg, best_path)
    # A trial that ran to the end reports its test metrics last; one without them was stopped by ASHA.
    stopped = sum(1 for r in grid if not r.error and r.metrics and not any(k.startswith("test/") for k in r.metrics))
    parent_run_id = parent.run_id if parent.active else None
    if parent.active:
        parent.tag_best_child("best_valid_mrr", "max")
        parent.log_artifact(best_path)
        parent.end()
    return SweepResult(cfg.tune.name, path, best_params, dict(best.metrics or {}), best_path, len(grid), stopped,
                       parent_run_id, failed)
