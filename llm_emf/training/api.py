"""``train(cfg) -> TrainResult``: run training (Ray Train or in-process), then test at the best epochs.

The driver side: pick the run folder (``train.storage/train.run_name``; the same name resumes), run the
per-worker function through a ``TorchTrainer`` (or in-process when ``train.num_workers=0``), then load
the final checkpoint, score the test split with each domain's best-validation model state, and write
``results.json`` and ``history.json`` into the run folder. Tracking (MLflow) is wired by the caller
from the returned history and results.

``data.dataset``, ``model.features`` and ``train.storage`` may each be a local path or an object-store URI
(``llm_emf.files``): a result names its checkpoint where it is stored, so another node or a later job loads it.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pyarrow as pa

from llm_emf import files
from llm_emf.checkpoints import DIGEST_FILE, STATE_FILE, load_state
from llm_emf.config import Config, ConfigError, flatten_config
from llm_emf.config.loader import to_dict
from llm_emf.data.schema import DataError, Dataset
from llm_emf.evaluation import EvalResult, evaluate, protocols_from_config
from llm_emf.hashing import file_sha256
from llm_emf.ray_local import ensure_ray
from llm_emf.serving.run import load_models
from llm_emf.serving.scoring import DomainScorers, make_scorer
from llm_emf.storage import Storage

from .hooks import TrainHook
from .loop import train_loop_per_worker
from .progress import WorkerReports, worker_record
from .session import KEEP_CHECKPOINTS, LocalSession


@dataclass
class TrainResult:
    run_name: str
    run_dir: str
    checkpoint: str                       # the final checkpoint folder, path or URI (best per-domain states)
    history: list[dict]                   # one flat dict per epoch (train_loss, valid/<protocol>/<domain>/<metric>)
    best: dict[str, dict]                 # domain -> {"epoch", "mrr", "metrics" (validation at that epoch)}
    test: EvalResult                      # test metrics, each domain from its best-validation state
    results_path: str = ""
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"run_name": self.run_name, "run_dir": self.run_dir, "checkpoint": self.checkpoint,
                "epochs_run": len(self.history),
                "best": {d: {"epoch": b["epoch"], "valid_mrr": b["mrr"], "head": b.get("head", ""),
                             "valid": b["metrics"]}
                         for d, b in self.best.items()},
                "test": self.test.to_dict(), **self.extra}


def default_run_name(cfg: Config) -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{cfg.model.name}-{stamp}"


def _run_ray(cfg: Config, run_name: str, storage: str, callbacks: Sequence, loop_config: dict) -> tuple[str, list]:
    """Run the TorchTrainer; returns where the final checkpoint is stored (a local path or a URI) and the
    workers' placements (progress.py)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    # The same way into Ray as every other command (pipeline.ray_address, dashboard on 127.0.0.1, token auth);
    # left to itself the trainer would start a default local Ray and ignore pipeline.ray_address.
    ensure_ray(cfg.pipeline.ray_address, dashboard=cfg.pipeline.ray_dashboard)
    with WorkerReports() as reports:
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={**loop_config, "reports": reports.queue},
            torch_config=TorchConfig(backend="nccl" if cfg.train.use_gpu else "gloo"),
            scaling_config=ray.train.ScalingConfig(num_workers=cfg.train.num_workers, use_gpu=cfg.train.use_gpu,
                                                   resources_per_worker={"CPU": cfg.train.cpus_per_worker}),
            run_config=ray.train.RunConfig(
                name=run_name, storage_path=storage, callbacks=list(callbacks),
                failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
                # two kept: if the newest is found corrupt on resume, the one before it is used (session.py)
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS)),
        )
        result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"run {run_name}: training reported no checkpoint")
    return _checkpoint_location(result.checkpoint.path, storage), reports.workers()


def _checkpoint_location(path: str, storage: str) -> str:
    """Ray hands back a remote checkpoint's path without its scheme (``bucket/run/checkpoint_...``)."""
    if files.is_remote(storage) and not files.is_remote(path):
        return f"{storage.split('://', 1)[0]}://{path.lstrip('/')}"
    return path


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else ""


def _check_trainable(folder: str) -> None:
    """A dataset without a training sequence of two or more items would "train" to loss 0 and report an
    untrained model's metrics (e.g. the public C2DSR files, which ship without their train file)."""
    import pyarrow.compute as pc

    path = files.join(folder, "sequences.parquet")
    try:
        table = files.read_parquet(path, columns=["split", "items"])
    except (pa.ArrowException, OSError) as e:     # e.g. a truncated copy: ArrowInvalid "magic bytes not found"
        raise DataError(path, None, "a readable Parquet file (written by `llm-emf prepare`)",
                        f"{type(e).__name__}: {_first_line(e)}; the file may be truncated or not Parquet: run "
                        f"`llm-emf prepare` again for this data.dataset") from None
    train = table.filter(pc.equal(table.column("split"), "train"))
    usable = pc.sum(pc.greater_equal(pc.list_value_length(train.column("items")), 2)).as_py() or 0
    if usable == 0:
        raise DataError(path, None, "training sequences of at least two items (the train split)",
                        f"none ({train.num_rows} train sequences); prepare a dataset that includes its train file")


def train(cfg: Config, callbacks: Sequence = (), session: LocalSession | None = None,
          hooks: Sequence[TrainHook] = ()) -> TrainResult:
    """Train ``cfg`` (dataset at ``data.dataset``) and test it; see the module docstring.

    ``callbacks`` go to Ray Train's RunConfig (driver side, e.g. Tune's TuneReportCallback); ``session``
    replaces the in-process session in local mode (e.g. one that also reports to Tune); ``hooks`` are
    TrainHook objects run inside every training worker (hooks.py; tests/faults.py injects faults with them).
    """
    cfg = copy.deepcopy(cfg)                       # paths and run name are filled in below
    cfg.validate()
    if not files.is_file(files.join(cfg.data.dataset, "dataset.json")):
        raise ConfigError(f"data.dataset: expected a prepared dataset folder (run `llm-emf prepare`), "
                          f"found no dataset.json in '{cfg.data.dataset}'")
    _check_trainable(cfg.data.dataset)
    cfg.data.dataset = files.absolute(cfg.data.dataset)       # workers may run elsewhere
    if cfg.model.features:
        cfg.model.features = files.absolute(cfg.model.features)
    run_name = cfg.train.run_name or default_run_name(cfg)
    cfg.train.run_name = run_name
    storage = Storage(cfg.train.storage)
    run_dir = storage.path(run_name)
    loop_config = {"cfg": to_dict(cfg), "run_dir": run_dir}   # run_dir: where resume looks for checkpoints
    if hooks:
        loop_config["hooks"] = list(hooks)

    if cfg.train.num_workers == 0:
        session = session or LocalSession(run_dir, cfg.train.use_gpu)
        train_loop_per_worker(loop_config, session=session)
        checkpoint = session.latest_location()
        if checkpoint is None:
            raise RuntimeError(f"run {run_name}: training left no usable checkpoint in {run_dir}")
        workers = [worker_record(0, 1)]
    else:
        if session is not None:
            raise ValueError("train(session=...) is for local mode (train.num_workers=0) only")
        checkpoint, workers = _run_ray(cfg, run_name, storage.path(), callbacks, loop_config)
    return finish(cfg, checkpoint, run_dir, workers=workers)


def finish(cfg: Config, checkpoint: str, run_dir: str, workers: list[dict] | None = None) -> TrainResult:
    """Test each domain with its best state; write results.json and history.json into ``run_dir``.
    ``workers``: where each Train worker ran (progress.py), kept in the results as ``workers``."""
    with files.local_copy(checkpoint) as local:     # a remote checkpoint is downloaded once for both reads
        state = load_state(local)
        _, dataset, models = load_models(local, Dataset.read(cfg.data.dataset))
        digest = Path(local, DIGEST_FILE)
        sha256 = (digest.read_text(encoding="ascii").strip() if digest.is_file()
                  else file_sha256(Path(local, STATE_FILE)))
    scorers = {d: make_scorer(m, cfg.train.eval_batch_size) for d, m in models.items()}
    test = evaluate(DomainScorers(scorers), dataset, "test", cfg,
                    protocols=protocols_from_config(cfg), scorer_name=cfg.model.name)
    selection = state["selection"]
    extra = {"stopped_early": selection["stale_epochs"] >= selection["patience"],
             "select_protocol": selection["protocol"], "config": flatten_config(cfg),
             "checkpoint_sha256": sha256}     # a copied run folder's checkpoint is checked against it (serving/run.py)
    if workers:
        extra["workers"] = workers
    result = TrainResult(cfg.train.run_name, run_dir, str(checkpoint), list(state["history"]), selection["best"],
                         test, extra=extra)
    storage = Storage(run_dir)
    storage.write_json(storage.path("history.json"), {"history": result.history})
    result.results_path = storage.path("results.json")
    storage.write_json(result.results_path, json.loads(json.dumps(result.summary(), default=str)))
    return result
