"""How the stage-1 jobs run their model actors on Ray Data: bounded retries when an actor's process dies, and
the hook point every actor calls before each batch (tests inject faults through it)."""

from __future__ import annotations

import importlib
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


# Off unless this variable names a function as "module:function" (tests/faults.py sets it to kill an actor).
ACTOR_HOOK = "LLM_EMF_ACTOR_HOOK"


def fault_point() -> None:
    """The actor hook point: calls the function named by $LLM_EMF_ACTOR_HOOK ("module:function", imported in
    the actor's process, no arguments) if the variable is set; without it (every run but tests) does nothing."""
    target = os.environ.get(ACTOR_HOOK)
    if target:
        module, _, name = target.partition(":")
        getattr(importlib.import_module(module), name)()
