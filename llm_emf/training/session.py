"""Where the training function reports to: Ray Train, or an in-process stand-in for local mode.

The training function only uses ``rank``, ``world_size``, ``device``, ``report(metrics, folder)`` and
``latest_checkpoint()``. Under Ray these map to ``ray.train``; in local mode (``train.num_workers=0``)
``LocalSession`` keeps checkpoints under ``<run_dir>/checkpoints/`` with the same resume semantics
(the latest reported checkpoint is handed back on the next start with the same run name); ``run_dir`` may be
a local path or an object-store URI.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Iterator

import torch

from llm_emf import files
from llm_emf.checkpoints import CorruptCheckpoint, check_usable

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
    """One in-process worker; checkpoints and the reported metrics live under ``run_dir``.

    ``checkpoints/checkpoint_NNNNNN/`` folders, then ``checkpoints/latest.json`` naming the newest one, written
    last: it is the marker that a checkpoint is complete. Locally a checkpoint is copied under a temporary name
    and renamed; an object store has no rename, so its files are uploaded in place and only the marker makes
    them the latest (a folder newer than the marker is a killed writer's leftover, deleted on the next report).
    ``latest_path()`` always hands back a local folder: on an object store, a download (kept until the next
    call or the end of the session).
    """

    rank, world_size = 0, 1

    def __init__(self, run_dir: str | Path, use_gpu: bool = False):
        self.remote = files.is_remote(run_dir)
        self.run_dir = str(run_dir) if self.remote else Path(run_dir)
        if use_gpu and not torch.cuda.is_available():
            from llm_emf.config import ConfigError
            raise ConfigError("train.use_gpu: expected a CUDA device, found none (set train.use_gpu=false)")
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.reports: list[dict] = []
        self._download: Path | None = None

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(self.device)

    @property
    def checkpoints(self) -> Path | str:
        """The checkpoints folder: a Path for a local run, the URI for a remote one."""
        return files.join(self.run_dir, "checkpoints") if self.remote else self.run_dir / "checkpoints"

    @property
    def marker(self) -> str:
        return files.join(self.checkpoints, "latest.json")

    def _latest_name(self) -> str | None:
        try:
            return files.read_json(self.marker)["name"]
        except FileNotFoundError:
            return None

    def _stored(self) -> list[str]:
        """The run's checkpoint folders (paths or URIs), oldest first."""
        return files.glob(self.checkpoints, "checkpoint_*")

    def report(self, metrics: dict, folder: str | None) -> None:
        self.reports.append(dict(metrics))
        if folder is None:
            return
        latest = self._latest_name()
        for path in self._stored():                 # never named by the marker: a writer died before it
            if latest is None or files.basename(path) > latest:
                files.remove_tree(path)
        existing = self._stored()
        index = int(files.basename(existing[-1]).split("_")[1]) + 1 if existing else 0
        name = f"checkpoint_{index:06d}"
        if self.remote:
            files.upload(Path(folder), files.join(self.checkpoints, name))
        else:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.checkpoints, prefix=".partial_"))
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
            tmp.rename(self.checkpoints / name)                       # atomic: a half copy is never "latest"
        files.write_json(self.marker, {"name": name, "metrics": metrics})    # last: the checkpoint is complete
        for old in self._stored()[:-KEEP_CHECKPOINTS]:
            files.remove_tree(old)

    def latest_path(self) -> Path | None:
        """The newest checkpoint whose state file verifies, as a local folder; a corrupt one is set aside
        with a warning.

        A corrupt checkpoint is moved to ``corrupt_checkpoint_*`` (kept for inspection, out of the pruning
        and resume order; on an object store: copied there, then deleted) and the one before it is used, so a
        damaged latest file costs one epoch, not the run.
        """
        found = self._newest_usable()
        return None if found is None else self._local(found)

    def latest_location(self) -> str | None:
        """Where the newest usable checkpoint lives (a local path or a URI, nothing downloaded): what a result
        names, so that a later job, on any node, loads it from there."""
        return self._newest_usable()

    def _newest_usable(self) -> str | None:
        latest = self._latest_name()
        if latest is None:
            return None
        for path in [p for p in self._stored() if files.basename(p) <= latest][::-1]:
            try:
                check_usable(path)                  # remote: hashed as it streams, nothing downloaded
            except CorruptCheckpoint as e:
                aside = self._set_aside(path)
                warnings.warn(f"checkpoint {files.basename(path)} is corrupt ({e}); moved to "
                              f"{files.basename(aside)}, resuming from the previous checkpoint", RuntimeWarning,
                              stacklevel=3)
                continue
            return path
        return None

    def _set_aside(self, path: str) -> str:
        aside, n = files.join(files.parent(path), "corrupt_" + files.basename(path)), 1
        while files.exists(aside):
            aside, n = files.join(files.parent(path), f"corrupt{n}_{files.basename(path)}"), n + 1
        if self.remote:                             # no rename on an object store
            for rel in files.walk_files(path):
                files.copy(files.join(path, rel), files.join(aside, rel))
            files.remove_tree(path)
        else:
            Path(path).rename(aside)
        return aside

    def _local(self, path: str) -> Path:
        if not self.remote:
            return Path(path)
        if self._download is None:
            self._download = Path(tempfile.mkdtemp(prefix="llm_emf_resume_"))
            weakref.finalize(self, shutil.rmtree, self._download, True)
        for old in self._download.iterdir():       # one download kept: the folder handed back last
            shutil.rmtree(old, ignore_errors=True)
        local = self._download / files.basename(path)
        files.download(path, local)
        return local

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Path | None]:
        yield self.latest_path()
