"""One way to read and write: every path the project touches is a local path or an object-store URI.

Stages, jobs, checkpoints and results name their files as strings (``/data/run/x.parquet``,
``s3://bucket/run/x.parquet``, ``gs://...``) and read and write them through these functions, which go
through pyarrow filesystems (the same ones Ray Data, Train and Tune use), so one code path serves a laptop, a
shared filesystem and a bucket. Never wrap a URI in ``pathlib.Path``: it folds ``s3://b/x`` into ``s3:/b/x``.

What makes a write complete:
- a local file is written under a hidden temporary name, flushed, and renamed into place (``jobs.durable``);
- an object is uploaded in one request (or one multipart upload) after it is finished, and becomes visible
  only when that upload completes. Object stores have no rename, so nothing is ever written "beside" an
  object and moved: a killed writer leaves no object at all. A folder of objects is complete when its
  marker object (``_SUCCESS.json``, ``latest.json``) is written, which is always done last.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import json
import os
import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "abfs://", "abfss://")


def is_remote(uri: str | Path) -> bool:
    return str(uri).startswith(REMOTE_SCHEMES)


# -- names -------------------------------------------------------------------------------------
def join(base: str | Path, *parts: str) -> str:
    """``base/part/...``: a URI stays a URI, a local path stays a (not resolved) local path."""
    if is_remote(base):
        return posixpath.join(str(base).rstrip("/"), *parts)
    return str(Path(base).joinpath(*parts))


def parent(uri: str | Path) -> str:
    if is_remote(uri):
        scheme, _, rest = str(uri).rstrip("/").partition("://")
        head = posixpath.dirname(rest)
        return f"{scheme}://{head}" if head else f"{scheme}://{rest}"
    return str(Path(uri).parent)


def basename(uri: str | Path) -> str:
    return posixpath.basename(str(uri).rstrip("/")) if is_remote(uri) else Path(uri).name


def absolute(uri: str | Path) -> str:
    """A local path made absolute (workers may run elsewhere); a URI unchanged."""
    return str(uri) if is_remote(uri) else str(Path(uri).expanduser().absolute())


@functools.lru_cache(maxsize=32)
def _remote_fs(scheme_and_bucket: str, endpoint: str | None) -> pafs.FileSystem:
    # keyed on the endpoint too: a test (or a user) pointing AWS_ENDPOINT_URL elsewhere gets a fresh client
    fs, _ = pafs.FileSystem.from_uri(scheme_and_bucket)
    return fs


def filesystem(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem holding ``uri`` and the path to use with it."""
    uri = str(uri)
    if is_remote(uri):
        scheme, _, rest = uri.partition("://")
        bucket = rest.split("/", 1)[0]
        if not bucket:
            raise ValueError(f"'{uri}': expected {scheme}://<bucket>/<path>, found no bucket name")
        fs = _remote_fs(f"{scheme}://{bucket}", os.environ.get("AWS_ENDPOINT_URL"))
        return fs, rest.rstrip("/")
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().absolute())


# -- questions ---------------------------------------------------------------------------------
def info(uri: str | Path) -> pafs.FileInfo:
    fs, p = filesystem(uri)
    return fs.get_file_info(p)


def exists(uri: str | Path) -> bool:
    return info(uri).type != pafs.FileType.NotFound


def is_file(uri: str | Path) -> bool:
    return info(uri).type == pafs.FileType.File


def is_dir(uri: str | Path) -> bool:
    return info(uri).type == pafs.FileType.Directory


def listdir(uri: str | Path) -> list[str]:
    """The names of a folder's direct children, sorted; [] for a missing folder."""
    fs, p = filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
    return sorted(i.base_name for i in infos)


def glob(folder: str | Path, pattern: str) -> list[str]:
    """The children of ``folder`` whose names match ``pattern`` (fnmatch), sorted, as full paths or URIs."""
    return [join(folder, name) for name in listdir(folder) if fnmatch.fnmatchcase(name, pattern)]


def walk_files(uri: str | Path) -> list[str]:
    """Every file under a folder (recursively), as paths relative to it, sorted."""
    fs, p = filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(p, recursive=True, allow_not_found=True))
    return sorted(posixpath.relpath(i.path, p) if is_remote(uri) else os.path.relpath(i.path, p)
                  for i in infos if i.type == pafs.FileType.File)


# -- changes -----------------------------------------------------------------------------------
def makedirs(uri: str | Path) -> None:
    """Create a folder and its parents (on an object store folders are implicit: nothing to do)."""
    if not is_remote(uri):
        Path(uri).expanduser().mkdir(parents=True, exist_ok=True)


def remove(uri: str | Path) -> None:
    """Delete a file if it is there."""
    fs, p = filesystem(uri)
    try:
        fs.delete_file(p)
    except FileNotFoundError:
        pass


def remove_tree(uri: str | Path) -> None:
    """Delete a folder and everything in it, if it is there."""
    fs, p = filesystem(uri)
    if fs.get_file_info(p).type == pafs.FileType.Directory:
        fs.delete_dir(p)


def move(src: str | Path, dst: str | Path) -> None:
    """Rename a file (local) or copy it and delete the original (object stores have no rename)."""
    if not is_remote(src) and not is_remote(dst):
        os.replace(src, dst)
        return
    copy(src, dst)
    remove(src)


def copy(src: str | Path, dst: str | Path) -> None:
    """Copy one file between any two filesystems; ``dst`` appears whole or not at all."""
    sfs, sp = filesystem(src)
    if is_remote(dst):
        dfs, dp = filesystem(dst)
        pafs.copy_files(sp, dp, source_filesystem=sfs, destination_filesystem=dfs)
        return
    with _local_temporary(Path(dst)) as tmp:
        pafs.copy_files(sp, str(tmp), source_filesystem=sfs, destination_filesystem=pafs.LocalFileSystem())


# -- bytes, text, JSON, Parquet ------------------------------------------------------------------
def read_bytes(uri: str | Path) -> bytes:
    fs, p = filesystem(uri)
    with fs.open_input_stream(p) as f:
        return f.read()


def read_text(uri: str | Path) -> str:
    return read_bytes(uri).decode("utf-8")


def read_json(uri: str | Path):
    return json.loads(read_text(uri))


def write_bytes(uri: str | Path, data: bytes) -> None:
    """``data`` at ``uri``, whole or not at all (see the module docstring)."""
    if is_remote(uri):
        fs, p = filesystem(uri)
        with fs.open_output_stream(p) as f:     # one PUT: the object appears when the upload completes
            f.write(data)
        return
    from llm_emf.jobs.durable import write_bytes_durably

    path = Path(uri).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_durably(data, path)


def write_text(uri: str | Path, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def write_json(uri: str | Path, obj) -> None:
    write_bytes(uri, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def read_parquet(uri: str | Path, columns: list[str] | None = None) -> pa.Table:
    fs, p = filesystem(uri)
    return pq.read_table(p, filesystem=fs, columns=columns)


def write_parquet(table: pa.Table, uri: str | Path) -> None:
    """``table`` as Parquet at ``uri``, whole or not at all."""
    with local_output(uri) as tmp:
        pq.write_table(table, tmp)


@contextlib.contextmanager
def parquet_writer(uri: str | Path, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
    """A ParquetWriter whose file is published at ``uri`` when the block ends without an error (and
    discarded when it raises): a reader never sees half a table."""
    with local_output(uri) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            yield writer


# -- local copies, for libraries that only read or write local files (torch, matplotlib, MLflow) ----------
@contextlib.contextmanager
def _local_temporary(final: Path) -> Iterator[Path]:
    """A hidden temporary path beside ``final``, flushed and renamed to ``final`` on success."""
    from llm_emf.jobs.durable import replace_durably

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        replace_durably(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def local_output(uri: str | Path) -> Iterator[Path]:
    """A local file path to write ``uri``'s content to; on success it is published at ``uri`` (renamed into
    place locally, uploaded to an object store), on an error it is dropped."""
    if not is_remote(uri):
        with _local_temporary(Path(uri).expanduser()) as tmp:
            yield tmp
        return
    with tempfile.TemporaryDirectory(prefix="llm-emf-out-") as folder:
        tmp = Path(folder, basename(uri))
        yield tmp
        upload(tmp, uri)


@contextlib.contextmanager
def local_copy(uri: str | Path) -> Iterator[Path]:
    """A local path holding ``uri`` (a file or a folder): the path itself when local, else a download into a
    temporary folder that is removed afterwards."""
    if not is_remote(uri):
        yield Path(uri).expanduser()
        return
    with tempfile.TemporaryDirectory(prefix="llm-emf-in-") as folder:
        local = Path(folder, basename(uri))
        download(uri, local)
        yield local


def download(uri: str | Path, local: Path) -> None:
    """Copy a file or a folder (recursively) to the local path ``local``."""
    fs, p = filesystem(uri)
    kind = fs.get_file_info(p).type
    if kind == pafs.FileType.NotFound:
        raise FileNotFoundError(f"{uri}: no such file or folder")
    if kind == pafs.FileType.Directory:
        local.mkdir(parents=True, exist_ok=True)
    else:
        local.parent.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(p, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())


def upload(local: Path, uri: str | Path) -> None:
    """Copy a local file or folder (recursively) to ``uri`` (a local destination is replaced whole)."""
    local = Path(local)
    if not is_remote(uri):
        dst = Path(uri).expanduser()
        if local.is_dir():
            shutil.copytree(local, dst, dirs_exist_ok=True)
        else:
            copy(str(local), str(dst))
        return
    fs, p = filesystem(uri)
    pafs.copy_files(str(local), p, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
