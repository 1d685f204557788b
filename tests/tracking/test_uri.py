"""Tracking URI resolution, artifact roots, the server probe, and value conversion for MLflow."""

import http.server
import math
import os
import threading

import numpy as np
import pytest

from llm_emf.config import load_config
from llm_emf.tracking.run_info import flatten_numeric, metric_key, param_value
from llm_emf.tracking.uri import artifact_root, limit_http_retries, probe_server, resolve_tracking_uri

pytestmark = pytest.mark.unit


def test_uri_precedence_config_then_env_then_sqlite_in_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(load_config()) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000")
    assert resolve_tracking_uri(load_config()) == "http://tracker:5000"
    assert resolve_tracking_uri(load_config(overrides=["tracking.uri=http://other:80"])) == "http://other:80"


def test_relative_sqlite_path_is_made_absolute(monkeypatch, tmp_path):
    """Tune trials run in other folders: a relative path must not point somewhere else there."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config(overrides=["tracking.uri=sqlite:///runs/m.db"])
    assert resolve_tracking_uri(cfg) == f"sqlite:///{tmp_path}/runs/m.db"
    assert resolve_tracking_uri(load_config(overrides=["tracking.uri=sqlite:////abs/m.db"])) == "sqlite:////abs/m.db"


def test_artifact_root_sits_beside_the_sqlite_file(tmp_path):
    cfg = load_config(overrides=["tracking.experiment=my exp/1"])
    assert artifact_root(cfg, f"sqlite:///{tmp_path}/m.db") == (tmp_path / "mlartifacts" / "my_exp_1").as_uri()
    assert artifact_root(cfg, "http://host:5000") is None
    cfg = load_config(overrides=["tracking.artifact_root=s3://bucket/art"])
    assert artifact_root(cfg, f"sqlite:///{tmp_path}/m.db") == "s3://bucket/art"


def test_probe_reports_a_dead_server_and_accepts_any_http_answer():
    assert "ConnectionRefusedError" in probe_server("http://127.0.0.1:9", 2.0)
    assert probe_server("sqlite:////tmp/x.db", 2.0) is None          # not a server: nothing to probe

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert probe_server(f"http://127.0.0.1:{server.server_port}", 2.0) is None
    finally:
        server.shutdown()
        server.server_close()


def test_http_retries_are_limited_unless_the_user_set_them(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "42")
    limit_http_retries(3.0)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1" and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "42"


def test_param_values_and_metric_keys():
    assert param_value([1, 5, 10]) == "[1, 5, 10]" and param_value({"b": 1, "a": 2}) == '{"a": 2, "b": 1}'
    assert param_value(True) == "True" and param_value("x" * 20, limit=100) == "x" * 20
    cut = param_value("y" * 500, limit=100)
    assert len(cut) == 100 and cut.endswith("config.yaml]") and "from 500 chars" in cut
    assert metric_key("valid/full/Food/NDCG@10") == "valid/full/Food/NDCG_at_10"
    assert metric_key("a(b)%") == "a_b__"


def test_flatten_numeric_keeps_numbers_and_skips_the_rest():
    row = {"epoch": 2, "loss": np.float32(0.5), "ok": True, "name": "x", "none": None, "t": np.int64(3),
           "valid": {"X": {"MRR": float("nan")}}, "arr": np.array(1.5)}
    flat = flatten_numeric(row)
    assert set(flat) == {"epoch", "loss", "t", "valid/X/MRR", "arr"}
    assert flat["loss"] == 0.5 and flat["t"] == 3.0 and flat["arr"] == 1.5
    assert math.isnan(flat["valid/X/MRR"])       # NaN is kept: MLflow stores it, and it means "no cases"
