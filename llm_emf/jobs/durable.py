"""Whole-or-absent files: write under a temporary name, flush it to disk, rename it into place, then flush the
folder so the rename itself is on disk. Neither a SIGKILL nor a power cut leaves half a file at the real name."""

from __future__ import annotations

import os
import shutil
from pathlib import Path



def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it survives a power cut)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, path: Path) -> None:
    """Flush the finished file ``tmp`` to disk, rename it to ``path`` and flush the folder."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    sync_folder(path.parent)


def replace_folder_durably(tmp: Path, folder: Path) -> None:
    """Publish the finished folder ``tmp`` as ``folder`` (replacing any old one): every file and ``tmp`` itself
    are flushed before the rename, so a power cut cannot leave files with their names but not their bytes."""
    for path in sorted(tmp.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        elif path.is_dir():
            sync_folder(path)
    sync_folder(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    sync_folder(folder.parent)


def _temporary(path: Path) -> Path:
    """A hidden name beside ``path``, one per process: concurrent writers of one file (evaluation workers
    creating the same negatives) each finish their own copy, and the last rename wins whole."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_bytes_durably(data: bytes, path: Path) -> None:
    """``data`` at ``path`` the same way (a JSON marker or manifest)."""
    tmp = _temporary(path)
    tmp.write_bytes(data)
    replace_durably(tmp, path)
