"""One way into Ray for every command: join the cluster named by ``pipeline.ray_address`` or the Ray job's
own cluster, else start a local Ray whose dashboard listens on 127.0.0.1 (``pipeline.ray_dashboard``).

``tune``, ``enrich``, ``embed``, ``run`` and ``recommend --all`` all come through :func:`ensure_ray`. A local
Ray keeps Ray's token authentication on (``RAY_AUTH_MODE=token`` unless the user chose otherwise): the
dashboard page loads, but every API behind it asks for the token that ``ray get-auth-token`` prints. Its
address is printed once, on one line. ``LLM_EMF_RAY_DASHBOARD=0`` turns the dashboard off as well (the test
suite sets it, so that each local Ray it starts stays light).

Ray starts the dashboard agent of every node, dashboard or not, with its HTTP server (the job API) on the fixed
port 52365; a second Ray on the machine cannot bind it and runs without a job API. ``LLM_EMF_RAY_AGENT_PORT``
gives a local Ray started here (no address, or the address ``local``) another port (``0``: a free one,
picked when the agent binds); the test suite sets it to 0 for every command it runs.

:func:`compact_data_progress` makes Ray Data's non-TTY progress log (a ~9-line block every 10 s per running
dataset) one line per dataset per interval on the console; the full blocks still go to Ray Data's own log
file (``<session>/logs/ray-data/ray-data.log``), and a terminal keeps its progress bars.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
from pathlib import Path

DASHBOARD_HOST = "127.0.0.1"
DASHBOARD_ENV = "LLM_EMF_RAY_DASHBOARD"
AGENT_PORT_ENV = "LLM_EMF_RAY_AGENT_PORT"
_FALSE = {"0", "false", "no", "off"}


def in_ray_job() -> bool:
    """True inside a Ray job's driver (``ray job submit``) or wherever RAY_ADDRESS names a cluster."""
    return bool(os.environ.get("RAY_ADDRESS") or os.environ.get("RAY_JOB_ID"))


def job_working_dir() -> Path | None:
    """The folder a Ray job's driver runs in when the job shipped a ``working_dir`` (Ray's temporary package
    folder, deleted with the job), else None."""
    try:
        job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "") or "{}")
    except ValueError:
        return None
    runtime_env = job.get("runtime_env") if isinstance(job, dict) else None
    if isinstance(runtime_env, dict) and runtime_env.get("working_dir"):
        return Path.cwd()
    return None


def dashboard_wanted(enabled: bool = True) -> bool:
    """The config switch, unless ``LLM_EMF_RAY_DASHBOARD`` says off."""
    return bool(enabled) and os.environ.get(DASHBOARD_ENV, "1").strip().lower() not in _FALSE


def agent_port_wanted() -> int | None:
    """The dashboard agent's HTTP port that ``LLM_EMF_RAY_AGENT_PORT`` asks for (0: any free one), or None when
    it is unset or empty (Ray's default, 52365)."""
    text = os.environ.get(AGENT_PORT_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"environment variable {AGENT_PORT_ENV}: expected a port number in [0, 65535] "
                         f"(0: a free one), found {text!r}")
    return int(text)


@contextlib.contextmanager
def agent_port(port: int | None):
    """While active, a Ray started in this process gives its dashboard agent's HTTP server ``port`` (0: a free
    one) instead of Ray's default; None changes nothing. ray.init() has no argument for that port, so the
    default of Ray's start-up parameters (RayParams) is replaced for the duration."""
    if port is None:
        yield
        return
    from ray._private import parameter, ray_constants

    original = parameter.RayParams.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self.dashboard_agent_listen_port == ray_constants.DEFAULT_DASHBOARD_AGENT_LISTEN_PORT:
            self.dashboard_agent_listen_port = port

    parameter.RayParams.__init__ = init
    try:
        yield
    finally:
        parameter.RayParams.__init__ = original


@contextlib.contextmanager
def _quiet(logger_name: str):
    """Hold back one logger's INFO and WARNING lines while Ray starts (its 'Started a local Ray instance. View
    the dashboard at' line, in ANSI colours): the address is printed once, by us; errors still show."""
    lg = logging.getLogger(logger_name)
    before = lg.level
    lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        lg.setLevel(before)


def ensure_ray(address: str = "", dashboard: bool = True, out=None, **init_kwargs) -> str | None:
    """Connect this process to Ray once; returns the dashboard URL of a local Ray started here, else None.

    ``address``: a cluster to join (``pipeline.ray_address``). Inside a Ray job (or with RAY_ADDRESS set)
    ``ray.init()`` joins that cluster, whose dashboard is the cluster's business. Otherwise a local Ray is
    started with its dashboard on 127.0.0.1 when ``dashboard`` (and ``LLM_EMF_RAY_DASHBOARD``) allow it.
    ``init_kwargs`` go to ``ray.init`` for a local start only (e.g. ``num_cpus``).
    """
    import ray

    compact_data_progress()
    if ray.is_initialized():
        return None
    port = agent_port_wanted()
    if address:
        with agent_port(port if address.strip() == "local" else None):      # "local": a new local Ray
            ray.init(address=address, log_to_driver=False)
        return None
    if in_ray_job():
        # joins the cluster the job was submitted to (RAY_ADDRESS=local: starts a new local Ray)
        with agent_port(port if os.environ.get("RAY_ADDRESS", "").strip() == "local" else None):
            ray.init(log_to_driver=False)
        return None
    on = dashboard_wanted(dashboard)
    if not on:
        with agent_port(port):
            ray.init(include_dashboard=False, log_to_driver=False, **init_kwargs)
        return None
    # Ray 2.60 turns token authentication on for a new local cluster unless RAY_AUTH_MODE says otherwise
    # (generating ~/.ray/auth_token if there is none); nothing here changes that. Its warning that it did so
    # is held back with the start-up line: the line printed below says it.
    with _quiet("ray._private.worker"), _quiet("ray._private.authentication.authentication_token_setup"), \
            agent_port(port):
        ctx = ray.init(include_dashboard=True, dashboard_host=DASHBOARD_HOST, log_to_driver=False, **init_kwargs)
    url = ctx.dashboard_url or ""
    if url and "://" not in url:
        url = "http://" + url
    print(dashboard_line(url), file=out or sys.stderr, flush=True)
    return url or None


def dashboard_line(url: str) -> str:
    """The one line that says where the dashboard is and how to log in."""
    if not url:
        return ("Ray dashboard: did not start (see the session's logs/dashboard.log); "
                "pipeline.ray_dashboard=false skips it")
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "token":      # set by ray.init when it enabled it
        login = "token authentication on: log in with the token `ray get-auth-token` prints"
    else:
        login = f"token authentication OFF (RAY_AUTH_MODE={os.environ.get('RAY_AUTH_MODE', '')})"
    return f"Ray dashboard: {url}  ({login}; pipeline.ray_dashboard=false turns it off)"


# --- Ray Data's non-TTY progress: one line per dataset per interval --------------------------------------

PROGRESS_LOGGER = "ray.data._internal.progress.logging_progress"
_BLOCK_START = re.compile(r"^=+ Running Dataset: (?P<id>\S+) =+$")
_BLOCK_END = re.compile(r"^=+$")
_COUNT = re.compile(r"^(?:- )?(?P<name>.+?): (?P<done>\d+)/(?P<total>\d+|\?)$")
_RESOURCES = "Active & requested resources: "
_MAX_BLOCK = 500      # a block that never closes is let through after this many lines


class CompactProgress(logging.Filter):
    """Folds each progress block of Ray Data's ``LoggingExecutionProgressManager`` into one console line.

    The block's own lines are marked ``hide`` (Ray Data's console handler drops them, its log file keeps
    them); the closing ``====`` line becomes ``Ray Data <dataset>: <done>/<total> rows; <operator>
    <done>/<total>; ...; <resources>``. Anything that does not look like such a block passes unchanged.
    """

    def __init__(self):
        super().__init__()
        self._blocks: dict[int, dict] = {}      # per thread: the executor logs from its own thread

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:
            return True
        tid = threading.get_ident()
        start = _BLOCK_START.match(msg)
        if start:
            self._blocks[tid] = {"id": start["id"], "total": None, "ops": [], "res": "", "n": 0}
            record.hide = True
            return True
        block = self._blocks.get(tid)
        if block is None:
            return True
        block["n"] += 1
        if _BLOCK_END.match(msg) or block["n"] > _MAX_BLOCK:
            del self._blocks[tid]
            if block["n"] > _MAX_BLOCK:
                return True
            record.msg, record.args = self.line(block), ()
            return True
        text = msg.strip()
        count = _COUNT.match(text)
        if text.startswith(_RESOURCES):
            block["res"] = text[len(_RESOURCES):]
        elif count and count["name"] == "Total Progress":
            block["total"] = f"{count['done']}/{count['total']}"
        elif count and not msg.startswith("  "):      # an operator; its indented details stay in the file
            block["ops"].append(f"{count['name']} {count['done']}/{count['total']}")
        record.hide = True
        return True

    @staticmethod
    def line(block: dict) -> str:
        parts = [f"Ray Data {block['id']}: {block['total'] or '?'} rows", *block["ops"]]
        if block["res"]:
            parts.append(block["res"])
        return "; ".join(parts)


_compact_filter: CompactProgress | None = None


def compact_data_progress() -> None:
    """Install :class:`CompactProgress` once per process (idempotent; a no-op on a terminal in effect,
    where Ray Data draws bars instead of logging blocks)."""
    global _compact_filter
    if _compact_filter is None:
        _compact_filter = CompactProgress()
        logging.getLogger(PROGRESS_LOGGER).addFilter(_compact_filter)
