"""docs/cluster.md's job command on a head and two worker nodes (separate `ray start`s on this machine), with a
worker node lost during ``embed`` and again during ``train`` (issue 23, points 4 and 5).

One submitted job of ``configs/smoke.yaml`` with CPU settings (the docs' vllm and GPU overrides replaced by
the smoke config's transformers backend, ``features.embed.concurrency=2``, ``train.num_workers=2``). While it
runs, a worker node's raylet is SIGKILLed during ``embed`` (an encoder actor on it mid-batch, part files already
in the bucket) and the other's during ``train`` (epoch 1's checkpoint in the bucket, epoch 2 started), and each
node is brought back as an autoscaler would (a new node id). To land there every time on a machine where an
epoch takes under a second, the job's own processes stall at those points until the kill (the hooks below,
named in the job's runtime env). Checked afterwards: the job SUCCEEDED; the enrich and embed actors and the
two Train workers ran on worker nodes, the embed actors and the Train workers each on two different nodes (the
stage summaries in the bucket, the MLflow tag ``train_worker_nodes``); the log has one line per epoch, epoch 1's
once (restored, not retrained); the feature table has every catalog item exactly once and history.json each
epoch once; and the metrics equal those of a reference run of the same train config with two Ray Train workers
on a single-node local Ray, which reads the prepared dataset and the feature table this job wrote.

Why the metrics must match (see :func:`compare_metrics`): each rank's shard and dropout stream are seeded per
epoch, each Train worker computes with one torch thread on one node or two, and with two ranks gloo's all-reduce
adds each gradient element once (a + b, the same wherever the ranks run), so a distributed run is
deterministic; a run that lost a node during epoch 2 restarts from the epoch-1 checkpoint, which holds the
model, optimizer, scheduler and RNG states, and computes epoch 2 again from the same state. Seen: every value
equal (difference 0). METRIC_RTOL (relative 1e-6, a few float32 ulps) allows for float noise only: a candidate
that moved by one rank changes an MRR by far more, and so does an epoch trained from another state.

What this test found, fixed in the library: the feature actors' task retries were bounded (3), and Ray counts
each failed attempt to reach an actor on a lost node as one, so the embed job failed within a second of the
kill, before the GCS had declared the node dead (``llm_emf/features/actors.py`` now bounds the actor restarts
instead); the queue that brings the Train workers' epoch lines to the driver could be placed on a worker node,
so losing that node lost the rest of the run's lines (now pinned to the driver's node, ``progress.py``).

The cluster differs from the package's ``ray_cluster`` fixture in one way (each node already has its own
``--temp-dir``, as separate machines have their own disks: :meth:`RayCluster.node_temp_dir`):
- the worker nodes have 2 logical CPUs each: the embed job asks 1 CPU per encoder actor and 0.5 per image
  loading task, so two actors on two 1-CPU nodes leave the loading tasks no CPU and the job waits forever (seen:
  "0/? rows; 2.5/2 CPU" for 12 minutes). The Train workers ask ``train.cpus_per_worker=1.5``, so no node holds
  two of them and DDP really crosses nodes (Ray Train packs workers onto one node when they fit), and each has
  one torch thread (Ray sets OMP_NUM_THREADS to the whole CPUs requested).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from helpers.docs_commands import ROOT, cluster_job_command, entrypoint, substitute
from helpers.ray_cluster import RAY, RayCluster
from llm_emf.training import TrainHook

CONFIG = "configs/smoke.yaml"
# The docs' command asks for vllm and GPUs; on this CPU-only machine: the smoke config's transformers backend
# (the tinycoder GGUF), one enrich actor, two encoder actors, two Train workers. Enrich is limited to one
# generate() batch (the rest of the items keep their titles). Embed batches of 8: the embed job hands its actors
# blocks of 8 batches (64 items; ``table_blocks(todo, batch_size * 8)``), so the sample's 500 items are 8 blocks
# and each actor gets several: a lost actor leaves blocks to retry.
ENRICH_LIMIT = 64
CPU_OVERRIDES = ["features.enrich.backend=transformers", "features.enrich.concurrency=1",
                 f"features.enrich.limit={ENRICH_LIMIT}",
                 "features.embed.concurrency=2", "features.embed.batch_size=8",
                 "train.num_workers=2", "train.use_gpu=false", "train.cpus_per_worker=1.5",
                 "tracking.experiment=cluster-pipeline-job"]
WORKER_CPUS = 2
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
EPOCHS = 2
JOB_TIMEOUT_S = 600
# history and test metrics of the cluster job against the single-node reference (compare_metrics): ~8 float32 ulps
METRIC_RTOL = 1e-6


def start_cluster(log_root: Path, node_env: dict) -> RayCluster:
    return RayCluster(log_root, num_workers=2, head_cpus=0, worker_cpus=WORKER_CPUS,
                              node_env=node_env).start()


# -- the job --------------------------------------------------------------------------------------------
def job_argv(cluster: RayCluster, storage: str, env_vars: dict | None = None) -> list[str]:
    """docs/cluster.md's command pointed at ``cluster`` and ``storage``: the project's interpreter in the
    entrypoint and as ``py_executable`` (what the page says to do for another interpreter; the docs' bare
    ``python`` is not this venv's here), ``configs/smoke.yaml``, the CPU overrides appended; ``env_vars`` (the
    fault hooks) added to the runtime env."""
    update = {"py_executable": sys.executable, **({"env_vars": env_vars} if env_vars else {})}
    argv = substitute(cluster_job_command(), address=cluster.address, storage=storage, python=sys.executable,
                      config=CONFIG, runtime_env_update=update, extra=CPU_OVERRIDES)
    assert argv[0] == "ray"
    return [RAY, *argv[1:]]                   # the venv's `ray` (not on PATH here)


def job_overrides(argv: list[str]) -> list[str]:
    """The dotted overrides the job's entrypoint passes after ``--config <file>``."""
    job = entrypoint(argv)
    return job[job.index("--config") + 2:]


# -- fault hooks: the job's own processes wait at a known point, so that a node is lost there --------------------
# The job's runtime env names them ($LLM_EMF_ACTOR_HOOK, called before each batch of a feature actor;
# $LLM_EMF_TRAIN_HOOK, a TrainHook in every Train worker) and puts this folder on PYTHONPATH: every node runs
# on this machine, so they import this module from the checkout. They coordinate with the test through files in
# $LLM_EMF_TEST_STALL_DIR: a process that stalls creates ``<stage>.stalled.<node id>.<pid or rank>`` and waits
# until the test creates ``<stage>.release`` (at most STALL_MAX_S); after the release nothing waits again, so
# the restarted actors and the restored Train workers run through at full speed.
STALL_DIR_ENV = "LLM_EMF_TEST_STALL_DIR"
STALL_MAX_S = 300
BATCHES_PER_BLOCK = 8           # llm_emf/features/embed.py: table_blocks(todo, ec.batch_size * 8)
EMBED_LOST, TRAIN_LOST = 1, 2   # the worker node lost in each stage
EMBED_SLOW_S = 0.25             # per batch of the other encoder actor until the release
_actor = {"calls": 0, "lost_node": None, "waited": False}


def fault_env(stall_dir: Path) -> dict[str, str]:
    from llm_emf.features.actors import ACTOR_HOOK
    from llm_emf.training.hooks import HOOK_ENV

    return {ACTOR_HOOK: f"{__name__}:embed_hook", HOOK_ENV: f"{__name__}:StallTrainOnce",
            STALL_DIR_ENV: str(stall_dir), "PYTHONPATH": str(ROOT / "tests")}


def _wait_until(done, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)


def _stall(stage: str, who: str) -> None:
    folder = Path(os.environ[STALL_DIR_ENV])
    release = folder / f"{stage}.release"
    if not release.exists():
        (folder / f"{stage}.stalled.{who}").touch()
        _wait_until(release.exists, STALL_MAX_S)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _on_worker_node(i: int) -> bool:
    import ray

    node = next((n for n in ray.nodes() if n.get("NodeID") == _node_id()), {})
    return f"worker_node_{i}" in node.get("Resources", {})


def embed_hook() -> None:
    """The actor hook, before each batch of an encoder actor (and, after the release, of the recommend job's,
    where it does nothing). Each actor's first block (at most BATCHES_PER_BLOCK batches) runs freely. Then
    the actor on worker EMBED_LOST stalls mid-block until the release (the kill lands while it holds a batch);
    any other actor waits until that one has stalled (at most STALL_MAX_S, once), then goes on slowly until the
    release, so part files reach the bucket while the job still has blocks to encode."""
    _actor["calls"] += 1
    folder = Path(os.environ[STALL_DIR_ENV])
    if _actor["calls"] <= BATCHES_PER_BLOCK or (folder / "embed.release").exists():
        return
    if _actor["lost_node"] is None:
        _actor["lost_node"] = _on_worker_node(EMBED_LOST)
    if _actor["lost_node"]:
        if _actor["calls"] == BATCHES_PER_BLOCK + 1:
            _stall("embed", f"{_node_id()}.{os.getpid()}")
        return
    if not _actor["waited"]:
        _actor["waited"] = True
        (folder / f"embed.waiting.{_node_id()}.{os.getpid()}").touch()        # when the hooks began to hold it
        _wait_until(lambda: any(folder.glob("embed.stalled.*")) or (folder / "embed.release").exists(),
                    STALL_MAX_S)
    if not (folder / "embed.release").exists():
        time.sleep(EMBED_SLOW_S)


class StallTrainOnce(TrainHook):
    """The train hook: each worker stalls before the 1st batch of epoch 2, after epoch 1's checkpoint was
    reported (uploaded to the bucket); after the release (the restored workers) it does nothing."""

    def on_batch_start(self, ctx, epoch: int, step: int) -> None:
        if (epoch, step) == (2, 1):
            _stall("train", f"{_node_id()}.{ctx.rank}")


def stalled_processes(stall_dir: Path, stage: str) -> list[str]:
    """``<node id>.<pid or rank>`` of each process stalled at ``stage``'s point."""
    return [p.name.split(".stalled.", 1)[1] for p in stall_dir.glob(f"{stage}.stalled.*")]


def submit(cluster: RayCluster, argv: list[str], job_id: str) -> None:
    cut = argv.index("--")
    res = cluster.run_client([*argv[:cut], "--no-wait", "--submission-id", job_id, *argv[cut:]], cwd=ROOT,
                             timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


class JobWatch:
    """Polls a job's status, its log (each driver line timed when first seen) and the bucket's keys."""

    def __init__(self, cluster: RayCluster, s3_server, bucket: str, prefix: str, job_id: str, t0: float):
        self.cluster, self.s3, self.bucket, self.prefix, self.job_id, self.t0 = \
            cluster, s3_server, bucket, prefix, job_id, t0
        self.lines: list[tuple[float, str]] = []        # (seconds since submission, driver line)
        self.status = "PENDING"
        self.keys: list[str] = []

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def poll(self, keys: bool = True) -> None:
        try:
            self.status = self.cluster.job_status(self.job_id)
            text = self.cluster.job_logs(self.job_id)
        except OSError:                               # the job API busy for a moment: next poll
            return
        log = text.splitlines()
        if not text.endswith("\n") and not self.done:
            log = log[:-1]                            # a line still being written: taken when complete
        t = self.now()
        self.lines += [(t, line) for line in log[len(self.lines):]]
        if keys:
            self.keys = self.s3.keys(self.bucket, self.prefix)

    @property
    def done(self) -> bool:
        return self.status in ("SUCCEEDED", "FAILED", "STOPPED")

    def first(self, pattern: str, after: float = -1.0) -> float | None:
        """When a log line matching ``pattern`` (a regex) was first seen after ``after`` seconds."""
        return next((t for t, line in self.lines if t > after and re.search(pattern, line)), None)

    def wait_for(self, what: str, found, timeout_s: float = JOB_TIMEOUT_S, every_s: float = 0.25) -> float:
        """Poll until ``found(self)``; the time it was seen. Fails if the job ends first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            if found(self):
                return self.now()
            if self.done:
                raise AssertionError(f"job {self.job_id} ended ({self.status}) before {what}:\n{self.log()[-6000:]}")
            time.sleep(every_s)
        raise AssertionError(f"not seen within {timeout_s} s: {what}:\n{self.log()[-6000:]}")

    def wait_done(self, timeout_s: float = JOB_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout_s
        while not self.done and time.monotonic() < deadline:
            time.sleep(1)
            self.poll(keys=False)
        return self.status

    def log(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def stage_keys(self, stage: str) -> list[str]:
        return [k for k in self.keys if k.startswith(f"{self.prefix}/{stage}/")]


def _embed_parts(watch: JobWatch) -> list[str]:
    return [k for k in watch.stage_keys("embed") if "/features.parquet.parts/part-" in k]


def _train_checkpoints(watch: JobWatch) -> list[str]:
    """Checkpoint folders of the run whose state file and digest are both in the bucket (complete)."""
    keys = set(watch.stage_keys("train"))
    return sorted({k.rsplit("/", 1)[0] for k in keys if re.search(r"/checkpoint_[^/]+/state\.pt\.sha256$", k)
                   and k[:-len(".sha256")] in keys})


def _stage_done(watch: JobWatch, stage: str) -> bool:
    return any(k.endswith("/_SUCCESS.json") for k in watch.stage_keys(stage))


def _in_background(fn, *args) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - re-raised by the caller
            out["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _join(thread: threading.Thread, out: dict, timeout_s: float = 300):
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError("restarting a worker node took too long")
    if "error" in out:
        raise out["error"]
    return out["value"]


def run_job(cluster: RayCluster, s3_server, storage: str, job_id: str, stall_dir: Path | None = None,
            log=print) -> dict:
    """Submit the docs' job and watch it. With ``stall_dir`` (faults, through the hooks above): worker
    EMBED_LOST is lost while its encoder actor is stalled mid-block and part files are in the bucket, then
    worker TRAIN_LOST while the Train workers are stalled before epoch 2 and epoch 1's checkpoint is in the
    bucket; each stall is released at the kill and each node brought back (a new node id) while the job goes
    on. Returns the job's status, its driver log, and a timeline in seconds since submission."""
    bucket, prefix = storage[len("s3://"):].split("/", 1)
    argv = job_argv(cluster, storage, fault_env(stall_dir) if stall_dir else None)
    t0 = time.monotonic()
    submit(cluster, argv, job_id)
    watch = JobWatch(cluster, s3_server, bucket, prefix, job_id, t0)
    events: dict[str, float] = {}
    faults: list[dict] = []

    def lose(stage: str, worker: int, evidence: str) -> None:
        """SIGKILL worker ``worker``'s raylet (a process of the job stalled there), release the stall, bring
        the node back."""
        old = cluster.node_id(worker)
        stalled = stalled_processes(stall_dir, stage)
        assert any(who.startswith(old) for who in stalled), f"no {stage} process stalled on worker {worker}: {stalled}"
        held = [*stall_dir.glob(f"{stage}.stalled.*"), *stall_dir.glob(f"{stage}.waiting.*")]
        t_stall = min(p.stat().st_mtime for p in held) - time.time() + watch.now()      # the hooks' hold began
        t_kill = watch.now()
        cluster.kill_worker_raylet(worker)
        (stall_dir / f"{stage}.release").touch()           # the rest of the job goes on
        log(f"[{t_kill:6.1f} s] {stage}: SIGKILL of worker {worker}'s raylet ({evidence}), stall released")
        thread, out = _in_background(cluster.restart_worker, worker)
        while thread.is_alive():                        # the job goes on meanwhile: keep timing its lines
            watch.poll(keys=False)
            time.sleep(0.5)
        new = _join(thread, out)
        t_back = watch.now()
        log(f"[{t_back:6.1f} s] worker {worker} back as node {new[:12]} (was {old[:12]})")
        faults.append({"stage": stage, "worker": worker, "old_node": old, "new_node": new,
                       "stalled_at_s": round(t_stall, 2), "killed_at_s": t_kill, "node_back_at_s": t_back,
                       "evidence": evidence})

    if stall_dir:
        events["embed_stalled_s"] = watch.wait_for(
            f"an encoder actor stalled on worker {EMBED_LOST} and two part files in the bucket",
            lambda w: stalled_processes(stall_dir, "embed") and len(_embed_parts(w)) >= 2)
        lose("embed", EMBED_LOST, f"{len(_embed_parts(watch))} part files in the bucket")
        events["train_stalled_s"] = watch.wait_for(
            "both Train workers stalled in epoch 2 and epoch 1's checkpoint in the bucket",
            lambda w: len(stalled_processes(stall_dir, "train")) == 2 and _train_checkpoints(w))
        lose("train", TRAIN_LOST, f"{_train_checkpoints(watch)[0].rsplit('/', 1)[1]} in the bucket")
    status = watch.wait_done()
    events["end_s"] = watch.now()
    for name, pattern in [("embed_running_s", r"^\[embed\] running"), ("embed_done_s", r"^\[embed\] done"),
                          ("train_running_s", r"^\[train\] running"), ("epoch_1_line_s", r"^epoch 1/\d+:"),
                          ("epoch_2_line_s", r"^epoch 2/\d+:"), ("train_done_s", r"^\[train\] done")]:
        events[name] = watch.first(pattern)
    for fault in faults:
        if fault["stage"] == "train":
            # Ray Train's restore: the new worker group's placement lines, then its epoch line
            fault["train_group_back_at_s"] = watch.first(r"^train: rank 0/", after=fault["killed_at_s"])
            fault["epoch_line_after_restore_s"] = watch.first(r"^epoch \d+/\d+:", after=fault["killed_at_s"])
    return {"job_id": job_id, "status": status, "log": watch.log(), "argv": argv, "storage": storage,
            "wall_s": events["end_s"], "events": events, "faults": faults}


# -- what the job left in the bucket ---------------------------------------------------------------------
def outputs(storage: str) -> dict:
    """The stage summaries, the feature table's item counts and the training history, read from the bucket."""
    from llm_emf import files

    last = files.read_json(files.join(storage, "last_run.json"))["stages"]
    prepare = files.read_parquet(files.join(storage, "prepare", _key(storage, "prepare"), "items.parquet"),
                                 columns=["item_id"])
    features = files.read_parquet(last["embed"]["output"], columns=["item_id"])
    ids = features.column("item_id").to_pylist()
    run_dir = last["train"]["run_dir"]
    history = files.read_json(files.join(run_dir, "history.json"))["history"]
    results = files.read_json(files.join(run_dir, "results.json"))
    markers = {stage: files.read_json(files.join(storage, stage, _key(storage, stage), "_SUCCESS.json"))
               for stage in last}
    return {"stages": last, "seconds": {s: m["seconds"] for s, m in markers.items()},
            "catalog_items": prepare.num_rows, "catalog_ids": set(prepare.column("item_id").to_pylist()),
            "feature_rows": len(ids), "feature_ids": set(ids), "history": history, "results": results}


def _key(storage: str, stage: str) -> str:
    from llm_emf import files

    [folder] = files.listdir(files.join(storage, stage))
    return files.basename(folder)


# -- the single-node reference -----------------------------------------------------------------------------
REFERENCE = textwrap.dedent("""
    import json, sys
    import ray
    from llm_emf.config import flatten_config, load_config
    from llm_emf.pipeline.workflow import _PATHS
    from llm_emf.training.api import train

    config, overrides, job_results, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
    job = json.loads(job_results)
    cfg = load_config(config, overrides)
    # the job's train stage config: its prepared dataset and feature table in the bucket
    cfg.data.dataset, cfg.model.features = job["data.dataset"], job["model.features"]
    cfg.train.storage, cfg.train.run_name = job["train.storage"].rsplit("/train/", 1)[0] + "/reference", "reference"
    mine = flatten_config(cfg)
    differs = {k: (mine.get(k), v) for k, v in job.items() if k.split(".")[0] in ("model", "train", "eval", "seed")
               and k not in _PATHS and mine.get(k) != v}            # _PATHS: where things go, not what
    assert not differs, f"the reference config differs from the job's train config: {differs}"
    # one node: two Train workers of cpus_per_worker=1.5 need 3 logical CPUs
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    result = train(cfg)
    with open(out, "w") as f:
        json.dump({"history": result.history, "test": result.test.to_dict(), "workers": result.extra.get("workers")},
                  f, default=str)
""")


def reference_run(overrides: list[str], job_results: dict, tmp: Path, env: dict) -> dict:
    """Train the job's train config (``job_results["config"]``, from its results.json) with two Ray Train
    workers on a single-node local Ray, in a child process (its own Ray, never the test cluster), reading the
    dataset and features the job wrote; its run goes beside the job's, under ``reference/``."""
    out = tmp / "reference.json"
    child_env = {k: v for k, v in {**os.environ, **env, **OFFLINE}.items() if k != "RAY_ADDRESS"}
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-c", REFERENCE, str(ROOT / CONFIG), json.dumps(overrides),
                          json.dumps(job_results["config"]), str(out)], cwd=tmp, env=child_env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    ref = json.loads(out.read_text())
    ref["wall_s"] = round(time.monotonic() - start, 1)
    return ref


def _numbers(tree, prefix: str = "") -> dict[str, float]:
    if isinstance(tree, dict):
        found = {}
        for k, v in tree.items():
            found.update(_numbers(v, f"{prefix}/{k}" if prefix else str(k)))
        return found
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {prefix: float(tree)}
    return {}


def compare_metrics(job: dict, reference: dict) -> dict:
    """Per-epoch history (train loss, validation metrics) and test metrics of the job against the reference.

    Both are DDP with two gloo ranks and one torch thread each, the same seeds, the same shards and the same
    data: the gradient all-reduce sums two numbers (a + b == b + a), so placement on one node or two changes
    nothing, and a resumed run restores every state from the epoch-1 checkpoint. Differences larger than
    float noise (METRIC_RTOL) would mean the distributed run, or the restore, is not what it claims.
    Returns the values compared, the largest absolute difference and the pairs outside the tolerance."""
    import math

    pairs = []
    assert [h["epoch"] for h in job["history"]] == [h["epoch"] for h in reference["history"]]
    for mine, ref in zip(job["history"], reference["history"]):
        a, b = _numbers(mine), _numbers(ref)
        pairs += [(f"epoch {mine['epoch']}: {k}", a[k], b[k]) for k in sorted(set(a) & set(b))]
    a, b = _numbers(job["results"]["test"]["metrics"]), _numbers(reference["test"]["metrics"])
    assert set(a) == set(b) and a, (sorted(a), sorted(b))
    pairs += [(f"test: {k}", a[k], b[k]) for k in sorted(a)]
    pairs = [(k, x, y) for k, x, y in pairs if not (math.isnan(x) and math.isnan(y))]
    worst = max((abs(x - y), k, x, y) for k, x, y in pairs)
    return {"compared": len(pairs), "max_abs_diff": worst[0],
            "worst": {"key": worst[1], "job": worst[2], "reference": worst[3]},
            "outside_tolerance": [(k, x, y) for k, x, y in pairs
                                  if not math.isclose(x, y, rel_tol=METRIC_RTOL, abs_tol=1e-9)],
            "test_mrr_job": {k: v for k, v in a.items() if k.endswith("/MRR")},
            "test_mrr_reference": {k: v for k, v in b.items() if k.endswith("/MRR")}}


# -- checks --------------------------------------------------------------------------------------------------
def node_names(cluster: RayCluster) -> dict[str, str]:
    """node id -> 'head', 'worker_node_<i>' (+ ' (lost)' for a dead one)."""
    names = {}
    for n in cluster.nodes():
        name = "head" if n["is_head"] else next((r for r in n["resources"] if r.startswith("worker_node_")), "?")
        names[n["node_id"]] = name + ("" if n["state"] == "ALIVE" else " (lost)")
    return names


def check_job(run: dict, out: dict, names: dict[str, str], faults: bool) -> dict:
    """Asserts of points 4 and 5 on a finished job; returns the placement found (stage -> node ids)."""
    log = run["log"]
    assert run["status"] == "SUCCEEDED", log[-8000:]
    stages = out["stages"]
    for stage in ("prepare", "enrich", "embed", "train", "evaluate", "recommend"):
        assert stage in stages and not stages[stage]["skipped"], (stage, stages)
        assert f"[{stage}] done" in log, stage
    # one line per epoch from distributed training, through the driver (progress.py)
    for epoch in range(1, EPOCHS + 1):
        assert re.search(rf"(?m)^epoch {epoch}/{EPOCHS}: train loss", log), f"no 'epoch {epoch}/{EPOCHS}' line"
    assert re.search(r"(?m)^train: rank 1/2 on node [0-9a-f]+", log)
    # where things ran: every feature actor and Train worker on a worker node; two nodes each for the pools
    embed_nodes, enrich_nodes = stages["embed"]["nodes"], stages["enrich"]["nodes"]
    workers = stages["train"]["workers"]
    assert sorted(w["rank"] for w in workers) == [0, 1] and all(w["world_size"] == 2 for w in workers), workers
    train_nodes = [w["node_id"] for w in workers]
    for node in [*embed_nodes, *enrich_nodes, *train_nodes]:
        assert names.get(node, "?").startswith("worker_node_"), (node, names)
    if faults:              # without the hooks, the first encoder actor up may do every block (see embed_hook)
        assert len(set(embed_nodes)) >= 2, embed_nodes
    assert len(set(train_nodes)) == 2, workers
    assert sum(embed_nodes.values()) == stages["embed"]["done"] == stages["embed"]["total"], stages["embed"]
    assert sum(enrich_nodes.values()) == stages["enrich"]["done"] == ENRICH_LIMIT, stages["enrich"]
    # every item exactly once, each epoch once
    assert out["feature_rows"] == out["catalog_items"] == len(out["feature_ids"]), out["feature_rows"]
    assert out["feature_ids"] == out["catalog_ids"]
    assert [h["epoch"] for h in out["history"]] == list(range(1, EPOCHS + 1)), out["history"]
    assert stages["train"]["epochs_run"] == EPOCHS
    if faults:
        [embed_fault, train_fault] = run["faults"]
        # the restarted Train group ran on the replacement node; the lost one holds no rank any more
        assert train_fault["new_node"] in train_nodes and train_fault["old_node"] not in train_nodes, workers
        # restored, not restarted: epoch 1 was trained once, epoch 2 (lost before its 1st batch) by the restored
        # group only, and no stage ran twice
        for epoch in range(1, EPOCHS + 1):
            assert len(re.findall(rf"(?m)^epoch {epoch}/\d+:", log)) == 1, log[-6000:]
        assert train_fault["train_group_back_at_s"] is not None, log[-6000:]
        for stage in ("embed", "train"):
            assert log.count(f"[{stage}] running") == 1
    return {"enrich": enrich_nodes, "embed": embed_nodes, "train": workers}


# -- the test ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline_cluster(s3_server, mlflow_server, tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("pipeline_cluster"),
                            {**s3_server.env, **mlflow_server.env, **OFFLINE})
    print(f"\nRay cluster ({WORKER_CPUS} CPUs per worker) up in "
          f"{cluster.timings['start_s']:.1f} s")
    yield cluster
    cluster.stop()


@pytest.mark.cluster
@pytest.mark.integration
@pytest.mark.slow
def test_docs_job_on_three_nodes_survives_a_lost_node_in_embed_and_in_train(
        pipeline_cluster, s3_server, cluster_storage, mlflow_client, tmp_path):
    cluster = pipeline_cluster
    stall_dir = tmp_path / "stalls"
    stall_dir.mkdir()
    run = run_job(cluster, s3_server, cluster_storage, f"pipeline-{os.urandom(4).hex()}", stall_dir=stall_dir)
    (tmp_path / "job.log").write_text(run["log"])
    names = node_names(cluster)
    out = outputs(cluster_storage)
    placement = check_job(run, out, names, faults=True)

    # MLflow: the training run names the node of each Train worker
    stages = out["stages"]
    tag = mlflow_client.get_run(stages["train"]["mlflow_run_id"]).data.tags["train_worker_nodes"]
    assert all(w["node_id"] in tag for w in placement["train"]), (tag, placement["train"])

    # the same train config on one node gives the same numbers
    ref = reference_run(job_overrides(run["argv"]), out["results"], tmp_path, s3_server.env)
    assert len({w["node_id"] for w in ref["workers"]}) == 1, ref["workers"]
    diff = compare_metrics(out, ref)
    assert not diff["outside_tolerance"], diff

    print(json.dumps({"wall_s": run["wall_s"], "events": run["events"], "faults": run["faults"],
                      "stage_seconds": out["seconds"], "reference_wall_s": ref["wall_s"],
                      "max_abs_diff": diff["max_abs_diff"],
                      "placement": {k: v if k != "train" else [(w["rank"], w["node_id"]) for w in v]
                                    for k, v in placement.items()}, "nodes": names}, indent=1, default=str))


@pytest.mark.unit
def test_the_train_stage_summary_names_where_each_train_worker_ran(monkeypatch):
    """The pipeline's train stage keeps TrainResult.extra["workers"] in its summary (the _SUCCESS.json marker
    and last_run.json), where the cluster test above reads the placement."""
    import llm_emf.training.tracked as tracked
    from llm_emf.pipeline import training_stages
    from llm_emf.training.api import TrainResult

    workers = [{"rank": 0, "world_size": 2, "node_id": "a" * 56, "hostname": "h1"},
               {"rank": 1, "world_size": 2, "node_id": "b" * 56, "hostname": "h2"}]
    result = TrainResult("r", "s3://b/run", "s3://b/run/checkpoint_1", [{"epoch": 1}], {}, None,
                         extra={"workers": workers, "mlflow_run_id": "m"})
    monkeypatch.setattr(tracked, "train_tracked", lambda cfg: result)
    summary = training_stages._train(lambda cfg, ctx: cfg)(object(), None)
    assert summary["workers"] == workers and summary["mlflow_run_id"] == "m" and summary["epochs_run"] == 1


@pytest.mark.unit
def test_the_train_hook_variable_adds_one_instance_of_the_named_class(monkeypatch):
    from llm_emf.training.hooks import HOOK_ENV, hooks_from_env

    monkeypatch.delenv(HOOK_ENV, raising=False)
    assert hooks_from_env() == []
    monkeypatch.setenv(HOOK_ENV, f"{__name__}:StallTrainOnce")
    [hook] = hooks_from_env()
    assert type(hook).__name__ == "StallTrainOnce" and isinstance(hook, TrainHook)


@pytest.mark.unit
def test_the_progress_queue_lives_on_the_drivers_node(monkeypatch):
    """Train workers send their placement and epoch lines to a queue actor; pinned to the driver's node (as
    Ray Train pins its controller), a lost worker node cannot take the rest of the run's lines with it."""
    import ray
    import ray.util.queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from llm_emf.training.progress import WorkerReports

    created = []

    class FakeQueue:
        def __init__(self, actor_options=None):
            created.append(actor_options)

    class Context:
        def get_node_id(self):
            return "d" * 56

    monkeypatch.setattr(ray.util.queue, "Queue", FakeQueue)
    monkeypatch.setattr(ray, "get_runtime_context", lambda: Context())
    reports = WorkerReports()
    assert isinstance(reports.queue, FakeQueue)
    [options] = created
    strategy = options["scheduling_strategy"]
    assert options["num_cpus"] == 0 and isinstance(strategy, NodeAffinitySchedulingStrategy)
    assert strategy.node_id == "d" * 56 and strategy.soft is False
