"""``llm-emf ui``: localhost by default, for the resolved store; it really serves and stops cleanly."""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

from helpers.ports import free_port
from mlflow import MlflowClient

from llm_emf.cli import ui
from llm_emf.config import load_config
from llm_emf.tracking import Tracker, TrackingWarning


def _args(*argv):
    parser = argparse.ArgumentParser()
    ui.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.unit
def test_defaults_bind_localhost_and_use_the_resolved_store(tmp_path):
    args = _args()
    assert (args.host, args.port, args.workers) == ("127.0.0.1", 5000, 1)
    cfg = load_config(overrides=[f"tracking.uri=sqlite:///{tmp_path}/m.db"])
    cmd = ui.server_command(cfg, args.host, args.port)
    assert cmd[1:4] == ["-m", "mlflow", "ui"]
    options = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i].startswith("--")}
    assert options["--backend-store-uri"] == f"sqlite:///{tmp_path}/m.db"
    assert options["--host"] == "127.0.0.1" and options["--port"] == "5000"
    assert options["--default-artifact-root"] == (tmp_path / "mlartifacts" / "llm-emf").as_uri()


@pytest.mark.unit
def test_a_server_uri_is_not_served_again(capsys):
    cfg = load_config(overrides=["tracking.uri=http://127.0.0.1:9"])
    assert ui.run(cfg, _args()) == 0
    assert "already a server" in capsys.readouterr().out



def _listening_addresses(port):
    """Local IPv4 addresses listening on ``port``, from /proc/net/tcp (state 0A = LISTEN)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, p = local.split(":")
        if state == "0A" and int(p, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return found


def _log_a_run_over_http(uri):
    """The Tracker against a live server: no warning, the run readable through the same server."""
    cfg = load_config(overrides=[f"tracking.uri={uri}", "tracking.experiment=via-http"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackingWarning)
        with Tracker(cfg, "http-run", log_config=False) as tr:
            tr.log_history([{"epoch": 1, "loss": 0.7}, {"epoch": 2, "loss": 0.6}])
    assert tr.error is None
    history = MlflowClient(tracking_uri=uri).get_metric_history(tr.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.7), (2, 0.6)]


@pytest.mark.integration
def test_ui_serves_on_127_0_0_1_and_stops_on_sigterm(tmp_path):
    port = free_port()
    cli = Path(sys.executable).with_name("llm-emf")
    cmd = [str(cli)] if cli.exists() else [sys.executable, "-m", "llm_emf.cli.main"]
    proc = subprocess.Popen([*cmd, "ui", "--port", str(port), f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            start_new_session=True)   # its own process group: cleanup cannot miss a worker
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    status = r.status
                break
            except OSError:
                time.sleep(0.5)
        assert status == 200, f"no answer on port {port}; exit code {proc.poll()}"
        if Path("/proc/net/tcp").exists():
            assert _listening_addresses(port) == {"127.0.0.1"}
        _log_a_run_over_http(f"http://127.0.0.1:{port}")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out[-3000:]
        assert f"http://127.0.0.1:{port}" in out
        assert not _listening_addresses(port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
