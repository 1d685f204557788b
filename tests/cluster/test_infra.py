"""The test cluster itself: several Ray nodes on this machine behind token authentication, and an MLflow server
with basic auth whose artifacts land in S3. What every cluster test after it builds on."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from helpers.ray_cluster import RAY

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.slow]

# One task pinned to each worker node by its custom resource; prints the node ids they ran on.
PINNED_TASKS = textwrap.dedent("""
    import ray
    ray.init()

    @ray.remote(num_cpus=1)
    def where():
        return ray.get_runtime_context().get_node_id()

    refs = [where.options(resources={f"worker_node_{i}": 1}).remote() for i in (1, 2)]
    print("NODE_IDS", *ray.get(refs))
""")


def test_head_and_two_workers_run_pinned_tasks_of_a_token_authenticated_job(ray_cluster):
    nodes = [n for n in ray_cluster.nodes() if n["state"] == "ALIVE"]
    assert len(nodes) == 3 and len({n["node_id"] for n in nodes}) == 3, nodes
    head = [n for n in nodes if n["is_head"]]
    assert len(head) == 1 and head[0]["resources"].get("CPU", 0) == 0          # drivers only, as in cluster.yaml
    owner = {r: n["node_id"] for n in nodes for r in n["resources"] if r.startswith("worker_node_")}
    assert sorted(owner) == ["worker_node_1", "worker_node_2"]
    assert all(n["resources"].get("CPU") == 1 for n in nodes if not n["is_head"])

    job = f"infra-{uuid.uuid4().hex[:8]}"
    res = ray_cluster.submit([sys.executable, "-c", PINNED_TASKS], submission_id=job, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    line = next(line for line in ray_cluster.job_logs(job).splitlines() if line.startswith("NODE_IDS"))
    assert line.split()[1:] == [owner["worker_node_1"], owner["worker_node_2"]]
    assert ray_cluster.job_status(job) == "SUCCEEDED"


@pytest.mark.parametrize("token", ["missing", "wrong"])
def test_a_submission_without_the_clusters_token_is_refused(ray_cluster, tmp_path, token):
    env = dict(ray_cluster.env)
    env["RAY_AUTH_TOKEN_PATH"] = str(tmp_path / "auth_token")
    if token == "wrong":
        (tmp_path / "auth_token").write_text(uuid.uuid4().hex * 2)
    job = f"refused-{token}-{uuid.uuid4().hex[:8]}"
    res = ray_cluster.submit([sys.executable, "-c", "print('should not run')"], submission_id=job, env=env,
                             timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    assert "AuthenticationError" in out or "401" in out or "token" in out.lower(), out[-3000:]
    listed = subprocess.run([RAY, "job", "list", "--address", ray_cluster.address],
                            env=ray_cluster.env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and job not in listed.stdout                # never created


# -- MLflow ---------------------------------------------------------------------------------------------
def _api(server, path: str, params: dict | None = None, body: dict | None = None,
         auth: tuple[str, str] | None = None) -> tuple[int, dict | str]:
    url = f"{server.uri}/api/2.0/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     method="POST" if body is not None else "GET")
    request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            raw = r.read().decode()
            return r.status, json.loads(raw) if raw.startswith("{") else raw
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


LOG_A_RUN = textwrap.dedent("""
    import os, sys, tempfile
    import mlflow
    mlflow.set_experiment(sys.argv[1])
    with mlflow.start_run() as run:
        mlflow.log_param("fusion", "early")
        mlflow.log_metric("valid_mrr", 0.25, step=1)
        folder = tempfile.mkdtemp()
        with open(os.path.join(folder, "notes.txt"), "w") as f:
            f.write("artifact through the server")
        mlflow.log_artifact(os.path.join(folder, "notes.txt"))
    print("RUN_ID", run.info.run_id, run.info.experiment_id)
""")


def _client_env(extra: dict) -> dict:
    """This process's environment without any MLflow or AWS settings, plus ``extra``: the client reaches the
    bucket only through the server (--serve-artifacts), as a laptop behind an SSH tunnel does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    return {**env, **extra}


def test_mlflow_server_keeps_runs_with_s3_artifacts_behind_a_login(mlflow_server, s3_server):
    login = (mlflow_server.username, mlflow_server.password)
    res = subprocess.run([sys.executable, "-c", LOG_A_RUN, "infra"], env=_client_env(mlflow_server.env),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run_id, experiment_id = next(line for line in res.stdout.splitlines() if line.startswith("RUN_ID")).split()[1:]

    status, body = _api(mlflow_server, "mlflow/runs/get", {"run_id": run_id}, auth=login)
    assert status == 200, body
    data = body["run"]["data"]
    assert {p["key"]: p["value"] for p in data["params"]} == {"fusion": "early"}
    assert {m["key"]: m["value"] for m in data["metrics"]} == {"valid_mrr": 0.25}
    assert f"{mlflow_server.artifacts_prefix}/{experiment_id}/{run_id}/artifacts/notes.txt" in \
        s3_server.keys(mlflow_server.bucket, mlflow_server.artifacts_prefix)

    # Without the password, with a wrong one, or as a user who was granted nothing: refused.
    assert _api(mlflow_server, "mlflow/runs/get", {"run_id": run_id})[0] == 401
    assert _api(mlflow_server, "mlflow/runs/get", {"run_id": run_id}, auth=(login[0], "wrong"))[0] == 401
    other = ("someone-else", uuid.uuid4().hex)
    status, body = _api(mlflow_server, "mlflow/users/create", body={"username": other[0], "password": other[1]},
                        auth=login)
    assert status == 200, body
    assert _api(mlflow_server, "mlflow/runs/get", {"run_id": run_id}, auth=other)[0] == 403
    # A client without the password cannot log either.
    res = subprocess.run([sys.executable, "-c", LOG_A_RUN, "infra"],
                         env=_client_env({"MLFLOW_TRACKING_URI": mlflow_server.uri}), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode != 0 and "401" in res.stderr, res.stderr[-3000:]


def test_a_job_logs_to_mlflow_with_what_the_nodes_were_started_with(ray_cluster, mlflow_server, s3_server):
    """cluster.yaml starts every node's Ray with the MLflow address and login: a job needs no tracking env."""
    login = (mlflow_server.username, mlflow_server.password)
    job = f"mlflow-{uuid.uuid4().hex[:8]}"
    res = ray_cluster.submit([sys.executable, "-c", LOG_A_RUN, "infra-job"], submission_id=job, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run_id, experiment_id = next(line for line in ray_cluster.job_logs(job).splitlines()
                                 if line.startswith("RUN_ID")).split()[1:]
    status, body = _api(mlflow_server, "mlflow/runs/get", {"run_id": run_id}, auth=login)
    assert status == 200 and body["run"]["info"]["status"] == "FINISHED", body
    assert f"{mlflow_server.artifacts_prefix}/{experiment_id}/{run_id}/artifacts/notes.txt" in \
        s3_server.keys(mlflow_server.bucket, mlflow_server.artifacts_prefix)


def test_a_killed_worker_node_is_marked_dead_and_a_restarted_one_takes_its_work(ray_cluster):
    """The fault-test tools: SIGKILL a worker's raylet (a lost spot node), then bring the node back."""
    old = ray_cluster.node_id(2)
    try:
        ray_cluster.kill_worker_raylet(2, wait_dead_s=90)
        assert not ray_cluster.nodes_[2].raylet()
        assert ray_cluster.node_id(1)                                   # the other worker is unaffected
    finally:
        new = ray_cluster.restart_worker(2)
    assert new != old
    job = f"after-restart-{uuid.uuid4().hex[:8]}"
    res = ray_cluster.submit([sys.executable, "-c", PINNED_TASKS], submission_id=job, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    line = next(line for line in ray_cluster.job_logs(job).splitlines() if line.startswith("NODE_IDS"))
    assert line.split()[1:] == [ray_cluster.node_id(1), new]
