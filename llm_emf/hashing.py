"""Content hashes: of files (weights, checkpoints) read in chunks, so large files never sit in memory, and of
a job's inputs (``stable_hash``, the feature jobs' cache keys)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """sha256 of a local file or of an object-store file (``s3://...``, streamed, never downloaded whole)."""
    from llm_emf import files

    h = hashlib.sha256()
    if files.is_remote(path):
        fs, p = files.filesystem(path)
        opened = fs.open_input_stream(p)
    else:
        opened = open(path, "rb")
    with opened as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def stable_hash(*parts: object) -> str:
    """A 16-hex content hash; the separator keeps ("ab", "c") and ("a", "bc") apart."""
    h = hashlib.sha256()
    for p in parts:
        h.update(("\x00" if p is None else "\x01" + str(p)).encode())
        h.update(b"\x1f")
    return h.hexdigest()[:16]
