"""How the stage-1 jobs run their model actors on Ray Data: bounded retries when an actor's process dies, and
the test-only fault point that kills one on purpose."""

from __future__ import annotations

import os
import warnings

# Ray Data's actor pools default to unlimited actor restarts *and* unlimited task retries, so a batch that kills
# its actor every time (an input that segfaults a kernel, an OOM) would be retried forever. A one-off crash is
# retried on the restarted actor; a batch that crashes it 1 + 3 times fails the job (finished parts are kept).
ACTOR_FAULT_TOLERANCE = {"max_restarts": -1, "max_task_retries": 3}


def map_batches_on_actors(ds, fn, **kwargs):
    """``ds.map_batches(fn, **kwargs)`` on an actor pool with ACTOR_FAULT_TOLERANCE. Ray 2.60 has no named
    parameter for actor restarts / task retries, only the deprecated ``**ray_remote_args``; its deprecation
    warning is silenced here, the one place that passes them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return ds.map_batches(fn, **kwargs, **ACTOR_FAULT_TOLERANCE)


# TEST-ONLY fault injection, off unless this variable names a marker file (tests/reliability sets it).
FAULT_ACTOR_EXIT_ONCE = "LLM_EMF_FAULT_ACTOR_EXIT_ONCE"


def fault_point() -> None:
    """Test-only: the first actor call that creates the marker file named by $LLM_EMF_FAULT_ACTOR_EXIT_ONCE
    kills its own process, as a segfault or the OOM killer would. Later calls (and every run without the
    variable) do nothing."""
    marker = os.environ.get(FAULT_ACTOR_EXIT_ONCE)
    if not marker:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(1)
