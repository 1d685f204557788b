"""A Tune sweep on the cluster, as docs/cluster.md submits one: ``python -m workflows.tune --config ... --space ...
tune.storage=s3://...`` as a Ray job, its driver stopped (``ray job stop``'s request) mid-sweep and the same command
submitted again.

The sweep: tune_spaces/optim.yaml (learning rate, weight decay, batch size, shared-loss weight: an ID-only model,
no feature table), 4 trials of 2 epochs on the bundled sample, prepared straight into the bucket. The head has 0
CPUs and each worker node 1, so trials can only run on the workers; ``tune.cpus_per_trial=0.6`` with 2 trials at
a time puts at most one trial on each worker node, so both run trials, and a trial starts only when another
ends, which leaves most of a trial's length between the first finished trial and the last: the window in which
the driver is killed. (0.5 CPU a trial with 2 at a time also spread over both workers when tried here, but
only the CPU count guarantees it; 0.5 with 4 at a time runs all of them at once, so they end together and there
is no such window.)

The driver is stopped (the job API's stop, what ``ray job stop`` sends: SIGTERM to the driver, no chance for Tune
to save) as soon as the experiment state *in the bucket* lists a finished trial. Tune snapshots that state
every 10 s or more ("auto"); the jobs set ``TUNE_GLOBAL_CHECKPOINT_S=2`` so that the snapshot trails the trials
by seconds and the kill lands well inside the second wave on a fast machine too. What Tune does with a trial
that ended after the last snapshot (runs it again, into its reopened MLflow run) or one started after it (a
lost trial: a new suggestion replaces it, its MLflow run is deleted) is llm_emf.tuning.sweep's business; the
test holds the trials the bucket listed as finished at the kill to "never run again".

Both submissions ship one snapshot of the checkout (other work in the checkout must not change the code between
the two), and a warm-up job has every node unpack that package first. On this one-machine cluster all nodes share
one Ray temp dir, so a node's runtime-env agent unpacking a working_dir it has not seen yet deletes and rewrites the
folder that is another node's job driver's current directory (seen: Tune's restore failing on os.getcwd(), a
module missing in mid-rewrite). Real nodes have their own disks; RayCluster giving each node its own --temp-dir
would make the warm-up unnecessary.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import yaml

from helpers.docs_commands import cluster_job_command, runtime_env

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SPACE = "tune_spaces/optim.yaml"
N_TRIALS = 4
# Every node unpacks the job's working_dir: one task on each worker (the head's agent unpacks it for the driver).
WARM_UP = textwrap.dedent("""
    import ray
    ray.init()

    @ray.remote(num_cpus=0.1)
    def where():
        return ray.get_runtime_context().get_node_id()

    print("NODE_IDS", *ray.get([where.options(resources={f"worker_node_{i}": 0.01}).remote() for i in (1, 2)]))
""")


# Top-level entries a job does not need (docs/cluster.md's excludes and the rest of .gitignore, tests, docs, bench).
# Only at the top: llm_emf/data is code. (A package folder missing from a working_dir goes unnoticed here: the
# editable install's finder serves it from the checkout instead.)
_NOT_SHIPPED = {".git", ".venv", "runs", "mlflow.db", "mlartifacts", "mlruns", ".hypothesis", ".pytest_cache",
                "llm_emf.egg-info", "bench", "tests", "docs", "data", "outputs"}


def _snapshot_checkout(dest: Path) -> Path:
    """The code a job needs, copied as it is now (the package, workflows, configs, spaces)."""
    shutil.copytree(ROOT, dest, ignore=lambda folder, names: [
        n for n in names if n == "__pycache__" or (Path(folder) == ROOT and n in _NOT_SHIPPED)])
    assert (dest / "llm_emf" / "data" / "__init__.py").is_file() and (dest / "workflows" / "tune.py").is_file()
    return dest


def _sweep_command(dataset: str, storage: str, experiment: str) -> list[str]:
    """What docs/cluster.md says submits a sweep, made small: the smoke config without its features."""
    return [sys.executable, "-m", "workflows.tune", "--config", "configs/smoke.yaml", "--space", SPACE,
            f"data.dataset={dataset}", f"tune.storage={storage}", "tune.name=cluster-sweep",
            f"tune.num_samples={N_TRIALS}", "tune.cpus_per_trial=0.6", "tune.max_concurrent_trials=2",
            "train.epochs=2", "model.use_text=false", "model.use_image=false", "model.hidden_size=16",
            "eval.n_negatives=49", "eval.protocol=sampled", "train.select_protocol=sampled",
            f"tracking.experiment={experiment}", "pipeline.ray_dashboard=false"]


def _stop_job(cluster, submission_id: str) -> None:
    """POST /api/jobs/<id>/stop with the token: what `ray job stop` sends, without its CLI's start-up time."""
    import urllib.request

    request = urllib.request.Request(f"{cluster.address}/api/jobs/{submission_id}/stop", data=b"", method="POST")
    request.add_header("Authorization", f"Bearer {cluster.token_path.read_text().strip()}")
    with urllib.request.urlopen(request, timeout=60) as r:
        assert json.loads(r.read()).get("stopped") is True, submission_id


def _trial_states(s3_server, bucket: str, prefix: str) -> dict[str, dict]:
    """trial_id -> {status, last_result} from the newest experiment_state-*.json in the bucket ({} if none)."""
    from llm_emf import files

    states = [k for k in s3_server.keys(bucket, prefix) if k.rsplit("/", 1)[-1].startswith("experiment_state-")]
    if not states:
        return {}
    try:
        state = files.read_json(f"s3://{bucket}/{max(states)}")
    except (FileNotFoundError, ValueError):          # replaced between listing and reading
        return {}
    out = {}
    for trial_json, runtime_json in state["trial_data"]:
        trial, runtime = json.loads(trial_json), json.loads(runtime_json)
        last = runtime.get("last_result") or {}
        out[trial["trial_id"]] = {"status": trial["status"], "node_id": last.get("node_id"),
                                  "iterations": last.get("training_iteration")}
    return out


def test_sweep_on_two_workers_survives_a_killed_driver_with_its_state_in_the_bucket(
        ray_cluster, mlflow_client, cluster_storage, s3_server, tmp_path):
    from llm_emf import files
    from llm_emf.config import load_config
    from llm_emf.data.prepare import prepare_dataset

    t_test = time.monotonic()
    bucket = cluster_storage[len("s3://"):].split("/", 1)[0]
    dataset, storage = f"{cluster_storage}/dataset", f"{cluster_storage}/tune"
    sweep_prefix = f"{cluster_storage.split('/', 3)[3]}/tune/cluster-sweep"
    prepare_dataset(load_config(None, ["data.source=sample", f"data.dataset={dataset}"]))
    assert files.is_file(f"{dataset}/dataset.json")

    nodes = [n for n in ray_cluster.nodes() if n["state"] == "ALIVE"]
    workers = {n["node_id"]: name for n in nodes for name in n["resources"] if name.startswith("worker_node_")}
    head = next(n["node_id"] for n in nodes if n["is_head"])
    assert sorted(workers.values()) == ["worker_node_1", "worker_node_2"]

    experiment = f"tune-cluster-{uuid.uuid4().hex[:8]}"
    command = _sweep_command(dataset, storage, experiment)
    # the runtime env docs/cluster.md submits with: the checkout (a snapshot of it) as working_dir, its excludes
    env = {**runtime_env(cluster_job_command()), "working_dir": str(_snapshot_checkout(tmp_path / "checkout")),
           "env_vars": {"TUNE_GLOBAL_CHECKPOINT_S": "2"}}
    warm = f"warm-up-{uuid.uuid4().hex[:8]}"
    res = ray_cluster.submit([sys.executable, "-c", WARM_UP], runtime_env=env, submission_id=warm, timeout=300)
    assert res.returncode == 0 and ray_cluster.job_status(warm) == "SUCCEEDED", ray_cluster.job_logs(warm)[-3000:]

    # 1. submitted; stopped once the bucket's experiment state has a finished trial and not all of them
    first = f"tune-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    res = ray_cluster.submit(command, runtime_env=env, submission_id=first, no_wait=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    states: dict[str, dict] = {}
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        states = _trial_states(s3_server, bucket, sweep_prefix)
        if any(s["status"] == "TERMINATED" for s in states.values()):
            break
        status = ray_cluster.job_status(first)
        assert status in ("PENDING", "RUNNING"), f"{status}:\n{ray_cluster.job_logs(first)[-6000:]}"
        time.sleep(1)
    else:
        pytest.fail(f"no finished trial in the bucket within 400 s; {states}:\n{ray_cluster.job_logs(first)[-6000:]}")
    t_first_done = time.monotonic() - t0
    _stop_job(ray_cluster, first)
    t_killed = time.monotonic() - t0
    assert ray_cluster.wait_job(first, 60) == "STOPPED", ray_cluster.job_logs(first)[-6000:]
    at_kill = _trial_states(s3_server, bucket, sweep_prefix)
    done_before = {t for t, s in at_kill.items() if s["status"] == "TERMINATED"}
    assert done_before and len(done_before) < N_TRIALS, at_kill          # killed mid-sweep
    keys = s3_server.keys(bucket, sweep_prefix)
    assert not any(k.endswith("best_config.yaml") for k in keys)
    first_log = ray_cluster.job_logs(first)
    (tmp_path / "first_job.log").write_text(first_log)
    assert "resuming sweep" not in first_log

    # 2. the same command again: Tuner.restore from the bucket, finished trials kept
    second = f"tune-{uuid.uuid4().hex[:8]}"
    t1 = time.monotonic()
    res = ray_cluster.submit(command, runtime_env=env, submission_id=second, no_wait=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    status = ray_cluster.wait_job(second, 600)
    t_resume = time.monotonic() - t1
    log = ray_cluster.job_logs(second)
    (tmp_path / "resumed_job.log").write_text(log)
    assert status == "SUCCEEDED", log[-8000:]
    assert f"resuming sweep cluster-sweep from {storage}/cluster-sweep" in log, log[-8000:]
    assert f"sweep cluster-sweep: {N_TRIALS} trials" in log

    # experiment state, best config and the trial -> node summary are objects under tune.storage
    keys = s3_server.keys(bucket, sweep_prefix)
    names = {k.rsplit("/", 1)[-1] for k in keys}
    assert any(n.startswith("experiment_state-") and n.endswith(".json") for n in names), keys
    assert {"tuner.pkl", "best_config.yaml", "sweep_summary.json", "mlflow_parent_run.json"} <= names, keys
    # (load_config reads local files only: a best config in a bucket is read here, not through --config)
    best = yaml.safe_load(files.read_text(f"{storage}/cluster-sweep/best_config.yaml"))
    summary = files.read_json(f"{storage}/cluster-sweep/sweep_summary.json")
    trials = {row["trial_id"]: row for row in summary["trials"]}
    assert summary["n_trials"] == N_TRIALS and len(trials) == N_TRIALS, summary
    assert best["train"]["lr"] == summary["best_params"]["train.lr"]

    # every trial ran on a worker node, both workers ran trials, never the head
    final = _trial_states(s3_server, bucket, sweep_prefix)
    assert set(final) == set(trials) and all(s["status"] == "TERMINATED" for s in final.values()), final
    used = {row["node_id"] for row in trials.values()}
    assert head not in used and used == set(workers), (used, workers)
    for trial_id in done_before:                                  # kept as they were, not run again
        assert trials[trial_id]["node_id"] == at_kill[trial_id]["node_id"]
        assert trials[trial_id]["iterations"] == at_kill[trial_id]["iterations"]

    # MLflow: one parent (the first job's, reopened and finished), one child per trial, each on its node
    from mlflow.entities import ViewType

    [exp] = [e for e in mlflow_client.search_experiments() if e.name == experiment]
    runs = mlflow_client.search_runs([exp.experiment_id])
    seen = [(r.info.run_name, r.data.tags.get("trial_id"), r.info.status, r.info.lifecycle_stage,
             r.data.tags.get("lost_trial")) for r in mlflow_client.search_runs([exp.experiment_id],
                                                                               run_view_type=ViewType.ALL)]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", seen
    assert parents[0].info.run_id == summary["parent_run_id"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == N_TRIALS == len(runs) - 1, (seen, at_kill)
    by_trial = {r.data.tags["trial_id"]: r for r in children}
    assert set(by_trial) == set(trials), (seen, at_kill)
    for trial_id, run in by_trial.items():
        assert run.info.status in ("FINISHED", "KILLED"), (trial_id, run.info.status)   # KILLED: ASHA stopped it
        assert run.data.tags["node_id"] == trials[trial_id]["node_id"]
        assert "lost_trial" not in run.data.tags
        # the summary and the run agree on ASHA: test metrics <=> not stopped early (a resumed trial too)
        early = trials[trial_id]["status"] == "stopped_early"
        assert run.data.tags.get("stopped_early") == str(early).lower(), (trial_id, trials[trial_id], run.data.tags)
        assert any(k.startswith("metrics/") for k in run.data.metrics) != early, (trial_id, sorted(run.data.metrics))
    for trial_id in done_before:          # each epoch logged once: the finished trial did not train again
        steps = [m.step for m in mlflow_client.get_metric_history(by_trial[trial_id].info.run_id, "train_loss")]
        assert steps and sorted(steps) == sorted(set(steps)), (trial_id, steps)
    # A trial the first driver started after Tune's last snapshot is unknown to the restored sweep (Tune runs a
    # new suggestion instead): its run is closed, tagged lost_trial and deleted, never one of the children.
    deleted = [r for r in mlflow_client.search_runs([exp.experiment_id], run_view_type=ViewType.DELETED_ONLY)]
    lost = {r.data.tags.get("trial_id") for r in deleted}
    assert all(r.data.tags.get("lost_trial") == "true" and r.info.status in ("KILLED", "FINISHED")
               for r in deleted), seen
    assert not lost & (set(trials) | set(at_kill)), seen

    rows = "\n".join(f"  {t}  {workers[row['node_id']]} ({row['node_id']})  {row['status']}  at the kill: "
                     f"{at_kill[t]['status'] if t in at_kill else 'not yet created'}"
                     for t, row in sorted(trials.items()))
    print(f"\nsweep on the cluster: first finished trial in the bucket after {t_first_done:.1f} s, driver stopped "
          f"at {t_killed:.1f} s; resumed run {t_resume:.1f} s; sweep wall {t_killed + t_resume:.1f} s; "
          f"test {time.monotonic() - t_test:.1f} s; lost trials (started after the last snapshot): "
          f"{sorted(lost) or 'none'}\n{rows}")
