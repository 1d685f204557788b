"""Torch threads of the stage-1 model actors on CPU (llm_emf.features.actors): Ray gives an actor that asks
for 1 CPU one OpenMP thread; the jobs give it its node's CPUs shared among the pool's actors."""

from __future__ import annotations

import numpy as np
import pytest

from llm_emf.features.actors import map_batches_on_actors


class ThreadProbe:
    """An actor that reports the torch threads it computes with."""

    def __init__(self, label: str):
        import torch

        self.threads = torch.get_num_threads()

    def __call__(self, batch):
        return {"threads": np.full(len(batch["id"]), self.threads)}


def actor_thread_counts(threads, actors: int) -> set[int]:
    import ray

    ds = map_batches_on_actors(ray.data.from_items([{"id": i} for i in range(8)], override_num_blocks=2), ThreadProbe, threads=threads, actors=actors,
                               fn_constructor_kwargs={"label": "probe"}, batch_size=4,
                               compute=ray.data.ActorPoolStrategy(size=actors))
    return {int(row["threads"]) for row in ds.take_all()}


@pytest.fixture(autouse=True)
def probe_pickled_by_value():
    """Ray's workers cannot import this test module: ship ThreadProbe by value."""
    import sys

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.mark.integration
@pytest.mark.parametrize(("threads", "actors", "expected"), [
    (None, 1, {1}),     # Ray's own setting: OMP_NUM_THREADS = the actor's 1 CPU
    (0, 1, {2}),        # auto: the node's 2 CPUs for the pool's one actor
    (0, 2, {1}),        # auto: shared between two actors
    (3, 1, {3}),        # features.*.threads chosen by the user
])
def test_actor_threads(local_ray, threads, actors, expected):
    assert actor_thread_counts(threads, actors) == expected
