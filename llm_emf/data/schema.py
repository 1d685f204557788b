"""The canonical dataset: explicit pyarrow schemas and one folder layout every stage reads.

A prepared dataset is a folder::

    items.parquet       ITEM_SCHEMA: one row per item of both domains
    sequences.parquet   SEQUENCE_SCHEMA: one row per (user, split) sequence
    dataset.json        name, domain names, source, counts, fingerprint
    quarantine.parquet  QUARANTINE_SCHEMA: rows the importer skipped (only with --skip-bad-rows)
    config.yaml         the resolved config that produced it

Items are addressed by ``item_index``: dense, 0-based, domain X items first (``0 .. n_x-1``), then domain Y
(``n_x .. n_x+n_y-1``). ``item_id`` keeps the source's own identifier (an ASIN or the source's number).

Splits (method.md): ``train`` sequences are used whole for training. In ``valid`` and ``test`` the last
item is the target and everything before it is the input; the target's domain decides whether the case
counts for X or for Y.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_emf import files

SPLITS = ("train", "valid", "test")
DOMAIN_X, DOMAIN_Y = 0, 1


# Item indices are dense with the X items first: [0, n_x) is X, [n_x, n_x + n_y) is Y. These say so once.
def in_domain(items, n_x: int, domain: int):
    """Elementwise: which of ``items`` (item indices, numpy or torch) belong to ``domain``."""
    return items >= n_x if domain == DOMAIN_Y else items < n_x


def domain_of(items: np.ndarray, n_x: int) -> np.ndarray:
    """(N,) DOMAIN_X / DOMAIN_Y of each item index."""
    return np.where(in_domain(items, n_x, DOMAIN_Y), DOMAIN_Y, DOMAIN_X)


def domain_slice(n_x: int, n_y: int, domain: int) -> slice:
    """The item indices of ``domain``, as a slice of the item table."""
    return slice(0, n_x) if domain == DOMAIN_X else slice(n_x, n_x + n_y)

ITEM_SCHEMA = pa.schema([
    pa.field("item_index", pa.int32(), nullable=False),   # dense id used by the model
    pa.field("item_id", pa.string(), nullable=False),     # the source's identifier (ASIN, number)
    pa.field("domain", pa.int8(), nullable=False),        # 0 = X, 1 = Y
    pa.field("title", pa.string()),                       # may be null: counted by stats, enrichment prompts on domain
    pa.field("image_uri", pa.string()),                   # local path or URL, null when unknown
    pa.field("attributes", pa.string()),                  # optional JSON object (brand, category, ...)
])

SEQUENCE_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),       # train / valid / test
    pa.field("items", pa.list_(pa.int32()), nullable=False),       # item_index, chronological
    pa.field("timestamps", pa.list_(pa.int64())),         # unix seconds aligned with items, null when unknown
])

QUARANTINE_SCHEMA = pa.schema([
    pa.field("file", pa.string(), nullable=False),
    pa.field("line", pa.int64(), nullable=False),         # 1-based line (or row) in that file
    pa.field("reason", pa.string(), nullable=False),
    pa.field("content", pa.string()),                     # the offending line, truncated
])


class DataError(ValueError):
    """Bad input data; the message names the file, the line, what was expected and what was found."""

    def __init__(self, file: str | Path, line: int | None, expected: str, found: str):
        self.file, self.line, self.expected, self.found = str(file), line, expected, found
        where = f"{file}, line {line}" if line is not None else str(file)
        super().__init__(f"{where}: expected {expected}, found {found}")


@dataclass
class DatasetMeta:
    name: str
    domains: tuple[str, str]
    n_items: tuple[int, int]
    source: str = ""
    source_format: str = ""
    fingerprint: str = ""
    quarantined_rows: int = 0
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        d = dict(self.__dict__)
        d["domains"], d["n_items"] = list(self.domains), list(self.n_items)
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "DatasetMeta":
        d = json.loads(text)
        d["domains"], d["n_items"] = tuple(d["domains"]), tuple(d["n_items"])
        return cls(**d)


@dataclass
class Dataset:
    """A prepared dataset held in memory as Arrow tables."""

    items: pa.Table
    sequences: pa.Table
    meta: DatasetMeta
    quarantine: pa.Table | None = None

    # -- convenience views -------------------------------------------------------------------
    @property
    def n_x(self) -> int:
        return self.meta.n_items[0]

    @property
    def n_y(self) -> int:
        return self.meta.n_items[1]

    @property
    def n_items(self) -> int:
        return self.n_x + self.n_y

    def item_domains(self) -> np.ndarray:
        """``(n_items,)`` int8 domain of each item_index."""
        return self.items.column("domain").to_numpy()

    def split(self, name: str) -> pa.Table:
        if name not in SPLITS:
            raise ValueError(f"unknown split '{name}', expected one of {SPLITS}")
        return self.sequences.filter(pc.equal(self.sequences.column("split"), name))

    # -- disk (a local folder or an object-store URI: llm_emf.files) -------------------------
    def write(self, folder: str | Path) -> str | Path:
        """Write the folder's tables; ``dataset.json`` last: readers take it as the sign the folder is whole."""
        folder = str(folder)
        files.makedirs(folder)
        files.write_parquet(self.items.cast(ITEM_SCHEMA), files.join(folder, "items.parquet"))
        files.write_parquet(self.sequences.cast(SEQUENCE_SCHEMA), files.join(folder, "sequences.parquet"))
        quarantine = self.quarantine if self.quarantine is not None else QUARANTINE_SCHEMA.empty_table()
        qpath = files.join(folder, "quarantine.parquet")
        if quarantine.num_rows:
            files.write_parquet(quarantine.cast(QUARANTINE_SCHEMA), qpath)
        elif files.exists(qpath):    # a rewrite must not keep an earlier run's bad rows
            files.remove(qpath)
        self.meta.quarantined_rows = quarantine.num_rows
        self.meta.fingerprint = fingerprint(self.items, self.sequences)
        files.write_text(files.join(folder, "dataset.json"), self.meta.to_json())
        return folder if files.is_remote(folder) else Path(folder)

    @classmethod
    def read(cls, folder: str | Path) -> "Dataset":
        folder = str(folder)
        path = {name: files.join(folder, name) for name in ("items.parquet", "sequences.parquet", "dataset.json",
                                                            "quarantine.parquet")}
        for name in ("items.parquet", "sequences.parquet", "dataset.json"):
            if not files.is_file(path[name]):
                raise DataError(path[name], None, "a prepared dataset file (run `llm-emf prepare` first)",
                                "no such file")
        items = _read_parquet(path["items.parquet"])
        sequences = _read_parquet(path["sequences.parquet"])
        for name, table, schema in (("items.parquet", items, ITEM_SCHEMA),
                                    ("sequences.parquet", sequences, SEQUENCE_SCHEMA)):
            missing = [f.name for f in schema if f.name not in table.column_names]
            if missing:
                raise DataError(path[name], None, f"columns {schema.names}", f"missing {missing}")
        try:
            meta = DatasetMeta.from_json(files.read_text(path["dataset.json"]))
        except json.JSONDecodeError as e:
            raise DataError(path["dataset.json"], e.lineno, "a JSON object (written by `llm-emf prepare`)",
                            f"invalid JSON ({e.msg}); the file may be truncated: prepare again") from None
        except (TypeError, KeyError) as e:
            raise DataError(path["dataset.json"], None, "the fields written by `llm-emf prepare`",
                            f"{type(e).__name__}: {e}") from None
        qpath = path["quarantine.parquet"]
        quarantine = _read_parquet(qpath) if files.exists(qpath) else None
        return cls(items.select(ITEM_SCHEMA.names).cast(ITEM_SCHEMA),
                   sequences.select(SEQUENCE_SCHEMA.names).cast(SEQUENCE_SCHEMA), meta, quarantine)


def _read_parquet(path: str | Path) -> pa.Table:
    try:
        return files.read_parquet(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(path, None, "a readable Parquet file (written by `llm-emf prepare`)",
                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}; the file may be "
                        "truncated: prepare again") from None


def fingerprint(items: pa.Table, sequences: pa.Table) -> str:
    """A content hash of the dataset (item ids, domains, sequences): tags runs, keys caches."""
    h = hashlib.sha256()
    h.update(np.asarray(items.column("item_index").to_numpy(), dtype=np.int64).tobytes())
    h.update("\0".join(items.column("item_id").to_pylist()).encode())
    h.update(np.asarray(items.column("domain").to_numpy(), dtype=np.int64).tobytes())
    h.update("\0".join(sequences.column("user_id").to_pylist()).encode())
    h.update("\0".join(sequences.column("split").to_pylist()).encode())
    seqs = sequences.column("items")
    h.update(np.asarray(pc.list_value_length(seqs).to_numpy(zero_copy_only=False), dtype=np.int64).tobytes())
    h.update(np.asarray(pc.list_flatten(seqs).to_numpy(zero_copy_only=False), dtype=np.int64).tobytes())
    return h.hexdigest()[:16]
