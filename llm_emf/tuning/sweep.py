"""``llm-emf tune``: a Ray Tune sweep over a search-space file, with ASHA, Optuna and MLflow.

Each trial is a function trainable that runs the same ``llm_emf.training.train`` a single run uses:
in-process when ``train.num_workers=0`` (its per-epoch reports go straight to Tune), or a ``TorchTrainer``
built inside the trial with ``TuneReportCallback`` (the Train V2 pattern; ``Tuner(trainer)`` is gone).
ASHA stops weak trials on ``valid_mrr``; Optuna proposes configs, seeded by ``cfg.seed``. A sweep with
the same name resumes with ``Tuner.restore``: finished trials are kept, unfinished ones continue from
their latest checkpoint. MLflow holds a parent run with one child per trial; the best child is tagged.
A resumed sweep reopens the same parent run, and a resumed trial its own child run.

Every trial records the Ray node it ran on (``ray.get_runtime_context().get_node_id()``): in each result it
reports to Tune (``node_id``), as the MLflow tag ``node_id`` of its child run, and in the sweep's
``sweep_summary.json`` (next to ``best_config.yaml``: trial -> node, status, parameters, ``valid_mrr``). A
trial resumed on another node records the node of its last attempt.

Interrupting the driver (Ctrl-C, SIGINT) makes Tune save the experiment state before it stops; the sweep
then raises ``SweepInterrupted`` instead of writing a best config from half the trials. A driver that dies
without that chance (killed, node lost) restores from Tune's last periodic snapshot (every 10 s or more;
``TUNE_GLOBAL_CHECKPOINT_S`` sets it), so a trial that finished in the seconds before it runs again from
its last saved checkpoint (into its own MLflow run, reopened), and a trial started after that snapshot is
unknown to the restored sweep, which runs a new suggestion in its place: that lost trial's MLflow run is
closed, tagged ``lost_trial=true`` and deleted (MLflow keeps deleted runs restorable until ``mlflow gc``),
so that the parent's children stay the sweep's trials and none of them is tagged best by mistake.
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
from llm_emf.storage import Storage, StorageError, alive_nodes, check_for_cluster, is_shared_path
from llm_emf.ray_local import ensure_ray, job_working_dir
from llm_emf.training.session import LocalSession
from llm_emf.tuning.space import apply_params, has_grid, load_space, n_trials, to_param_space

METRIC, MODE = "valid_mrr", "max"


PARENT_RUN_FILE = "mlflow_parent_run.json"   # in the sweep's folder: the run a resumed sweep reopens
SUMMARY_FILE = "sweep_summary.json"          # in the sweep's folder, written after best_config.yaml


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
    # one row per trial: trial_id, trial (its folder name), node_id, status (finished / stopped_early /
    # failed), iterations, valid_mrr, params; what sweep_summary.json holds
    trials: list[dict] = field(default_factory=list)
    summary_path: str = ""


class TuneSession(LocalSession):
    """The in-process training session of one trial: reports go to Tune (and MLflow) as well."""

    def __init__(self, run_dir, tracker=None, use_gpu=False, extra: dict | None = None):
        super().__init__(run_dir, use_gpu=use_gpu)
        self.tracker = tracker
        self.extra = dict(extra or {})   # added to every Tune result (e.g. node_id), not to the history
        self.restored_epoch: int | None = None   # the epoch of the Tune checkpoint this trial resumed from

    def report(self, metrics: dict, folder: str | None) -> None:
        import ray.tune

        super().report(metrics, folder)
        epoch = metrics.get("epoch")
        if self.restored_epoch is not None and isinstance(epoch, int) and epoch <= self.restored_epoch:
            # The loop reports the epoch it resumed at again when the run had already finished training (a
            # trial killed before its final report). Tune and MLflow have that result: to Tune a second one
            # would be one more training iteration, and at max_t ASHA would end the trial before its test
            # metrics.
            return
        if self.tracker is not None:
            self.tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                                     step=int(metrics.get("epoch", len(self.reports))))
        checkpoint = None
        if folder:
            checkpoint = ray.tune.Checkpoint.from_directory(str(self.latest_path()))
            if isinstance(epoch, int):
                checkpoint.set_metadata({"epoch": epoch})   # .metadata.json beside state.pt, read on restore
        ray.tune.report({**metrics, **self.extra}, checkpoint=checkpoint)

    @contextlib.contextmanager
    def latest_checkpoint(self):
        import ray.tune

        checkpoint = ray.tune.get_checkpoint()   # a restored trial, possibly on another node
        if checkpoint is None:
            with super().latest_checkpoint() as path:
                yield path
            return
        epoch = checkpoint.get_metadata().get("epoch")
        self.restored_epoch = epoch if isinstance(epoch, int) else None
        with checkpoint.as_directory() as folder:
            yield Path(folder)


def run_trial(params: dict, base: dict, tracking_uri: str | None, parent_run_id: str | None) -> None:
    """One trial: the base config with the sampled ``params`` applied, trained and tested."""
    import ray
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from llm_emf.tracking import Tracker
    from llm_emf.training.api import train

    cfg = apply_params(from_dict(Config, base, "sweep base config"), params)
    trial = ray.tune.get_context()
    cfg.train.run_name = f"{trial.get_trial_name()}"
    cfg.train.storage = str(Path(trial.get_trial_dir()) / "train")
    name = f"{cfg.tune.name}/{trial.get_trial_name()}"
    where = {"node_id": ray.get_runtime_context().get_node_id()}   # this attempt's node (a resumed one may move)
    tr = Tracker(cfg, name, uri=tracking_uri, parent_run_id=parent_run_id,
                 run_id=_run_to_resume(tracking_uri, parent_run_id, trial.get_trial_id()),
                 tags={"trial_id": trial.get_trial_id(), **{f"param.{k}": v for k, v in params.items()}}).start()
    tr.set_tags(where)   # after start: a reopened run gets no creation tags
    finished = False
    try:
        if cfg.train.num_workers == 0:
            session = TuneSession(Path(cfg.train.storage) / cfg.train.run_name, tracker=tr, use_gpu=cfg.train.use_gpu,
                                  extra=where)
            result = train(cfg, session=session)
        else:
            result = train(cfg, callbacks=[TuneReportCallback()])
            tr.log_history(result.history)
        tr.log_results(result.test)
        tr.log_training_curves(result.history, Path(result.run_dir) / "training_curves.png")
        tr.log_checkpoint(result.checkpoint)
        finished = True
        # The last report carries the test metrics at the best validation epochs (what the sweep prints).
        ray.tune.report({**result.history[-1], **_test_metrics(result.test.to_dict()), **where})
    except SystemExit:
        # Tune ends a trial from inside report(): ASHA stopped it, or it reached max_t after finishing.
        # Both before this thread ends: Tune may tear the trial's process down soon after (the driver closes
        # any child left RUNNING, see run_sweep). Tags first: an ended Tracker sets none (a reopened run would
        # keep the stopped_early of its earlier attempt).
        tr.set_tags({"stopped_early": str(not finished).lower()})
        tr.end("FINISHED" if finished else "KILLED")
        raise
    except BaseException as e:
        tr.set_tags({"failure": f"{type(e).__name__}: {e}"})
        tr.end("FAILED")
        raise
    tr.set_tags({"stopped_early": "false"})
    tr.end("FINISHED")


def _run_to_resume(tracking_uri: str | None, parent_run_id: str | None, trial_id: str) -> str | None:
    """The child run an earlier attempt of this trial left open or KILLED (the driver was interrupted
    while it ran), or FINISHED (it finished after Tune's last snapshot before the driver died, so the
    restored sweep runs it again), so a restored trial keeps one run. A FAILED attempt keeps its own run
    and its error."""
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
    if runs and runs[0].info.status in ("RUNNING", "KILLED", "FINISHED") and "failure" not in runs[0].data.tags:
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


def _trial_rows(grid, space: dict) -> list[dict]:
    """Trial -> node, status, iterations, valid_mrr and parameters, from each trial's last result (a trial
    kept from before a resume brings its own from the saved state)."""
    rows = []
    for r in grid:
        m = dict(r.metrics or {})
        status = "failed" if r.error else ("finished" if any(k.startswith("test/") for k in m) else "stopped_early")
        rows.append({"trial_id": m.get("trial_id"),
                     "trial": files.basename(r.path), "node_id": m.get("node_id"), "status": status,
                     "iterations": m.get("training_iteration"), METRIC: m.get(METRIC),
                     "params": {k: v for k, v in (r.config or {}).items() if k in space}})
    return sorted(rows, key=lambda row: str(row["trial_id"]))


def _saved_trials(path: str) -> list:
    """The trials of the experiment state saved at ``path`` (Tune's ``Trial`` objects)."""
    from ray.tune import ExperimentAnalysis

    return list(ExperimentAnalysis(path).trials)


def _settled_trials(path: str) -> int:
    """Trials the saved experiment state holds as finished or failed: what a restore would not rerun.
    Tune returns normally after SIGINT and stops the running trials after saving, so the returned
    grid shows them TERMINATED; the saved state is what tells an interruption from a finished sweep."""
    return sum(t.status in ("TERMINATED", "ERROR") for t in _saved_trials(path))


def _close_trial_runs(parent, path: str, log) -> list[str]:
    """Settle the children whose process ended before closing its run (``_closing_status``), and retire
    lost trials: a child whose trial the saved experiment state does not hold was started after Tune's last
    snapshot by a driver that then died; the restored sweep never ran it on (it ran a new suggestion
    instead). Its run is closed (KILLED unless it had ended), tagged ``lost_trial=true`` and deleted.
    Returns the lost trials' ids."""
    if not parent.active:
        return []
    try:
        known = {t.trial_id for t in _saved_trials(path)}
    except Exception:   # noqa: BLE001 - no readable state (fit failed early): only settle open runs
        known = None
    lost: dict[str, str] = {}

    def decide(run):
        if run.data.tags.get("lost_trial") == "true":
            return None
        trial_id = run.data.tags.get("trial_id")
        if known is not None and trial_id and trial_id not in known:
            lost[run.info.run_id] = trial_id
            return ("KILLED" if run.info.status == "RUNNING" else run.info.status, {"lost_trial": "true"})
        return _closing_status(run)

    parent.close_children(decide)
    if lost:
        from mlflow import MlflowClient

        try:
            client = MlflowClient(tracking_uri=parent.uri)
            for run_id in lost:
                client.delete_run(run_id)
        except Exception as e:   # noqa: BLE001 - tracking trouble must not fail a finished sweep
            log(f"could not delete the MLflow runs of lost trials {sorted(lost.values())}: {e}")
        log(f"trials started after Tune's last saved state, before the driver died, are not part of the sweep: "
            f"{', '.join(sorted(lost.values()))} (MLflow runs tagged lost_trial=true, deleted)")
    return sorted(lost.values())


def _check_tracking(cfg: Config, n_nodes: int) -> None:
    """Refuse a sqlite MLflow store that trials on other nodes cannot reach, or that Ray deletes with the
    job: the default ``sqlite:///<cwd>/mlflow.db`` of a sweep submitted as a Ray job lies in the job's
    working_dir. (``llm-emf run`` / the pipeline refuses the same, see ``pipeline_tracking_uri``.)"""
    from llm_emf.tracking.uri import resolve_tracking_uri, sqlite_path

    if not cfg.tracking.enabled:
        return
    uri = resolve_tracking_uri(cfg)
    db = sqlite_path(uri)
    if db is None:
        return
    fix = ("set tracking.uri (or MLFLOW_TRACKING_URI) to an MLflow server, e.g. the one cluster.yaml starts on "
           "the head")
    if n_nodes > 1 and not is_shared_path(db.parent):
        raise StorageError(
            f"tracking: the sweep's MLflow store {db} is a node-local sqlite file on a {n_nodes}-node Ray cluster: "
            f"trials on other nodes cannot log to it: {fix}, or tracking.uri to a sqlite file on a shared "
            f"filesystem (LLM_EMF_SHARED_FS=1 if it is shared in a way not detected)")
    job_dir = job_working_dir()
    if job_dir is not None and db.resolve().is_relative_to(job_dir.resolve()):
        raise StorageError(
            f"tracking: the sweep's MLflow store {db} lies inside this Ray job's working_dir {job_dir}, which Ray "
            f"deletes with the job: {fix}, or tracking.uri=sqlite:///<an absolute path outside it>")


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
    if not files.is_file(files.join(cfg.data.dataset, "dataset.json")):
        raise ConfigError(f"data.dataset: expected a prepared dataset folder, found no dataset.json in "
                          f"'{cfg.data.dataset}'")
    cfg = copy.deepcopy(cfg)
    cfg.data.dataset = files.absolute(cfg.data.dataset)       # trials run in their own folders (or nodes)
    if cfg.model.features:
        cfg.model.features = files.absolute(cfg.model.features)
    cfg.tune.name = cfg.tune.name or f"sweep-{Path(cfg.tune.space).stem}"
    storage = Storage(cfg.tune.storage)
    path = storage.path(cfg.tune.name)
    ensure_ray(cfg.pipeline.ray_address, dashboard=cfg.pipeline.ray_dashboard)
    nodes = alive_nodes()   # trials may run on any node: each must see the dataset and the sweep's folder
    check_for_cluster(cfg.data.dataset, nodes)
    check_for_cluster(cfg.tune.storage, nodes)
    job_dir = job_working_dir()
    if job_dir is not None and not storage.remote and \
            Path(path).resolve().is_relative_to(job_dir.resolve()):
        raise StorageError(f"tune.storage '{cfg.tune.storage}': the sweep's state would lie inside this Ray job's "
                           f"working_dir {job_dir}, which Ray deletes with the job (no resume, no best config "
                           f"left): expected an s3:// or gs:// URI or an absolute path outside it")
    _check_tracking(cfg, nodes)

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
        _close_trial_runs(parent, path, log)   # trials whose process ended before closing its run, lost ones
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
    trials = _trial_rows(grid, space)
    summary_path = storage.path(cfg.tune.name, SUMMARY_FILE)
    storage.write_json(summary_path, {
        "name": cfg.tune.name, "path": path, "n_trials": len(grid), "n_stopped_early": stopped,
        "best_trial_id": (best.metrics or {}).get("trial_id"), "best_params": best_params,
        "best_config": best_path, "parent_run_id": parent_run_id, "failed_trials": failed, "trials": trials})
    log(f"trials of sweep {cfg.tune.name} (trial -> node), also in {summary_path}:")
    for row in trials:
        log(f"  {row['trial_id'] or row['trial']}  node {row['node_id']}  {row['status']}  "
            f"{METRIC}={row[METRIC]}  iterations={row['iterations']}")
    if parent.active:
        parent.tag_best_child("best_valid_mrr", "max")
        parent.log_artifact(best_path)
        parent.log_artifact(summary_path)
        parent.end()
    return SweepResult(cfg.tune.name, path, best_params, dict(best.metrics or {}), best_path, len(grid), stopped,
                       parent_run_id, failed, trials, summary_path)
