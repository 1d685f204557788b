"""The suite's one in-process Ray: :func:`shared_local_ray`, behind the ``local_ray`` fixture (tests/conftest.py),
started by the first module that asks for it and kept for the session (a Ray start is ~10 s on 2 cores); and
:func:`free_agent_port`, applied to every Ray the test session starts.

``ray.init()`` picks free ports for everything but the dashboard agent's HTTP port, which Ray fixes at 52365:
with another Ray on the machine the agent cannot bind it and the test's Ray has no job API. The test process
gives that port a free value (llm_emf.ray_local.agent_port), and the commands it runs get
``LLM_EMF_RAY_AGENT_PORT=0``, which ensure_ray honours for every local Ray a command starts.
"""

from __future__ import annotations

import contextlib
import os

from llm_emf.ray_local import AGENT_PORT_ENV, agent_port

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@contextlib.contextmanager
def free_agent_port():
    """While active, a Ray started in this process, or by a command it runs, gives its dashboard agent a free
    port (0: the agent binds any free one, so no other process can take it first)."""
    before = os.environ.get(AGENT_PORT_ENV)
    os.environ[AGENT_PORT_ENV] = "0"
    try:
        with agent_port(0):
            yield
    finally:
        if before is None:
            os.environ.pop(AGENT_PORT_ENV, None)
        else:
            os.environ[AGENT_PORT_ENV] = before


def start_local_ray(num_cpus: int = 2, env: dict[str, str] | None = None):
    """A small Ray of this process (never a cluster left running on the machine: address="local"); workers
    get ``env`` besides the offline switches. Returns the ``ray`` module; the caller shuts it down."""
    import ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {**OFFLINE, **(env or {})}})
    return ray


_shared = {"gcs": None}           # the GCS address of the session's Ray, once started


def _gcs_address() -> str | None:
    import ray

    return ray.get_runtime_context().gcs_address if ray.is_initialized() else None


def shared_ray_is_up() -> bool:
    return _shared["gcs"] is not None and _gcs_address() == _shared["gcs"]


def shared_local_ray(env: dict[str, str] | None = None):
    """The session's Ray (:func:`start_local_ray` with ``env``), started on first use and again after a test
    shut it down. A Ray the library started by itself (``ensure_ray`` in a test without this fixture: another
    size, no test environment) is shut down first."""
    import ray

    if shared_ray_is_up():
        return ray
    if ray.is_initialized():
        ray.shutdown()
    start_local_ray(env=env)
    _shared["gcs"] = _gcs_address()
    return ray


def shutdown_unless_shared() -> None:
    """Shut down a Ray this process is connected to, unless it is the session's."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized() and not shared_ray_is_up():
        ray.shutdown()


def shutdown_shared() -> None:
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and shared_ray_is_up():
        ray.shutdown()
    _shared["gcs"] = None
