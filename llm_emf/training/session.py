"""Where the training function reports to: Ray Train, or an in-process stand-in for local mode.

The training function only uses ``rank``, ``world_size``, ``device``, ``report(metrics, folder)`` and
``latest_checkpoint()``. Under Ray these map to ``ray.train``; in local mode (``train.num_workers=0``)
``LocalSession`` keeps checkpoints under ``<run_dir>/checkpoints/`` with the same resume semantics
(the latest reported checkpoint is handed back on the next start with the same run name).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import torch

from .checkpoint import DIGEST_FILE, CorruptCheckpoint, load_state, verify_state_file

KEEP_CHECKPOINTS = 2


class RaySession:
    """ray.train touch-points (Train V2)."""

    def __init__(self):
        import ray.train
        import ray.train.torch

        self._train = ray.train
        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.device = ray.train.torch.get_device()

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch
        # (1) Ray moves the model to this worker's device and wraps it in DDP when world_size > 1.
        return ray.train.torch.prepare_model(model)

    def report(self, metrics: dict, folder: str | None) -> None:
        # (2) Every worker reports; only rank 0 attaches the checkpoint folder.
        checkpoint = self._train.Checkpoint.from_directory(folder) if folder else None
        self._train.report(metrics, checkpoint=checkpoint)

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Path | None]:
        # (3) After a worker failure or a driver restart with the same run name, Ray hands back the latest one.
        checkpoint = self._train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as folder:
            yield Path(folder)


class LocalSession:
    """One in-process worker; checkpoints and the reported metrics live under ``run_dir``."""

    rank, world_size = 0, 1

    def __init__(self, run_dir: str | Path, use_gpu: bool = False):
        self.run_dir = Path(run_dir)
        if use_gpu and not torch.cuda.is_available():
            from llm_emf.config import ConfigError
            raise ConfigError("train.use_gpu: expected a CUDA device, found none (set train.use_gpu=false)")
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.reports: list[dict] = []

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    def report(self, metrics: dict, folder: str | None) -> None:
        self.reports.append(dict(metrics))
        if folder is None:
            return
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        existing = sorted(self.checkpoints.glob("checkpoint_*"))
        index = int(existing[-1].name.split("_")[1]) + 1 if existing else 0
        name = f"checkpoint_{index:06d}"
        tmp = Path(tempfile.mkdtemp(dir=self.checkpoints, prefix=".partial_"))
        shutil.copytree(folder, tmp, dirs_exist_ok=True)
        tmp.rename(self.checkpoints / name)                           # atomic: a half copy is never "latest"
        (self.checkpoints / "latest.json").write_text(json.dumps({"name": name, "metrics": metrics}))
        for old in sorted(self.checkpoints.glob("checkpoint_*"))[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old)

    def latest_path(self) -> Path | None:
        """The newest checkpoint whose state file verifies; a corrupt one is set aside with a warning.

        A corrupt checkpoint is renamed ``corrupt_checkpoint_*`` (kept for inspection, out of the pruning
        and resume order) and the one before it is used, so a damaged latest file costs one epoch, not the run.
        """
        marker = self.checkpoints / "latest.json"
        if not marker.is_file():
            return None
        latest = json.loads(marker.read_text())["name"]
        candidates = sorted((p for p in self.checkpoints.glob("checkpoint_*") if p.name <= latest), reverse=True)
        for path in candidates:
            try:
                verify_state_file(path)
                if not (path / DIGEST_FILE).is_file():
                    load_state(path)    # an older checkpoint without a digest: torch must at least read it
            except CorruptCheckpoint as e:
                aside, n = path.with_name("corrupt_" + path.name), 1
                while aside.exists():
                    aside, n = path.with_name(f"corrupt{n}_{path.name}"), n + 1
                path.rename(aside)
                warnings.warn(f"checkpoint {path.name} is corrupt ({e}); moved to {aside.name}, "
                              f"resuming from the previous checkpoint", RuntimeWarning, stacklevel=2)
                continue
            return path
        return None

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Path | None]:
        yield self.latest_path()
