"""What MLflow itself prints holds no password (issue 24, item 5).

With ``tracking.uri=http://user:password@host`` MLflow's client prints "View run <name> at: <uri>/#/..." when a
run ends. The Tracker keeps the credentials out of the URI MLflow sees (they travel as MLFLOW_TRACKING_USERNAME /
MLFLOW_TRACKING_PASSWORD, never overwriting ones the user set), and redacts MLflow's printing where they cannot
be moved. The server here is MLflow's own tracking app, in this process on 127.0.0.1, behind a check that every
API call carries the expected basic-auth login: the credentials still reach the server.
"""

from __future__ import annotations

import base64
import threading

import pytest

from llm_emf.config import load_config
from llm_emf.tracking import Tracker

USERNAME_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"

pytestmark = pytest.mark.integration

USER, PASSWORD = "alice", "s3cr@t"             # '@' travels percent-escaped in the URI
IN_URI = "alice:s3cr%40t"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """MLflow's tracking server app on a free port; yields (port, logins seen per API path, accepted logins)."""
    from mlflow.server import app, handlers
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from werkzeug.serving import make_server

    root = tmp_path_factory.mktemp("mlflow-server")
    store = SqlAlchemyStore(f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts"))
    accepted = {f"{USER}:{PASSWORD}"}
    seen: list[tuple[str, str]] = []

    def check_login(environ, start_response):
        header = environ.get("HTTP_AUTHORIZATION", "")
        login = base64.b64decode(header[6:]).decode() if header.startswith("Basic ") else ""
        seen.append((environ["PATH_INFO"], login))
        if environ["PATH_INFO"] != "/health" and login not in accepted:
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"login required"]
        return app.wsgi_app(environ, start_response)

    previous = handlers._tracking_store
    handlers._tracking_store = store            # what `mlflow server --backend-store-uri` sets up
    httpd = make_server("127.0.0.1", 0, check_login, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_port, seen, accepted
    httpd.shutdown()
    handlers._tracking_store = previous


@pytest.fixture
def no_mlflow_login(monkeypatch):
    """No login in the environment before the test; whatever the test sets is removed afterwards."""
    monkeypatch.delenv(USERNAME_ENV, raising=False)
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


def _run(uri: str, name: str) -> Tracker:
    cfg = load_config(overrides=[f"tracking.uri={uri}", "tracking.experiment=output", "tracking.timeout_s=10"])
    with Tracker(cfg, name) as tr:
        tr.log_metrics({"MRR": 0.5})
    return tr


def test_the_end_of_run_line_shows_no_password(server, no_mlflow_login, capfd):
    port, seen, _ = server
    seen.clear()
    tr = _run(f"http://{IN_URI}@127.0.0.1:{port}", "no-password")
    out, err = capfd.readouterr()
    assert tr.error is None, tr.error
    assert f"View run no-password at: http://127.0.0.1:{port}/#/experiments/" in out, out
    assert "s3cr" not in out + err and IN_URI not in out + err
    api = [login for path, login in seen if path.startswith("/api/")]
    assert api and all(login == f"{USER}:{PASSWORD}" for login in api)     # the login still reaches the server
    assert tr.uri == f"http://{IN_URI}@127.0.0.1:{port}"                  # trials and children get the real URI


def test_a_login_the_user_set_is_not_overwritten(server, monkeypatch, capfd):
    port, seen, accepted = server
    monkeypatch.setenv(USERNAME_ENV, "bob")
    monkeypatch.setenv(PASSWORD_ENV, "bobs-password")
    uri = f"http://{IN_URI}@127.0.0.1:{port}"
    from llm_emf.tracking.uri import client_uri
    assert client_uri(uri) == uri                  # another login in the environment: the URI keeps its own
    seen.clear()
    tr = _run(uri, "user-login")
    out, err = capfd.readouterr()
    assert tr.error is None, tr.error
    import os
    assert (os.environ[USERNAME_ENV], os.environ[PASSWORD_ENV]) == ("bob", "bobs-password")
    assert f"View run user-login at: http://{USER}:***@127.0.0.1:{port}/#/experiments/" in out, out
    assert "s3cr" not in out + err


def test_the_same_login_in_the_environment_is_used_as_is(server, monkeypatch, capfd):
    port, _, _ = server
    monkeypatch.setenv(USERNAME_ENV, USER)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    tr = _run(f"http://{IN_URI}@127.0.0.1:{port}", "same-login")
    out, err = capfd.readouterr()
    assert tr.error is None and f"at: http://127.0.0.1:{port}/#/" in out and "s3cr" not in out + err


def test_a_lone_token_is_redacted_in_what_mlflow_prints(server, no_mlflow_login, capfd):
    port, _, accepted = server
    accepted.add("")              # requests sends no login for a lone TOKEN@ (nor did it before): only the print
    try:
        tr = _run(f"http://tok-123456@127.0.0.1:{port}", "token")
    finally:
        accepted.discard("")
    out, err = capfd.readouterr()
    assert tr.error is None, tr.error
    assert f"View run token at: http://***@127.0.0.1:{port}/#/experiments/" in out, out
    assert "tok-123456" not in out + err


def test_client_uri_moves_credentials_to_the_environment(no_mlflow_login):
    import os

    from llm_emf.tracking.uri import client_uri

    assert client_uri("http://h:5000") == "http://h:5000" and USERNAME_ENV not in os.environ
    assert client_uri("sqlite:///x.db") == "sqlite:///x.db"
    assert client_uri("http://u:***@h") == "http://u:***@h"          # redacted: nothing to move
    assert client_uri(f"https://{IN_URI}@h:1/p?q=1") == "https://h:1/p?q=1"
    assert (os.environ[USERNAME_ENV], os.environ[PASSWORD_ENV]) == (USER, PASSWORD)
