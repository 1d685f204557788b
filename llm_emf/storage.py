"""One storage root for every stage's outputs: a local path, a shared filesystem, ``s3://`` or ``gs://``.

Feature tables, prepared datasets, Train/Tune storage and MLflow artifacts all live under the same root,
addressed through pyarrow filesystems, so that on a multi-node cluster every node (and a resubmitted job)
sees the same files. A plain local path only works where all nodes share it: on a multi-node Ray
cluster a path that is not on a network filesystem is rejected up front instead of hanging later.
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from llm_emf.jobs.durable import write_bytes_durably

REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "abfs://", "abfss://")
# Filesystem types that every node of a cluster can mount at the same path.
NETWORK_FS_TYPES = {"nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "beegfs", "fuse.s3fs", "fuse.gcsfuse",
                    "fuse.juicefs", "ceph", "glusterfs", "fuse.glusterfs", "efs", "fuse.efs"}


class StorageError(ValueError):
    pass


def is_remote(uri: str) -> bool:
    return uri.startswith(REMOTE_SCHEMES)


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
        if self.remote:
            return posixpath.join(self.root.rstrip("/"), *parts)
        return str(Path(self.root).absolute().joinpath(*parts))

    def filesystem(self, uri: str | None = None) -> tuple[pafs.FileSystem, str]:
        uri = uri or self.root
        if is_remote(uri):
            return pafs.FileSystem.from_uri(uri)
        return pafs.LocalFileSystem(), str(Path(uri).absolute())

    def exists(self, uri: str) -> bool:
        fs, p = self.filesystem(uri)
        return fs.get_file_info(p).type != pafs.FileType.NotFound

    def makedirs(self, uri: str) -> None:
        fs, p = self.filesystem(uri)
        fs.create_dir(p, recursive=True)

    def write_json(self, uri: str, obj: dict) -> None:
        """Write then rename, so that a reader never sees half a marker (local); object stores are atomic."""
        fs, p = self.filesystem(uri)
        fs.create_dir(posixpath.dirname(p), recursive=True)
        data = json.dumps(obj, indent=2, sort_keys=True).encode()
        if isinstance(fs, pafs.LocalFileSystem):
            write_bytes_durably(data, Path(p))
        else:
            with fs.open_output_stream(p) as f:
                f.write(data)

    def read_json(self, uri: str) -> dict | None:
        fs, p = self.filesystem(uri)
        if fs.get_file_info(p).type == pafs.FileType.NotFound:
            return None
        with fs.open_input_stream(p) as f:
            return json.loads(f.read().decode())
