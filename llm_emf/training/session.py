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

from .checkpoint import CorruptCheckpoint, check_usable

KEEP_CHECKPOINTS = 2


class RaySession:
    """ray.train touch-points (Train V2). ``run_dir`` (``train.storage/run_name``, Ray's storage_path/name)
    is where resume looks for checkpoints besides the one Ray hands back."""

    def __init__(self, run_dir: str | None = None):
        import ray.train
        import ray.train.torch

        self._train = ray.train
        self.run_dir = run_dir
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
        """The newest usable checkpoint of the run, as a local folder (None: start afresh).

        (3) After a worker failure or a driver restart with the same run name, Ray hands back the latest
        checkpoint it registered. That is not always the newest one on storage: Ray's controller collects
        reports every couple of seconds, and a worker killed in between loses its last report although
        the checkpoint was already uploaded. So every ``checkpoint_*`` folder of the run is a candidate,
        newest first; a corrupt or half-written one is skipped with a warning and the one before it is used
        (CheckpointConfig num_to_keep=KEEP_CHECKPOINTS keeps one in reserve).
        """
        with newest_usable(run_checkpoints(self._train.get_checkpoint(), self.run_dir), self.rank == 0) as folder:
            yield folder


@contextlib.contextmanager
def newest_usable(candidates: list, write_note: bool) -> Iterator[Path | None]:
    """The first of ``candidates`` (Ray Train Checkpoints, newest first) whose state file verifies, as a
    local folder. Skipped corrupt ones are warned about and, with ``write_note`` (rank 0), listed in
    ``<run>/<newest checkpoint>.corrupt.txt``: a worker's warnings end up in Ray's worker logs, the run
    folder is where a user looks. Ray's own folders are left alone: it prunes them by its own records,
    and a renamed one would break that."""
    corrupt: list[str] = []
    outcome = "no usable checkpoint left: starting afresh"
    for candidate in candidates:
        with candidate.as_directory() as folder:
            try:
                check_usable(folder)
            except CorruptCheckpoint as e:
                corrupt.append(f"checkpoint {Path(candidate.path).name} is corrupt ({e})")
                continue
            if corrupt:
                outcome = f"resuming from the previous checkpoint {Path(candidate.path).name}"
                _record_fallback(candidates[0], corrupt, outcome, write_note)
            yield Path(folder)
            return
    if corrupt:
        _record_fallback(candidates[0], corrupt, outcome, write_note)
    yield None


def _record_fallback(newest, corrupt: list[str], outcome: str, write_note: bool) -> None:
    warnings.warn("; ".join(corrupt) + f"; {outcome}", RuntimeWarning, stacklevel=4)
    if write_note:
        path = Path(newest.path)
        with newest.filesystem.open_output_stream(str(path.parent / f"{path.name}.corrupt.txt")) as out:
            out.write(("\n".join(corrupt) + f"\n{outcome}\n").encode("utf-8"))


def run_checkpoints(registered, run_dir: str | None) -> list:
    """Ray Train checkpoints of a run, newest first: every ``checkpoint_*`` folder in ``run_dir`` (or beside
    ``registered``, the one Ray handed back), plus ``registered`` itself.

    Ray Train V2 names them ``checkpoint_<YYYY-mm-dd_HH-MM-SS.ffffff>`` under ``storage_path/run_name``,
    so the name order is the report order. Works on any pyarrow filesystem (local or remote storage).
    """
    import pyarrow.fs
    import ray.train

    from llm_emf.storage import Storage

    if run_dir:
        fs, folder = Storage(run_dir).filesystem()
    elif registered is not None:
        fs, folder = registered.filesystem, str(Path(registered.path).parent)
    else:
        return []
    infos = fs.get_file_info(pyarrow.fs.FileSelector(folder, allow_not_found=True))
    found = {Path(i.path).name: i.path for i in infos
             if i.type == pyarrow.fs.FileType.Directory and Path(i.path).name.startswith("checkpoint_")}
    checkpoints = [ray.train.Checkpoint(found[name], filesystem=fs) for name in sorted(found, reverse=True)]
    if registered is not None and Path(registered.path).name not in found:    # stored somewhere else
        checkpoints.insert(0, registered)
    return checkpoints


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
                check_usable(path)
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
