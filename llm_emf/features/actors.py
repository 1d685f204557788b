"""How the stage-1 jobs run their model actors on Ray Data: bounded retries when an actor's process dies, torch
threads for actors on CPU, and the hook point every actor calls before each batch (tests inject faults through it)."""

from __future__ import annotations

import importlib
import os
import warnings

from llm_emf.jobs.stream import NODE_COLUMN

# Ray Data's actor pools default to unlimited actor restarts *and* unlimited task retries, so a batch that kills
# its actor every time (an input that segfaults a kernel, an OOM) would be retried forever. The bound is on the
# restarts: a one-off crash is retried on the restarted actor; a batch that crashes it 1 + 3 times leaves it dead
# and fails the job (finished parts are kept). Task retries stay unlimited because Ray counts every failed
# attempt to reach the actor as one: while a lost node is not yet declared dead (the GCS's health checks, ~10-30
# s), its actors' tasks fail at once and are resubmitted, and a bound of 3 was spent within a second, failing the
# job instead of waiting for the restarted actor (tests/cluster/test_pipeline_job.py). A lost node costs each of
# its actors one restart.
ACTOR_FAULT_TOLERANCE = {"max_restarts": 3, "max_task_retries": -1}


def map_batches_on_actors(ds, fn, threads: int | None = None, actors: int = 1, **kwargs):
    """``ds.map_batches(fn, **kwargs)`` on an actor pool with ACTOR_FAULT_TOLERANCE. Ray 2.60 has no named
    parameter for actor restarts / task retries, only the deprecated ``**ray_remote_args``; its deprecation
    warning is silenced here, the one place that passes them.

    ``threads`` (not None) sets each actor's torch threads before ``fn`` is constructed (:func:`actor_threads`,
    with ``actors`` the size of the pool). Every output batch gets a ``NODE_COLUMN`` naming the Ray node whose
    actor computed it: the job counts rows per node (``JobSummary.nodes``) and never stores the column.
    """
    fn = _with_node_column(fn)
    if threads is not None:
        fn = _with_threads(fn, threads, actors)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return ds.map_batches(fn, **kwargs, **ACTOR_FAULT_TOLERANCE)


def actor_threads(threads: int, actors: int) -> int:
    """Torch intra-op threads for a model actor: ``threads`` if positive; with 0 (auto), on CPU, its node's
    Ray CPUs shared among the pool's ``actors``, at least the CPUs Ray assigned it; on a GPU,
    unchanged.

    Ray sets OMP_NUM_THREADS to the actor's CPU request (1), so a lone encoder or LLM actor on an 8-core node
    computes on one core while the light stages beside it leave the rest idle; requesting more CPUs instead
    would starve those stages (their tasks wait for CPUs the actor holds).
    """
    import torch

    if threads > 0:
        return threads
    if torch.cuda.is_available():
        return torch.get_num_threads()
    import ray

    context = ray.get_runtime_context()
    assigned = context.get_assigned_resources().get("CPU", 1)
    node = next((n for n in ray.nodes() if n.get("NodeID") == context.get_node_id()), None)
    node_cpus = node["Resources"].get("CPU", assigned) if node else assigned
    return max(1, int(assigned), int(node_cpus // max(actors, 1)))


def _with_threads(cls: type, threads: int, actors: int) -> type:
    """``cls`` whose constructor first sets torch's threads to :func:`actor_threads` (same name for Ray's
    operator names and logs)."""

    class Threaded(cls):
        def __init__(self, *args, **kwargs):
            import torch

            torch.set_num_threads(actor_threads(threads, actors))
            super().__init__(*args, **kwargs)

    Threaded.__name__ = Threaded.__qualname__ = cls.__name__
    return Threaded


def _with_node_column(cls: type) -> type:
    """``cls`` whose output batches (dict of arrays or an Arrow table) carry this actor's Ray node id."""

    class OnNode(cls):
        def __call__(self, batch):
            out = super().__call__(batch)
            import numpy as np
            import pyarrow as pa
            import ray

            node = ray.get_runtime_context().get_node_id()
            if isinstance(out, pa.Table):
                return out.append_column(NODE_COLUMN, pa.array([node] * out.num_rows, pa.string()))
            out[NODE_COLUMN] = np.array([node] * len(next(iter(out.values()))), dtype=object)
            return out

    OnNode.__name__ = OnNode.__qualname__ = cls.__name__
    return OnNode


# Off unless this variable names a function as "module:function" (tests/faults.py sets it to kill an actor).
ACTOR_HOOK = "LLM_EMF_ACTOR_HOOK"


def fault_point() -> None:
    """The actor hook point: calls the function named by $LLM_EMF_ACTOR_HOOK ("module:function", imported in
    the actor's process, no arguments) if the variable is set; without it (every run but tests) does nothing."""
    target = os.environ.get(ACTOR_HOOK)
    if target:
        module, _, name = target.partition(":")
        getattr(importlib.import_module(module), name)()
