"""``llm-emf ui``: the MLflow UI for the resolved tracking store, on localhost unless told otherwise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from llm_emf.config import ConfigError
from llm_emf.config.redact import redact_uri
from llm_emf.tracking.uri import artifact_root, is_http, resolve_tracking_uri, sqlite_path

SECTIONS = ("tracking",)


def add_arguments(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")


def server_command(cfg, host: str, port: int, workers: int = 1) -> list[str]:
    """The ``mlflow ui`` command line for the resolved tracking URI."""
    uri = resolve_tracking_uri(cfg)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
           "--workers", str(workers)]
    root = artifact_root(cfg, uri)
    if root is not None:   # experiments created from the UI keep artifacts where the Tracker puts them
        cmd += ["--default-artifact-root", root]
    return cmd


def run(cfg, args) -> int:
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port: expected 1..65535, found {args.port}")
    uri = resolve_tracking_uri(cfg)
    if is_http(uri):
        print(f"tracking URI {redact_uri(uri)} is already a server: open it in a browser")
        return 0
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        print(f"note: {db} does not exist yet; the UI starts with an empty store", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"MLflow UI for {uri}\n  http://{host}:{args.port}  (Ctrl-C stops it)", flush=True)
    # MLflow's job runner (GenAI jobs) starts ~7 consumer processes of ~230 MB each: not needed to browse runs.
    env = {**os.environ}
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    server = subprocess.Popen(server_command(cfg, args.host, args.port, args.workers), env=env)

    def stop(signum, _frame):   # pass SIGTERM/SIGINT on so the server (and its workers) exit with us
        if server.poll() is None:
            server.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = server.wait()
    return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code
