"""The suite's one way to start an in-process Ray: :func:`start_local_ray`, used by the ``local_ray`` fixture
(tests/conftest.py), and :func:`free_agent_port`, applied to every Ray the test process starts.

``ray.init()`` picks free ports for everything but the dashboard agent's HTTP port, which Ray fixes at 52365:
with another Ray on the machine the agent cannot bind it and the test's Ray has no job agent. The test process
gives that port a free value too (Ray's RayParams has the field; ray.init() does not expose it).
"""

from __future__ import annotations

import contextlib
import os

from .ports import free_port

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@contextlib.contextmanager
def free_agent_port():
    """While active, a Ray started in this process listens for its dashboard agent on a free port."""
    from ray._private import parameter, ray_constants

    original = parameter.RayParams.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self.dashboard_agent_listen_port == ray_constants.DEFAULT_DASHBOARD_AGENT_LISTEN_PORT:
            self.dashboard_agent_listen_port = free_port()

    parameter.RayParams.__init__ = init
    try:
        yield
    finally:
        parameter.RayParams.__init__ = original


def start_local_ray(num_cpus: int = 2, env: dict[str, str] | None = None):
    """A small Ray of this process (never a cluster left running on the machine: address="local"); workers
    get ``env`` besides the offline switches. Returns the ``ray`` module; the caller shuts it down."""
    import ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {**OFFLINE, **(env or {})}})
    return ray
