"""Where runs are tracked: URI resolution, the artifact root of new experiments, a quick reachability probe."""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.parse
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
    """``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db`` (a pipeline run
    sets ``tracking.uri`` from :func:`pipeline_tracking_uri` first: its default lives under pipeline.storage).

    Relative sqlite paths are made absolute here, once: Ray workers and Tune trials run in other
    directories, so pass the resolved URI (``Tracker.uri``) to them rather than the raw config value.
    """
    uri = explicit_tracking_uri(cfg)
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


def explicit_tracking_uri(cfg) -> str:
    """``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else empty: the store the user named, if any."""
    return _tracking_section(cfg).uri.strip() or os.environ.get("MLFLOW_TRACKING_URI", "").strip()


def pipeline_tracking_uri(cfg, n_nodes: int = 1, job_dir: Path | None = None) -> str:
    """The MLflow store of a pipeline run (``llm-emf run``, ``python -m workflows.pipeline``).

    A store the user named (``tracking.uri``, ``$MLFLOW_TRACKING_URI``) wins, as everywhere. Otherwise the
    records live with the outputs they describe: ``sqlite:///<pipeline.storage>/mlflow.db``, never in the
    working directory, which for ``ray job submit --working-dir`` is Ray's temporary package folder, deleted
    with the job. Refused with a ``StorageError`` naming what to set, where that store would not last or not
    be seen: a node-local ``pipeline.storage`` on a multi-node cluster; one inside the job's working_dir
    (``job_dir``; e.g. a relative path in a job); an object store (sqlite cannot live there) in a job or on
    a multi-node cluster. A plain local run with an object-store ``pipeline.storage`` keeps the
    ``<cwd>/mlflow.db`` of the other commands.
    """
    from llm_emf.storage import StorageError, is_remote, is_shared_path

    if explicit_tracking_uri(cfg):
        return resolve_tracking_uri(cfg)
    storage = cfg.pipeline.storage
    fix = ("set tracking.uri (or MLFLOW_TRACKING_URI) to an MLflow server, e.g. the one cluster.yaml starts on the "
           "head")
    if is_remote(storage):
        if n_nodes <= 1 and job_dir is None:
            return resolve_tracking_uri(cfg)
        where = "inside a Ray job" if job_dir is not None else f"on a {n_nodes}-node Ray cluster"
        raise StorageError(
            f"tracking: no tracking.uri or MLFLOW_TRACKING_URI, and pipeline.storage '{storage}' is an object store, "
            f"where MLflow's default sqlite store cannot live; {where} the working directory is no place for it "
            f"either: {fix}, or pipeline.storage to a shared filesystem path")
    db = Path(storage).absolute() / DEFAULT_DB_NAME
    if n_nodes > 1 and not is_shared_path(storage):
        raise StorageError(
            f"tracking: no tracking.uri or MLFLOW_TRACKING_URI, and the default store {db} lies under "
            f"pipeline.storage '{storage}', a node-local path on a {n_nodes}-node Ray cluster (trials and "
            f"resubmitted jobs on other nodes would not see it): {fix}, or pipeline.storage to a shared "
            f"filesystem path (NFS, EFS, Lustre; LLM_EMF_SHARED_FS=1 if it is shared in a way not detected)")
    if job_dir is not None and db.resolve().is_relative_to(Path(job_dir).resolve()):
        raise StorageError(
            f"tracking: no tracking.uri or MLFLOW_TRACKING_URI, and the default store {db} lies under "
            f"pipeline.storage '{storage}', inside this Ray job's working_dir {job_dir}, which Ray deletes with "
            f"the job (stage outputs too): set pipeline.storage to an absolute path outside it, a shared "
            f"filesystem path or an s3:// / gs:// URI, or {fix}")
    return SQLITE_PREFIX + str(db)


def credentials_problem(uri: str) -> str | None:
    """Why ``uri`` cannot authenticate, or None: a password redacted on saving cannot be sent."""
    if not has_redacted_password(uri):
        return None
    return (f"tracking URI {redact_uri(uri)} carries a redacted password (configs are saved without secrets): "
            "expected the real password in tracking.uri, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
            "in the environment; found neither")


USERNAME_ENV, PASSWORD_ENV = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"


def split_credentials(uri: str) -> tuple[str, str, str] | None:
    """``(uri without userinfo, user, password)`` for ``http(s)://user:password@host...`` (percent-escapes
    decoded, as a browser or requests sends them); None for any other URI, a lone ``TOKEN@`` and a password
    already redacted."""
    if not is_http(uri.strip()) or has_redacted_password(uri):
        return None
    scheme, _, rest = uri.strip().partition("://")
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" not in netloc:
        return None
    user, has_password, password = netloc.rsplit("@", 1)[0].partition(":")
    if not has_password or not user:
        return None
    return strip_userinfo(uri), urllib.parse.unquote(user), urllib.parse.unquote(password)


def client_uri(uri: str) -> str:
    """The URI to give MLflow for ``uri``: credentials kept out of it, so nothing MLflow prints or raises (its
    "View run ... at: <uri>" line at the end of a run, its errors) can show the password.

    ``http://user:password@host`` becomes ``http://host``, and the credentials go where MLflow's client reads
    them for every request: ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` in this process's
    environment (Ray workers started later inherit them, as they inherit the config holding the URI). Variables
    the user set are never overwritten: when they already hold other credentials (or only one of the two is
    set) the URI is returned unchanged, and so is any URI without a user and password; the Tracker then
    redacts what MLflow prints (``tracker.redacting_stdout``)."""
    parts = split_credentials(uri)
    if parts is None:
        return uri
    bare, user, password = parts
    have = (os.environ.get(USERNAME_ENV), os.environ.get(PASSWORD_ENV))
    if have == (None, None):
        os.environ[USERNAME_ENV], os.environ[PASSWORD_ENV] = user, password
        return bare
    return bare if have == (user, password) else uri


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
