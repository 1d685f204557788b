"""Where runs are tracked: URI resolution, the artifact root of new experiments, a quick reachability probe."""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from llm_emf.config.redact import has_redacted_password, redact_uri, strip_userinfo

SQLITE_PREFIX = "sqlite:///"
DEFAULT_DB_NAME = "mlflow.db"


def _tracking_section(cfg):
    """Accept the whole Config or just its TrackingConfig."""
    return getattr(cfg, "tracking", cfg)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other URI (and for in-memory sqlite)."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    rest = uri[len(SQLITE_PREFIX):].split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest)


def resolve_tracking_uri(cfg) -> str:
    """``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``.

    Relative sqlite paths are made absolute here, once: Ray workers and Tune trials run in other
    directories, so pass the resolved URI (``Tracker.uri``) to them rather than the raw config value.
    """
    uri = _tracking_section(cfg).uri.strip() or os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if has_redacted_password(uri) and os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        # a config read back from a saved config.yaml: MLflow takes the credentials from its env variables
        uri = strip_userinfo(uri)
    if not uri:
        return SQLITE_PREFIX + str(Path.cwd() / DEFAULT_DB_NAME)
    db = sqlite_path(uri)
    if db is not None and not db.is_absolute():
        query = uri.split("?", 1)[1] if "?" in uri else ""
        uri = SQLITE_PREFIX + str(db.resolve()) + (f"?{query}" if query else "")
    return uri


def credentials_problem(uri: str) -> str | None:
    """Why ``uri`` cannot authenticate, or None: a password redacted on saving cannot be sent."""
    if not has_redacted_password(uri):
        return None
    return (f"tracking URI {redact_uri(uri)} carries a redacted password (configs are saved without secrets): "
            "expected the real password in tracking.uri, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
            "in the environment; found neither")


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def artifact_root(cfg, uri: str) -> str | None:
    """Artifact location for a new experiment: ``tracking.artifact_root``, else ``mlartifacts/<experiment>`` beside the
    sqlite file (MLflow's own default is ``./mlruns`` under whatever the cwd is), else None (server decides)."""
    configured = _tracking_section(cfg).artifact_root.strip()
    if configured:
        return configured if "://" in configured else Path(configured).resolve().as_uri()
    db = sqlite_path(uri)
    if db is not None:
        folder = re.sub(r"[^\w.-]", "_", _tracking_section(cfg).experiment) or "default"
        return (db.resolve().parent / "mlartifacts" / folder).as_uri()
    return None


def probe_server(uri: str, timeout_s: float) -> str | None:
    """None when an http(s) tracking server answers within ``timeout_s``; else why it did not.

    Any HTTP answer (even 404 from a server without ``/health``) counts as reachable; only connection
    errors and timeouts do not. Non-HTTP URIs are not probed.
    """
    if not is_http(uri):
        return None
    try:
        # /health needs no login, and urllib would take 'user:password@host' for a host name
        with urllib.request.urlopen(strip_userinfo(uri).rstrip("/") + "/health", timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return redact_uri(f"no answer within {timeout_s:g} s ({type(reason).__name__}: {reason})")


def limit_http_retries(timeout_s: float) -> None:
    """MLflow retries HTTP requests with backoff for minutes by default; keep a dead server from stalling
    training. Values the user already set win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(5, int(round(timeout_s * 3)))))
