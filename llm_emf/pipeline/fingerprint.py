"""What a stage's key hashes besides its config: its input files and the code that makes its output.

Input files (``data.source``, ``data.items``, a prompt file, a local model or checkpoint): every file under
the path, by name and content. A file up to ``FULL_HASH_BYTES`` is hashed whole (streamed); a larger one (a
10M-review dump) by its size, its modification time and the sha256 of its first, middle and last MiB, which
sees any edit that changes the size or the time (an editor, ``cp``, ``gzip``, an upload) and most that keep
both, at a cost independent of the file's size. Objects in a bucket are read the same way.

Code: the sha256 of the package's source files a stage runs (``CODE``: the subpackages named per stage, plus
the modules every stage shares), so a fixed importer or changed model invalidates exactly the stages that run
it, and an edit elsewhere (a CLI message, a benchmark) does not recompute an LLM enrichment.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from llm_emf import files

FULL_HASH_BYTES = 64 << 20
SAMPLE_BYTES = 1 << 20
PACKAGE = Path(__file__).resolve().parents[1]
# modules every stage runs through (config, storage, schema, job plumbing)
SHARED_CODE = ("__init__.py", "files.py", "storage.py", "hashing.py", "config", "data/schema.py", "jobs")
SOURCE_SUFFIXES = (".py", ".txt", ".json", ".yaml")


def _file_digest(uri: str, size: int, mtime_ns: int | None) -> str:
    fs, path = files.filesystem(uri)
    h = hashlib.sha256()
    with fs.open_input_file(path) as f:
        if size <= FULL_HASH_BYTES:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
            return "sha256:" + h.hexdigest()
        for offset in (0, size // 2, size - SAMPLE_BYTES):
            f.seek(offset)
            h.update(f.read(SAMPLE_BYTES))
    return f"sampled:{size}:{mtime_ns}:{h.hexdigest()}"


def input_fingerprint(uri: str | Path) -> dict:
    """``{"files": n, "bytes": total, "digest": sha256 over (name, file digest)}`` of a file or a folder
    (recursively); ``{"missing": true}`` where nothing is there (the stage itself reports that error)."""
    import pyarrow.fs as pafs

    uri = str(uri)
    info = files.info(uri)
    if info.type == pafs.FileType.NotFound:
        return {"missing": True}
    names = [""] if info.type == pafs.FileType.File else files.walk_files(uri)
    h, total = hashlib.sha256(), 0
    for name in names:
        path = files.join(uri, name) if name else uri
        entry = files.info(path) if name else info
        total += entry.size or 0
        mtime = entry.mtime_ns if entry.size and entry.size > FULL_HASH_BYTES else None
        h.update(f"{name}\0{_file_digest(path, entry.size or 0, mtime)}\0".encode())
    return {"files": len(names), "bytes": total, "digest": h.hexdigest()[:16]}


@functools.lru_cache(maxsize=None)
def code_fingerprint(parts: tuple[str, ...]) -> str:
    """sha256 (16 hex) of the package source files under ``parts`` (paths relative to ``llm_emf/``) and the
    shared modules, by relative name and content."""
    chosen: set[Path] = set()
    for part in (*SHARED_CODE, *parts):
        path = PACKAGE / part
        found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in SOURCE_SUFFIXES)
        chosen.update(p for p in found if "__pycache__" not in p.parts)
    h = hashlib.sha256()
    for path in sorted(chosen):
        h.update(f"{path.relative_to(PACKAGE).as_posix()}\0".encode() + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
