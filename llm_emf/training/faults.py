"""Test-only fault injection for the training loop: one worker process killed mid-epoch, once per run.

``train(cfg, kill_worker_once_at=(epoch, step, rank))`` puts ``kill_once_at`` and ``kill_marker`` into the
loop config. The kill is injected from outside ``train_epoch``: the training sequences handed to it are
wrapped so that taking batch ``step`` of ``epoch`` on ``rank`` writes the marker file and SIGKILLs the
worker's own process, as an OOM killer or a lost node would (no exception, no cleanup, no final report).
The marker makes it happen once: the restarted worker group trains through the same step.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


class KillAtStep:
    """Delegates to the wrapped sequences; the ``step``-th ``take`` (1-based) kills this process."""

    def __init__(self, sequences, step: int, marker: Path, reason: str):
        self._sequences, self._step, self._marker, self._reason = sequences, step, marker, reason
        self._taken = 0

    def take(self, rows):
        self._taken += 1
        if self._taken == self._step and not self._marker.exists():
            self._marker.write_text(self._reason + "\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return self._sequences.take(rows)

    def __getattr__(self, name):
        return getattr(self._sequences, name)


def epoch_sequences(config: dict, sequences, epoch: int, rank: int):
    """``sequences`` for 0-based ``epoch``, wrapped to kill this worker if ``config`` asks for it here."""
    kill_at = config.get("kill_once_at")
    if not kill_at:
        return sequences
    kill_epoch, step, kill_rank = kill_at
    marker = Path(config["kill_marker"])
    if epoch + 1 != kill_epoch or rank != kill_rank or marker.exists():
        return sequences
    return KillAtStep(sequences, step, marker, f"SIGKILL of rank {rank} at step {step} of epoch {kill_epoch}")


def note_start(config: dict, rank: int, start_epoch: int) -> None:
    """After an injected kill, each restarted worker appends where it resumed (the test reads it back)."""
    marker = Path(config["kill_marker"]) if config.get("kill_marker") else None
    if marker is not None and marker.exists():
        with marker.open("a") as out:
            out.write(f"rank {rank} restarted after epoch {start_epoch}\n")
