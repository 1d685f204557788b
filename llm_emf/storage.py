"""One storage root for every stage's outputs: a local path, a shared filesystem, ``s3://`` or ``gs://``.

Feature tables, prepared datasets, Train/Tune storage and MLflow artifacts all live under the same root,
addressed through pyarrow filesystems, so that on a multi-node cluster every node (and a resubmitted job)
sees the same files. A plain local path only works where all nodes share it: on a multi-node Ray
cluster a path that is not on a network filesystem is rejected up front instead of hanging later.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from llm_emf import files
from llm_emf.files import REMOTE_SCHEMES, is_remote  # noqa: F401 (re-exported: the storage vocabulary)
# Filesystem types that every node of a cluster can mount at the same path.
NETWORK_FS_TYPES = {"nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "beegfs", "fuse.s3fs", "fuse.gcsfuse",
                    "fuse.juicefs", "ceph", "glusterfs", "fuse.glusterfs", "efs", "fuse.efs"}


class StorageError(ValueError):
    pass


def _mount_type(path: Path) -> str:
    """The filesystem type of the mount holding ``path`` (longest matching mount point in /proc/mounts)."""
    path = path.resolve()
    best, fstype = "", "unknown"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return fstype
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
            best, fstype = mount, parts[2]
    return fstype


def is_shared_path(path: str | Path) -> bool:
    """True when a local path lies on a network filesystem (or the user vouches for it)."""
    if os.environ.get("LLM_EMF_SHARED_FS") == "1":
        return True
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return _mount_type(p) in NETWORK_FS_TYPES


def check_for_cluster(uri: str, n_nodes: int) -> None:
    """Reject a node-local path on a multi-node cluster with an error that says what to use instead."""
    if n_nodes <= 1 or is_remote(uri) or is_shared_path(uri):
        return
    raise StorageError(
        f"storage path '{uri}' is a local path on a {n_nodes}-node Ray cluster: other nodes cannot see it: "
        f"expected an s3:// or gs:// URI or a path on a shared filesystem (NFS, EFS, Lustre, ...); found "
        f"filesystem type '{_mount_type(Path(uri).resolve().parent)}'. Set LLM_EMF_SHARED_FS=1 if this path "
        f"is shared in a way not detected here.")


def alive_nodes() -> int:
    import ray

    if not ray.is_initialized():
        return 1
    return sum(1 for n in ray.nodes() if n.get("Alive"))


@dataclass(frozen=True)
class Storage:
    """A root URI with helpers to build child paths and read/write small JSON markers."""

    root: str

    def __post_init__(self):
        if not self.root:
            raise StorageError("storage root is empty: expected a local path, s3:// or gs:// URI")

    @property
    def remote(self) -> bool:
        return is_remote(self.root)

    def path(self, *parts: str) -> str:
        return files.join(files.absolute(self.root), *parts)

    def filesystem(self, uri: str | None = None) -> tuple[pafs.FileSystem, str]:
        return files.filesystem(uri or self.root)

    def exists(self, uri: str) -> bool:
        return files.exists(uri)

    def makedirs(self, uri: str) -> None:
        files.makedirs(uri)

    def write_json(self, uri: str, obj: dict) -> None:
        """Whole or absent: a reader never sees half a marker (files.write_bytes)."""
        files.write_json(uri, obj)

    def read_json(self, uri: str) -> dict | None:
        """The JSON object at ``uri``, or None when there is none."""
        try:
            return files.read_json(uri)
        except FileNotFoundError:
            return None
