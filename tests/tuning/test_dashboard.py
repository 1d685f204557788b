"""`llm-emf tune` on a local Ray: the dashboard listens on 127.0.0.1, its address is printed once, it answers
while the sweep runs, and Ray's token authentication stays on (the API behind the page wants the token).

The rest of the suite turns the dashboard off (LLM_EMF_RAY_DASHBOARD=0 in tests/conftest.py); this test runs
the command the way a user does, as its own process, with the dashboard on (the default)."""

from __future__ import annotations

import os
import queue
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from llm_emf.config import load_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _get(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_the_dashboard_answers_during_a_local_sweep(tmp_path):
    from llm_emf.data.prepare import prepare_dataset

    dataset = tmp_path / "sample"
    prepare_dataset(load_config(None, ["data.source=sample", f"data.dataset={dataset}"]))
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {**os.environ, "RAY_AUTH_TOKEN_PATH": str(token)}
    for name in ("LLM_EMF_RAY_DASHBOARD", "RAY_ADDRESS", "RAY_AUTH_MODE"):   # the defaults a user has
        env.pop(name, None)
    cmd = [str(Path(sys.executable).parent / "llm-emf"), "tune", "--space", str(ROOT / "tune_spaces/attention.yaml"),
           f"data.dataset={dataset}", f"tune.storage={tmp_path / 'tune'}", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}",
           "tune.num_samples=2", "tune.cpus_per_trial=1", "model.hidden_size=16", "train.epochs=2",
           "train.batch_size=64", "eval.n_negatives=49", "eval.protocol=sampled", "train.select_protocol=sampled"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, env=env, cwd=tmp_path)
    lines: queue.Queue = queue.Queue()
    output: list[str] = []

    def pump():
        for line in proc.stdout:
            output.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        url, deadline = None, time.time() + 180
        while url is None and time.time() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            m = re.match(r"Ray dashboard: (http://\S+)", line)
            url = m.group(1) if m else None
        assert url, "".join(output)[-3000:]
        assert url.startswith("http://127.0.0.1:")
        assert _get(url + "/") == 200                                   # the page (it asks for the token)
        assert _get(url + "/api/jobs/") == 401                          # token authentication on
        assert _get(url + "/api/jobs/", token.read_text()) == 200
        assert proc.poll() is None, "the sweep ended before the dashboard was checked"
        assert proc.wait(timeout=600) == 0, "".join(output)[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(output)
    assert text.count("Ray dashboard:") == 1
    assert "View the dashboard at" not in text                          # Ray's own line is not repeated
    assert "sweep " in text and "2 trials" in text
