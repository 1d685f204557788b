"""Where Ray Train workers ran, and rank 0's epoch lines, shown by the driver as training goes.

Every command joins Ray with ``log_to_driver=False`` (``llm_emf.ray_local``), so what a Train worker prints
stays in its own log file on its node, and a Ray job's log (``ray job logs``) shows the driver only. So each
worker also sends its placement (rank, Ray node id, hostname) and rank 0 its one-line epoch summary to a small
queue actor; a thread of the driver prints them as they arrive and keeps the latest placement per rank for
the run's results (``TrainResult.extra["workers"]``). Losing the queue loses log lines, never training.
"""

from __future__ import annotations

import socket
import sys
import threading
import warnings


def worker_record(rank: int, world_size: int) -> dict:
    """Where this process runs: its rank, Ray node id (None outside Ray) and host name."""
    node_id = None
    try:
        import ray

        if ray.is_initialized():
            node_id = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - a placement record is informative only
        pass
    return {"rank": rank, "world_size": world_size, "node_id": node_id, "hostname": socket.gethostname()}


def post(queue, kind: str, payload) -> None:
    """Send ``(kind, payload)`` to the driver's :class:`WorkerReports`; a no-op without one (local mode)."""
    if queue is None:
        return
    try:
        queue.put_nowait((kind, payload))
    except Exception:  # noqa: BLE001 - the driver may be gone; training goes on
        pass


class WorkerReports:
    """Driver side: ``with WorkerReports() as r:`` pass ``r.queue`` to the workers; ``r.workers()`` after."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self._workers: dict[int, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="train-worker-reports", daemon=True)
        try:
            import ray
            from ray.util.queue import Queue
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            # on the driver's node (as Ray Train's controller): it holds no CPU the workers need, and a lost
            # worker node cannot take the lines of the rest of the run with it
            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
            self.queue = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"training progress from Ray workers will not be shown here: {type(e).__name__}: {e}",
                          RuntimeWarning, stacklevel=2)
            self.queue = None

    def __enter__(self) -> "WorkerReports":
        if self.queue is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.queue is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        while self._take(block=False):          # what arrived after the thread's last look
            pass
        try:
            self.queue.shutdown()
        except Exception:  # noqa: BLE001
            pass

    def workers(self) -> list[dict]:
        """The latest placement of each rank (a restarted worker group replaces the earlier one)."""
        return [self._workers[r] for r in sorted(self._workers)]

    def _drain(self) -> None:
        while not self._stop.is_set():
            self._take(block=True)

    def _take(self, block: bool) -> bool:
        from ray.util.queue import Empty

        try:
            kind, payload = self.queue.get(block=block, timeout=1.0 if block else None)
        except Empty:
            return False
        except Exception:  # noqa: BLE001 - the queue actor is gone: nothing more will come
            self._stop.set()
            return False
        if kind == "worker":
            self._workers[int(payload["rank"])] = payload
            line = (f"train: rank {payload['rank']}/{payload['world_size']} on node {payload['node_id']} "
                    f"({payload['hostname']})")
        else:
            line = str(payload)
        print(line, file=self.out, flush=True)
        return True
