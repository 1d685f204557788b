"""``data.source`` / ``data.items`` on an object store (``s3://``, ``gs://`` ...).

The importers read local files by name (gzip probing, CSV dialects, line numbers), so a remote input is
downloaded into a temporary folder named like it and imported from there. Whatever the import reports
afterwards names the URI, never the temporary copy: DataErrors (and other errors), warnings, the
quarantine's ``file`` column and ``meta.source`` / ``meta.extra`` go through :class:`LocalNames`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

from llm_emf import files

from ...config.data import DataConfig
from ..schema import DatasetMeta
from ..textio import BadRows

REMOTE_FIELDS = ("source", "items")     # the DataConfig fields that name input files


class LocalNames:
    """Maps temporary local copies back to the URIs they were downloaded from, in any text."""

    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []

    def add(self, local: Path, uri: str) -> None:
        for name in {str(local), str(local.resolve())}:     # /tmp may be a symlink (macOS: /private/tmp)
            self.pairs.append((name, uri.rstrip("/")))
        self.pairs.sort(key=lambda pair: -len(pair[0]))     # the longest first: no half-replaced name

    def text(self, text: str) -> str:
        for local, uri in self.pairs:
            text = text.replace(local, uri)
        return text

    def value(self, value: Any) -> Any:
        """``value`` with every string in it (nested dicts and lists too) mapped."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.value(v) for v in value)
        return value

    def fix_meta(self, meta: DatasetMeta) -> None:
        meta.source, meta.extra = self.text(meta.source), self.value(meta.extra)

    @contextlib.contextmanager
    def reporting(self, bad: BadRows) -> Iterator[None]:
        """Run an import: its errors, warnings and quarantined rows name the URIs (a no-op when all is local)."""
        if not self.pairs:
            yield
            return
        caught: list[warnings.WarningMessage] = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                yield
        except Exception as e:
            self._fix_error(e)
            raise
        finally:
            for row in bad.rows:
                row["file"] = self.text(row["file"])
            for w in caught:        # re-issued under the outer filters, naming the URI
                warnings.warn_explicit(self.text(str(w.message)), w.category, w.filename, w.lineno)

    def _fix_error(self, e: BaseException) -> None:
        # in place: the exception keeps its type and traceback (DataError keeps file / expected / found too)
        for attr in ("file", "expected", "found", "filename"):
            if isinstance(getattr(e, attr, None), str):
                setattr(e, attr, self.text(getattr(e, attr)))
        e.args = tuple(self.text(a) if isinstance(a, str) else a for a in e.args)


@contextlib.contextmanager
def local_inputs(cfg: DataConfig) -> Iterator[tuple[DataConfig, LocalNames]]:
    """``cfg`` with each remote input replaced by a local copy, and the names that map the copies back.
    A missing remote ``data.items`` becomes a missing local file, so the importer reports it as usual."""
    names = LocalNames()
    local: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for key in REMOTE_FIELDS:
            uri = getattr(cfg, key)
            if files.is_remote(uri):
                path = stack.enter_context(_local_copy(uri))
                names.add(path, uri)
                local[key] = str(path)
        yield (dataclasses.replace(cfg, **local) if local else cfg), names


@contextlib.contextmanager
def _local_copy(uri: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="llm-emf-in-") as folder:
        path = Path(folder, files.basename(uri))    # same name: meta.name, suffixes and gzip probing agree
        if files.exists(uri):
            files.download(uri, path)
        yield path
