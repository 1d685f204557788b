"""An MLflow tracking server as cluster.yaml runs it on the head, on 127.0.0.1 with a free port.

Same shape as cluster.yaml's ``head_start_ray_commands``: MLflow's ``basic-auth`` app with an auth config file
(``default_permission = NO_PERMISSIONS``, its own sqlite user store), the admin user ``llm-emf`` and its password
from ``MLFLOW_AUTH_ADMIN_USERNAME`` / ``MLFLOW_AUTH_ADMIN_PASSWORD`` (jobs log in as that user), a sqlite backend
store, and artifacts proxied by the server (``--serve-artifacts``) to ``--artifacts-destination s3://...``, here
the moto S3 server of :mod:`helpers.s3`. MLflow 3.17's auth app also needs ``MLFLOW_FLASK_SERVER_SECRET_KEY``
(CSRF) and Flask-WTF (``mlflow[auth]``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .ports import free_port, stop_process, wait_for_port
from .s3 import S3Server

USERNAME = "llm-emf"          # cluster.yaml: MLFLOW_AUTH_ADMIN_USERNAME=llm-emf, the user every node logs in as


def auth_app_missing() -> str | None:
    """Why the basic-auth app cannot start here (a reason for pytest.skip), or None."""
    try:
        import flask_wtf  # noqa: F401
    except ImportError:
        return "MLflow's basic-auth app needs Flask-WTF (pip install 'mlflow[auth]')"
    return None


@dataclass
class MlflowServer:
    uri: str
    username: str
    password: str
    bucket: str                # the S3 bucket holding artifacts
    artifacts_prefix: str      # key prefix of artifacts in the bucket
    process: subprocess.Popen
    log: Path

    @property
    def artifacts_destination(self) -> str:
        return f"s3://{self.bucket}/{self.artifacts_prefix}"

    @property
    def env(self) -> dict[str, str]:
        """What a client (a job, a trial, a test) needs to log to this server as ``llm-emf``."""
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_TRACKING_USERNAME": self.username,
                "MLFLOW_TRACKING_PASSWORD": self.password}

    def stop(self) -> None:
        stop_process(self.process)


def start_mlflow_server(root: Path, s3: S3Server, bucket: str | None = None,
                        artifacts_prefix: str = "mlartifacts", workers: int = 1,
                        timeout_s: float = 120) -> MlflowServer:
    """Start ``mlflow server`` with basic auth, sqlite under ``root`` and artifacts in ``s3://<bucket>/<prefix>``
    (a fresh bucket unless ``bucket``); returns once it answers ``/health``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    bucket = bucket or s3.create_bucket()
    password = secrets.token_urlsafe(24)
    auth_dir = root / "mlflow-auth"
    auth_dir.mkdir(exist_ok=True)
    ini = auth_dir / "basic_auth.ini"
    # cluster.yaml's file, plus a credential cache: without it every request re-hashes the password (PBKDF2,
    # ~1 s per request on 2 busy cores), which makes a job's per-epoch logging crawl.
    ini.write_text(f"[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
                   f"database_uri = sqlite:///{auth_dir / 'users.db'}\nauth_cache_ttl_seconds = 300\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update(s3.env)
    env.update(MLFLOW_AUTH_CONFIG_PATH=str(ini), MLFLOW_AUTH_ADMIN_USERNAME=USERNAME,
               MLFLOW_AUTH_ADMIN_PASSWORD=password, MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16))
    mlflow = Path(sys.executable).with_name("mlflow")
    cmd = [str(mlflow) if mlflow.exists() else sys.executable, *([] if mlflow.exists() else ["-m", "mlflow"]),
           "server", "--app-name", "basic-auth", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--serve-artifacts", "--artifacts-destination", f"s3://{bucket}/{artifacts_prefix}"]
    log = root / "mlflow_server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=root, start_new_session=True)
    server = MlflowServer(f"http://127.0.0.1:{port}", USERNAME, password, bucket, artifacts_prefix, proc, log)
    try:
        deadline = time.monotonic() + timeout_s
        wait_for_port(port, timeout_s, proc, "mlflow server")
        while True:       # the port opens before the app (and its auth store) is ready
            try:
                with urllib.request.urlopen(f"{server.uri}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not become healthy:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
    except BaseException:
        server.stop()
        raise
    return server
