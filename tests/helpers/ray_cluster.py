"""A real multi-node Ray cluster on this machine, started the way `ray up` starts one: separate `ray start`
processes, one head (token authentication, dashboard and job API on 127.0.0.1) and N worker nodes, each with its
own raylet, node id, CPU count and a custom resource (``worker_node_<i>``) that pins work to it.

Isolation from every other Ray on the machine (other tests, other engineers, a user's cluster):
- every port of every node (GCS, dashboard, dashboard agent, metrics, node and object manager, runtime-env
  agent, Ray client server, the autoscaler's and dashboard's metrics ports, a range of worker ports) is chosen
  here, none of Ray's defaults: probed free, distinct, and outside both Ray's default worker range and the
  kernel's ephemeral range (see _PORT_REGION);
- a private temp dir: ``--temp-dir`` for the nodes and ``RAY_TMPDIR`` for their and the clients' processes, so
  the "current cluster" file, sessions, sockets and logs are this cluster's only (a plain ``ray.init()`` with
  :attr:`RayCluster.env` joins this cluster and no other). Unix socket paths must stay under 108 bytes, so it
  is a short ``/tmp/rc-XXXXXX`` rather than the pytest folder; its logs are copied into the pytest folder at
  :meth:`RayCluster.stop`;
- a private token file (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN_PATH``); ``RAY_ADDRESS`` and
  ``RAY_AUTH_TOKEN`` of the calling environment are dropped.

Stopping only this cluster: ``ray stop`` (even without ``--force``) signals every Ray process of the user on the
machine, so it is never used. Each node's ``ray start`` runs in a new session (``start_new_session``): the GCS,
raylet, dashboard, agents and the workers the raylet forks inherit that session id. :meth:`RayCluster.stop`
collects the processes of those sessions plus any process whose command line names this cluster's temp dir
(a worker that left the session would still carry ``--temp-dir``/``--session-dir``), sends SIGTERM, then
SIGKILL to what is left after a grace period, and checks that none of them is alive.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .ports import wait_for_port

BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
WORKER_PORTS_PER_NODE = 200
# Every port of the cluster comes from here: above Ray's default worker range (10002-19999) and below the
# kernel's ephemeral range (32768-60999), from which outgoing connections take their local ports and
# helpers.ports.free_port draws. A free port from the ephemeral range can be taken by any connection on the
# machine in the seconds before Ray binds it (seen: a raylet dying with "bind: Address already in use").
_PORT_REGION = (20000, 32700)


def _port_is_free(port: int) -> bool:
    import socket

    for host in ("0.0.0.0", "127.0.0.1"):     # Ray binds on all interfaces or on the node address
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def _pick_ports(taken: set[int], count: int, block: int = 1) -> list[int]:
    """``count`` ports (``block`` > 1: one block of consecutive ports) in _PORT_REGION, none in ``taken`` and
    none bound by anyone now; they are added to ``taken``."""
    import random

    lo, hi = _PORT_REGION
    found: list[int] = []
    for _ in range(10000):
        base = random.randrange(lo, hi - block)
        ports = range(base, base + block)
        if taken.isdisjoint(ports) and all(_port_is_free(p) for p in ports):
            taken.update(ports)
            found.extend(ports if block > 1 else [base])
            if len(found) >= count * block:
                return found
    raise RuntimeError(f"no {count} free port(s) (blocks of {block}) in {_PORT_REGION}")


@dataclass
class RayNode:
    """One `ray start` of the cluster: the head (index 0) or worker node ``index``."""

    index: int
    resources: dict[str, float]
    num_cpus: int
    ports: dict[str, int] = field(default_factory=dict)
    session_id: int | None = None      # the session (= pid of its `ray start`) its processes live in
    start_log: Path | None = None

    @property
    def name(self) -> str:
        return "head" if self.index == 0 else f"worker_node_{self.index}"

    def processes(self) -> list[psutil.Process]:
        if self.session_id is None:
            return []
        found = []
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) == self.session_id:
                    found.append(p)
            except (OSError, psutil.Error):
                pass
        return found

    def raylet(self) -> psutil.Process | None:
        """This node's raylet: the process named raylet that listens on its node-manager port."""
        for p in psutil.process_iter(["name", "cmdline"]):
            try:
                if p.info["name"] == "raylet" and \
                        f"--node_manager_port={self.ports['node_manager']}" in (p.info["cmdline"] or []):
                    return p
            except psutil.Error:
                pass
        return None


class RayCluster:
    """``RayCluster(tmp, num_workers=2).start()``: a head with 0 CPUs (drivers only, as in cluster.yaml) and
    ``num_workers`` nodes with ``worker_cpus`` CPUs and the resource ``worker_node_<i>: 1`` each.

    ``node_env``: extra environment for every node's Ray processes, as cluster.yaml's ``export ...; ray start``
    gives them (e.g. MLFLOW_TRACKING_URI and the object-store credentials): every job, task and actor inherits it.
    """

    def node_temp_dir(self, index: int) -> Path:
        """Where node ``index`` keeps its sessions. Each node has its own, as separate machines do: nodes that
        shared one would each unpack a job's working_dir into the same folder, deleting the files the driver
        is importing (seen: ImportError mid-job)."""
        return self.temp_dir if index == 0 else self.tmp / f"n{index}"   # short: socket paths < 108 bytes

    def __init__(self, log_root: Path, num_workers: int = 2, head_cpus: int = 0, worker_cpus: int = 1,
                 object_store_bytes: int = 300 * 1024 ** 2, node_env: dict[str, str] | None = None):
        self.log_root = Path(log_root)
        self.log_root.mkdir(parents=True, exist_ok=True)
        self.object_store_bytes = object_store_bytes
        self.node_env = dict(node_env or {})
        self.tmp = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))       # short: Unix socket paths < 108 bytes
        self.temp_dir = self.tmp / "ray"                 # the head's; worker node i keeps its own (node_temp_dir)
        self.token_path = self.log_root / "auth_token"
        self.token_path.write_text(secrets.token_hex(32))
        self.token_path.chmod(0o600)
        self._taken_ports: set[int] = set()
        self.nodes_: list[RayNode] = [RayNode(0, {}, head_cpus)]
        for i in range(1, num_workers + 1):
            self.nodes_.append(RayNode(i, {f"worker_node_{i}": 1}, worker_cpus))
        self.timings: dict[str, float] = {}

    # -- addresses and environments -----------------------------------------------------------------
    @property
    def head(self) -> RayNode:
        return self.nodes_[0]

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.head.ports['gcs']}"

    @property
    def address(self) -> str:
        """The dashboard / job API: what `ray job submit --address` takes."""
        return f"http://127.0.0.1:{self.head.ports['dashboard']}"

    @property
    def env(self) -> dict[str, str]:
        """The environment of a client process on this machine (`ray job submit`, `ray list`, a driver)."""
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_path), RAY_TMPDIR=str(self.tmp))
        return env

    def _node_env(self) -> dict[str, str]:
        return {**self.env, **self.node_env}

    # -- starting and stopping ----------------------------------------------------------------------
    def _launch_node(self, node: RayNode) -> subprocess.Popen:
        """`ray start` of ``node`` in a new session, every port a fresh free one; returns the running `ray start`."""
        names = ["node_manager", "object_manager", "metrics_export", "dashboard_agent_listen",
                 "dashboard_agent_grpc", "runtime_env_agent"]
        if node.index == 0:
            # the last two are fixed ports (44217, 44227) unless set through these environment variables
            names += ["gcs", "dashboard", "ray_client_server", "autoscaler_metrics", "dashboard_metrics"]
        node.ports = dict(zip(names, _pick_ports(self._taken_ports, len(names))))
        workers = _pick_ports(self._taken_ports, 1, block=WORKER_PORTS_PER_NODE)
        node.ports["min_worker"], node.ports["max_worker"] = workers[0], workers[-1]
        p = node.ports
        # No --node-ip-address: Ray maps 127.0.0.1 to the machine's own address anyway; nodes join by loopback.
        cmd = [RAY, "start", f"--temp-dir={self.node_temp_dir(node.index)}",
               f"--num-cpus={node.num_cpus}", "--num-gpus=0", f"--object-store-memory={self.object_store_bytes}",
               f"--node-manager-port={p['node_manager']}", f"--object-manager-port={p['object_manager']}",
               f"--metrics-export-port={p['metrics_export']}",
               f"--dashboard-agent-listen-port={p['dashboard_agent_listen']}",
               f"--dashboard-agent-grpc-port={p['dashboard_agent_grpc']}",
               f"--runtime-env-agent-port={p['runtime_env_agent']}",
               f"--min-worker-port={p['min_worker']}", f"--max-worker-port={p['max_worker']}",
               "--disable-usage-stats"]
        if node.resources:
            cmd.append(f"--resources={json.dumps(node.resources)}")
        env = self._node_env()
        if node.index == 0:
            cmd += ["--head", f"--port={p['gcs']}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={p['dashboard']}", f"--ray-client-server-port={p['ray_client_server']}"]
            env.update(AUTOSCALER_METRIC_PORT=str(p["autoscaler_metrics"]),
                       DASHBOARD_METRIC_PORT=str(p["dashboard_metrics"]))
        else:
            cmd.append(f"--address={self.gcs_address}")
        node.start_log = self.log_root / f"ray_start_{node.name}.log"
        with open(node.start_log, "ab") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        node.session_id = proc.pid
        return proc

    def _start_nodes(self, nodes: list[RayNode], tries: int = 2) -> None:
        """Start ``nodes`` one after the other (side by side, two nodes' start-up on 2 busy cores can exceed
        the 30 s Ray allows a raylet to register), each retried once with fresh ports after its processes are
        stopped."""
        for node in nodes:
            for attempt in range(1, tries + 1):
                proc = self._launch_node(node)
                try:
                    rc = proc.wait(timeout=180)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = "timeout"
                if rc == 0:
                    break
                self._terminate(node.processes())
                if attempt == tries:
                    raise RuntimeError(f"`ray start` of {node.name} failed ({rc}):\n"
                                       f"{node.start_log.read_text()[-4000:]}")

    def start(self) -> "RayCluster":
        t0 = time.monotonic()
        try:
            self._start_nodes([self.head])
            wait_for_port(self.head.ports["dashboard"], 60, what="Ray dashboard")
            self._start_nodes(self.nodes_[1:])
            self.wait_for_nodes(len(self.nodes_), timeout_s=120)
        except BaseException:
            self.stop()
            raise
        self.timings["start_s"] = time.monotonic() - t0
        return self

    def _processes(self) -> list[psutil.Process]:
        sessions = {n.session_id for n in self.nodes_ if n.session_id is not None}
        tmp = str(self.tmp)
        found = {}
        for p in psutil.process_iter(["cmdline"]):
            try:
                if p.pid == os.getpid():
                    continue
                if os.getsid(p.pid) in sessions or any(tmp in a for a in (p.info["cmdline"] or [])):
                    found[p.pid] = p
            except (OSError, psutil.Error):
                pass
        for p in list(found.values()):     # e.g. a job's driver, which Ray starts in a session of its own
            try:
                found.update((c.pid, c) for c in p.children(recursive=True))
            except psutil.Error:
                pass
        found.pop(os.getpid(), None)
        return list(found.values())

    @staticmethod
    def _terminate(procs: list[psutil.Process], grace_s: float = 5.0) -> list[psutil.Process]:
        """SIGTERM, then SIGKILL after ``grace_s``; returns what is still alive (should be nothing)."""
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(alive, timeout=10)
        return alive

    def stop(self, keep_logs: bool = True) -> None:
        t0 = time.monotonic()
        # All at once: SIGTERM, then SIGKILL after the grace period (the GCS takes over 15 s to exit on SIGTERM).
        alive = self._terminate(self._processes())
        alive += self._terminate(self._processes())      # anything forked meanwhile
        self.timings["stop_s"] = time.monotonic() - t0
        if keep_logs:
            for node in self.nodes_:
                logs = self.node_temp_dir(node.index) / "session_latest" / "logs"
                if logs.is_dir():
                    name = "ray_logs" if node.index == 0 else f"ray_logs_{node.name}"
                    shutil.copytree(logs, self.log_root / name, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("*.sock"), symlinks=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        if alive:
            raise RuntimeError(f"processes of this Ray cluster outlived SIGKILL: {[p.pid for p in alive]}")

    # -- faults -------------------------------------------------------------------------------------
    def kill_worker_raylet(self, i: int, wait_dead_s: float | None = None) -> int:
        """SIGKILL the raylet of worker node ``i`` (as a lost spot instance would); returns its pid. Its workers
        and agents die with it (Ray fate-shares them with the raylet). The GCS marks the node DEAD only after
        its health checks fail (~10-15 s here): ``wait_dead_s`` waits up to that long for it."""
        node_id = self.node_id(i) if wait_dead_s else None
        raylet = self.nodes_[i].raylet()
        if raylet is None:
            raise RuntimeError(f"{self.nodes_[i].name} has no raylet running")
        raylet.kill()
        raylet.wait(timeout=30)
        if wait_dead_s:
            self._wait(lambda nodes: any(n["node_id"] == node_id and n["state"] == "DEAD" for n in nodes),
                       wait_dead_s, f"node {node_id} of {self.nodes_[i].name} marked DEAD")
        return raylet.pid

    def restart_worker(self, i: int, timeout_s: float = 120) -> str:
        """Bring worker node ``i`` back (fresh ports, a new node id, the same resources), as the autoscaler
        would replace a lost node; whatever is left of its old processes is stopped first. Returns the new
        node id once the GCS lists it ALIVE."""
        node = self.nodes_[i]
        self._terminate(node.processes())
        before = {n["node_id"] for n in self.nodes()}
        self._start_nodes([node])
        nodes = self._wait(lambda nodes: any(n["node_id"] not in before and n["state"] == "ALIVE"
                                             and node.name in n["resources"] for n in nodes),
                           timeout_s, f"{node.name} back")
        return next(n["node_id"] for n in nodes if n["node_id"] not in before and node.name in n["resources"])

    # -- questions ----------------------------------------------------------------------------------
    def _ray(self, *args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([RAY, *args], env=env or self.env, capture_output=True, text=True, timeout=timeout)

    def nodes(self) -> list[dict]:
        """Every node the GCS knows (alive and dead): ``node_id``, ``state``, ``resources`` (totals: CPU,
        memory, the custom ``worker_node_<i>``...), ``is_head``; through the state API with the token."""
        res = self._ray("list", "nodes", "--address", self.address, "--format", "json", "--detail",
                        "--limit", "1000")
        if res.returncode != 0:
            raise RuntimeError(f"ray list nodes failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
        rows = json.loads(res.stdout)
        return [{"node_id": r["node_id"], "state": r["state"], "resources": r.get("resources_total", {}),
                 "is_head": r.get("is_head_node", False), "ip": r.get("node_ip")} for r in rows]

    def node_id(self, i: int) -> str:
        """The id of node ``i`` (0: the head) as the GCS lists it now, ALIVE."""
        for n in self.nodes():
            if n["state"] == "ALIVE" and (n["is_head"] if i == 0 else self.nodes_[i].name in n["resources"]):
                return n["node_id"]
        raise RuntimeError(f"{self.nodes_[i].name} is not alive")

    def _wait(self, done, timeout_s: float, what: str) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        last: list[dict] | str = []
        while time.monotonic() < deadline:
            try:
                last = self.nodes()
                if done(last):
                    return last
            except (RuntimeError, json.JSONDecodeError, subprocess.TimeoutExpired) as e:
                last = str(e)
            time.sleep(1)
        raise TimeoutError(f"not seen within {timeout_s} s: {what}; nodes: {last}")

    def wait_for_nodes(self, alive: int, timeout_s: float = 120) -> list[dict]:
        return self._wait(lambda nodes: sum(1 for n in nodes if n["state"] == "ALIVE") >= alive, timeout_s,
                          f"{alive} alive nodes")

    # -- jobs -----------------------------------------------------------------------------------------
    def submit(self, cmd: list[str], runtime_env: dict | None = None, env: dict | None = None,
               no_wait: bool = False, submission_id: str | None = None, timeout: float = 900,
               entrypoint_num_cpus: float | None = None) -> subprocess.CompletedProcess:
        """`ray job submit` of ``cmd`` (argv after ``--``), waiting for the job unless ``no_wait``. ``env``:
        the client's environment (default :attr:`env`, the token included); retried while the head's job
        agent is not up yet (HTTP 500 "No available agent")."""
        args = [RAY, "job", "submit", "--address", self.address]
        if runtime_env is not None:
            args += ["--runtime-env-json", json.dumps(runtime_env)]
        if submission_id:
            args += ["--submission-id", submission_id]
        if entrypoint_num_cpus is not None:
            args += ["--entrypoint-num-cpus", str(entrypoint_num_cpus)]
        if no_wait:
            args.append("--no-wait")
        args += ["--", *cmd]
        return self.run_client(args, env=env, timeout=timeout)

    def run_client(self, argv: list[str], env: dict | None = None, timeout: float = 900,
                   cwd: str | Path | None = None) -> subprocess.CompletedProcess:
        """Run a client command (e.g. the `ray job submit ...` of docs/cluster.md) against this cluster, with
        the retry on "No available agent" of a head whose job agent is not up yet."""
        res = None
        for _ in range(30):
            res = subprocess.run(argv, env=env or self.env, capture_output=True, text=True, timeout=timeout,
                                 cwd=cwd)
            if "No available agent" not in res.stdout + res.stderr:
                return res
            time.sleep(2)
        return res

    def _jobs_api(self, path: str) -> dict:
        """GET ``/api/jobs/<path>`` of the head's job API with the token (what the Jobs SDK sends)."""
        import urllib.request

        request = urllib.request.Request(f"{self.address}/api/jobs/{path}")
        request.add_header("Authorization", f"Bearer {self.token_path.read_text().strip()}")
        with urllib.request.urlopen(request, timeout=60) as r:
            return json.loads(r.read())

    def job_logs(self, submission_id: str) -> str:
        return self._jobs_api(f"{submission_id}/logs")["logs"]

    def job_status(self, submission_id: str) -> str:
        """PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED."""
        return self._jobs_api(submission_id)["status"]

    def wait_job(self, submission_id: str, timeout_s: float = 900) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.job_status(submission_id)
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                return status
            time.sleep(2)
        raise TimeoutError(f"job {submission_id} not finished after {timeout_s} s")
