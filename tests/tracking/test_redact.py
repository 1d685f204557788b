"""A password in tracking.uri reaches no warning, saved config, results or MLflow param; connecting still works."""

import http.server
import json
import socket
import threading
import warnings
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from llm_emf.config import flatten_config, load_config, redact_uri, save_config
from llm_emf.tracking import Tracker, TrackingWarning
from llm_emf.tracking.uri import probe_server, resolve_tracking_uri

pytestmark = pytest.mark.unit
SECRET_URI = "http://alice:s3cr%40t@tracker.internal:5000"
SHOWN_URI = "http://alice:***@tracker.internal:5000"


@pytest.mark.parametrize("text, shown", [
    (SECRET_URI, SHOWN_URI),
    ("https://bob:p@ss:w@host/path?q=1", "https://bob:***@host/path?q=1"),    # raw '@' and ':' in the password
    ("https://ghp_TOKEN@github.com/x.git", "https://***@github.com/x.git"),   # a lone userinfo is the token
    (f"API request to {SECRET_URI}/api/2.0/runs failed", f"API request to {SHOWN_URI}/api/2.0/runs failed"),
    ("http://tracker:5000", "http://tracker:5000"),
    ("sqlite:////abs/mlflow.db", "sqlite:////abs/mlflow.db"),
    ("mail me at a@b.c", "mail me at a@b.c"),
])
def test_redact_uri(text, shown):
    assert redact_uri(text) == shown


def test_saved_config_and_flattened_config_hold_no_password(tmp_path):
    cfg = load_config(overrides=[f"tracking.uri={SECRET_URI}"])
    text = Path(save_config(cfg, tmp_path / "config.yaml")).read_text()
    assert "s3cr" not in text and yaml.safe_load(text)["tracking"]["uri"] == SHOWN_URI
    # flatten_config is what results.json ("config") and the MLflow params record
    assert flatten_config(cfg)["tracking.uri"] == SHOWN_URI
    assert cfg.tracking.uri == SECRET_URI and resolve_tracking_uri(cfg) == SECRET_URI   # still used to connect


@pytest.mark.integration          # a real MLflow store (sqlite, created with its migrations)
def test_mlflow_params_tags_and_artifacts_hold_no_password(store_uri, tmp_path):
    cfg = load_config(overrides=[f"tracking.uri={SECRET_URI}", "tracking.experiment=redact"])
    with Tracker(cfg, "secret", uri=store_uri) as tr:
        tr.log_results({"tracking_uri": SECRET_URI, "MRR": 0.5})
        tr.set_tags({"failure": f"ConnectionError: {SECRET_URI}/api refused"})
    assert tr.error is None
    client = MlflowClient(tracking_uri=store_uri)
    run = client.get_run(tr.run_id)
    assert run.data.params["tracking.uri"] == SHOWN_URI
    assert run.data.tags["failure"] == f"ConnectionError: {SHOWN_URI}/api refused"
    for name in ("config.yaml", "results.json"):
        text = Path(client.download_artifacts(tr.run_id, name, str(tmp_path))).read_text()
        assert "s3cr" not in text and SHOWN_URI in text, name
    assert json.loads((tmp_path / "results.json").read_text())["tracking_uri"] == SHOWN_URI


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_store_warning_names_the_redacted_uri():
    uri = f"http://alice:s3cret@127.0.0.1:{_closed_port()}"
    cfg = load_config(overrides=[f"tracking.uri={uri}", "tracking.timeout_s=1"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tr = Tracker(cfg, "down").start()
    text = " ".join(str(w.message) for w in caught if issubclass(w.category, TrackingWarning))
    assert "MLflow tracking at http://alice:***@127.0.0.1" in text
    assert "s3cret" not in text and "s3cret" not in tr.error
    assert tr.uri == uri          # the real URI is kept for connecting


@pytest.fixture
def health_server():
    paths = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            paths.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], paths
    server.shutdown()


def test_probe_reaches_a_server_whose_uri_carries_credentials(health_server):
    """urllib took 'alice:s3cret@127.0.0.1' for a host name, so a URI with credentials never connected."""
    port, paths = health_server
    assert probe_server(f"http://alice:s3cret@127.0.0.1:{port}", 2) is None
    assert paths == ["/health"]


def test_a_config_saved_without_its_password_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    saved = save_config(load_config(overrides=[f"tracking.uri={SECRET_URI}"]), tmp_path / "config.yaml")
    cfg = load_config(saved)
    expected = (r"carries a redacted password .* expected the real password in tracking.uri, or "
                r"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment; found neither")
    with pytest.warns(TrackingWarning, match=expected):
        tr = Tracker(cfg, "redacted").start()
    assert not tr.active
    # with MLflow's own credential variables set, the redacted userinfo is dropped and MLflow sends them
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cr@t")
    assert resolve_tracking_uri(cfg) == "http://tracker.internal:5000"
