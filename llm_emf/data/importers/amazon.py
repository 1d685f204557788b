"""Amazon review dumps (McAuley lab), 2018 and 2023 releases, plain or gzip'd JSON lines, read streaming.

    data.source/<Domain>.jsonl[.gz]        reviews (also <Domain>.json[.gz], or 2018's <Domain>_5.json[.gz])
    data.source/meta_<Domain>.jsonl[.gz]   item metadata

    2018 reviews   reviewerID, asin, unixReviewTime (seconds)
    2018 metadata  asin, title, brand, category, feature, description, imageURL, imageURLHighRes
    2023 reviews   user_id, parent_asin, timestamp (milliseconds)
    2023 metadata  parent_asin, title, store, categories, features, description, images [{thumb, large, hi_res}]

The folder holds two domains (data.amazon.domains picks two when it holds more); X is the first named, else
the first in alphabetical order. Domain names are the file stems unless data.domain_x / data.domain_y are set.
Each file's schema is told by the fields of its first JSON object (data.amazon.schema forces one). Reviews
are read in batches of data.amazon.batch_rows lines; each batch keeps only user, item and time, as int32 codes
(dictionary-encoded incrementally, in order of first appearance) and int64 milliseconds, so memory grows by
16 bytes a review plus the distinct ids (Arrow strings); the recipe (amazon_recipe.py) works on those codes
and builds the sequence table's Arrow buffers directly.

Item text (``title``) is the title plus the metadata fields in data.amazon.text_fields, HTML entities
unescaped and tags removed, cut at data.amazon.text_chars; ``attributes`` keeps those raw fields as JSON;
``image_uri`` is the largest image (2018: imageURLHighRes, else imageURL; 2023: the MAIN image's hi_res,
else large, else thumb). Items without a metadata row are kept with no text and counted.

Bad rows (unparseable JSON, a missing id, a missing, non-integer or negative time, a time in another unit than
the schema's: 2018 seconds, 2023 milliseconds) are reported to BadRows: a DataError naming file and line, or
quarantined under data.skip_bad_rows. A review repeated exactly (same user, item and time) is counted and
dropped by the recipe (amazon_recipe.py); ``import_dataset``'s callers check that both domains kept items.

Case ids: the user id for train rows (and every row with data.amazon.holdout=merged); ``<user>:<domain name>``
for the valid/test cases of data.amazon.holdout=domain, the names at import time recorded as
``extra.case_id_suffixes``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...config import ConfigError
from ...config.data import DataConfig
from ..schema import ITEM_SCHEMA, DataError, Dataset, DatasetMeta
from ..textio import BadRows, parse_int, read_lines, single_file
from .amazon_recipe import run_recipe
from .amazon_text import TEXT_FIELDS, item_text, largest_image
from .domains import DomainNames, resolve_names
from .timestamps import PER_SECOND, UNITS, unit_problem

SCHEMAS = ("2018", "2023")
REVIEW_FIELDS = {"2018": ("reviewerID", "asin", "unixReviewTime"), "2023": ("user_id", "parent_asin", "timestamp")}
META_ID = {"2018": "asin", "2023": "parent_asin"}
TIME_UNIT = {"2018": 0, "2023": 1}          # index into timestamps.UNITS
SUFFIXES = (".jsonl.gz", ".json.gz", ".jsonl", ".json")


# --- files ------------------------------------------------------------------------------------------------

def _stem(path: Path) -> str | None:
    return next((path.name[:-len(s)] for s in SUFFIXES if path.name.endswith(s)), None)


def domain_files(folder: Path, wanted: str) -> list[tuple[str, Path, Path]]:
    """-> [(domain stem, reviews file, metadata file)] for X and Y."""
    stems: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        stem = _stem(path)
        if stem is not None:
            stems.setdefault(stem, []).append(path)
    found = "; stems here: " + (", ".join(sorted(stems)[:20]) + (f" and {len(stems) - 20} more" if len(stems) > 20
                                                                  else "") if stems else "none")
    domains = [s.strip() for s in wanted.split(",") if s.strip()] if wanted else \
        sorted(s[len("meta_"):] for s in stems if s.startswith("meta_"))
    if len(domains) != 2:
        where = "data.amazon.domains" if wanted else f"meta_<Domain>.jsonl[.gz] files in {folder}"
        raise DataError(folder, None, f"two domains ({where}; data.amazon.domains=X,Y picks two)",
                        f"{len(domains)}: {domains[:6]}{found}")
    out = []
    for domain in domains:
        reviews = stems.get(domain, []) + stems.get(f"{domain}_5", [])
        meta = stems.get(f"meta_{domain}", [])
        paths = []
        for kind, candidates, name in (("reviews", reviews, f"{domain}.jsonl[.gz]"),
                                       ("metadata", meta, f"meta_{domain}.jsonl[.gz]")):
            path = single_file(folder / name, f"{kind} file for domain {domain!r}", candidates)
            if path is None:
                raise DataError(folder / name, None, f"one {kind} file for domain {domain!r} ({name}, or "
                                f"{domain}_5.json[.gz] for reviews; data.amazon.domains names the stems)",
                                f"none{found}")
            paths.append(path)
        out.append((domain, paths[0], paths[1]))
    return out


def schema_of(path: Path, row: dict, line: int, forced: int, fields: dict[str, tuple[str, ...]]) -> str:
    if forced:
        return str(forced)
    for schema in SCHEMAS:
        if all(f in row for f in fields[schema]):
            return schema
    expected = " or ".join(f"{s} fields {', '.join(fields[s])}" for s in SCHEMAS)
    raise DataError(path, line, f"{expected} (or data.amazon.schema set)", f"fields {sorted(row)[:12]}")


def json_rows(path: Path, bad: BadRows):
    """Yield ``(line, object, text)`` for each line holding a JSON object; others are bad rows."""
    for number, text in read_lines(path, bad):
        try:
            row = json.loads(text)
        except ValueError as e:
            bad.report(path, number, "a JSON object", f"unparseable JSON ({getattr(e, 'msg', e)} at column "
                       f"{getattr(e, 'colno', '?')})", text)
            continue
        if not isinstance(row, dict):
            bad.report(path, number, "a JSON object", f"a JSON {type(row).__name__}", text)
            continue
        yield number, row, text


# --- reviews ----------------------------------------------------------------------------------------------

class Codes:
    """String ids -> int32 codes in order of first appearance, encoded batch by batch: only the distinct ids are
    kept (an Arrow string array, ``ids[code]``), never a string per review.

    Batches are queued as Arrow strings and encoded once the queue holds as many rows as there are distinct
    ids (or ``min_rows``): each encoding hashes the known ids once, so the cost stays linear in the rows read and
    the queue is bounded by the distinct ids."""

    def __init__(self, min_rows: int):
        self.ids = pa.array([], pa.string())
        self.min_rows = min_rows
        self.queue: list[pa.Array] = []
        self.queued = 0

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, values: list[str]) -> np.ndarray | None:
        """Queue a batch; -> the codes of every queued batch when they are encoded now, else None."""
        self.queue.append(pa.array(values, pa.string()))
        self.queued += len(values)
        return self.flush() if self.queued >= max(self.min_rows, len(self.ids)) else None

    def flush(self) -> np.ndarray | None:
        if not self.queue:
            return None
        batch = pa.concat_arrays(self.queue).dictionary_encode()
        self.queue, self.queued = [], 0
        distinct = batch.dictionary                                 # the batch's ids, first appearance order
        codes = pc.fill_null(pc.index_in(distinct, value_set=self.ids), -1).to_numpy().astype(np.int32)
        new = codes < 0
        codes[new] = len(self.ids) + np.arange(int(new.sum()), dtype=np.int32)
        if new.any():
            self.ids = pa.concat_arrays([self.ids, distinct.filter(pa.array(new))])
        return codes[batch.indices.to_numpy()]


@dataclass
class Reviews:
    """One domain's kept reviews as numpy chunks in file order (one per encoding), consumed by the recipe."""
    users: list[np.ndarray]   # int32 codes into the user Codes shared by both domains
    items: list[np.ndarray]   # int32 codes into ``item_ids``
    times: list[np.ndarray]   # int64 milliseconds (sort key; stored as seconds)
    item_ids: pa.Array        # this domain's distinct item ids, by code
    summary: dict


def _id(value) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value, unit: int, schema: str) -> tuple[int | None, tuple[str, str] | None]:
    """(milliseconds, None) or (None, (expected, found)). The unit is the schema's, never guessed from the file."""
    ts = value if isinstance(value, int) and not isinstance(value, bool) else \
        parse_int(value) if isinstance(value, str) else None
    if ts is None or ts < 0:
        return None, (f"a non-negative integer unix time in {UNITS[unit]}", repr(value)[:80])
    problem = unit_problem(ts, unit, basis=f"the unit of the {schema} review schema")
    if problem:
        return None, problem
    return ts * 1000 // PER_SECOND[unit], None


def read_reviews(path: Path, forced: int, batch_rows: int, bad: BadRows, users: Codes) -> Reviews:
    """Stream ``path`` in batches of ``batch_rows`` reviews; each batch's ids become int32 codes (``users`` is
    shared by both domains, so a user has one code) and its Python objects are freed."""
    items = Codes(batch_rows)
    out = Reviews([], [], [], items.ids, {})
    b_users, b_items, b_times = [], [], []      # the batch being read
    schema, bad_before = None, len(bad)

    def flush(end: bool = False):
        if b_users:
            for codes, chunks in ((users.add(b_users), out.users), (items.add(b_items), out.items)):
                if codes is not None:
                    chunks.append(codes)
            out.times.append(np.array(b_times, dtype=np.int64))
            b_users.clear(), b_items.clear(), b_times.clear()
        if end:                                 # this file's codes complete before the next file is read
            for codes, chunks in ((users.flush(), out.users), (items.flush(), out.items)):
                if codes is not None:
                    chunks.append(codes)

    for number, row, text in json_rows(path, bad):
        if schema is None:
            schema = schema_of(path, row, number, forced, REVIEW_FIELDS)
            user_f, item_f, time_f = REVIEW_FIELDS[schema]
            unit = TIME_UNIT[schema]
        user, item = _id(row.get(user_f)), _id(row.get(item_f))
        if user is None or item is None:
            missing = user_f if user is None else item_f
            bad.report(path, number, f"a non-empty {missing} ({schema} reviews)", repr(row.get(missing))[:80], text)
            continue
        ms, problem = _time(row.get(time_f), unit, schema)
        if problem:
            said = "" if "schema" in problem[0] else f" ({schema} reviews)"
            bad.report(path, number, f"{time_f}: {problem[0]}{said}", problem[1], text)
            continue
        b_users.append(user)
        b_items.append(item)
        b_times.append(ms)
        if len(b_users) >= batch_rows:
            flush()
    flush(end=True)
    if schema is None:
        raise DataError(path, None, "review lines (JSON objects)", "none")
    kept, n_bad = sum(len(c) for c in out.users), len(bad) - bad_before
    out.item_ids = items.ids
    out.summary = {"file": path.name, "schema": schema, "time_unit": UNITS[unit], "rows": kept + n_bad,
                   "bad_rows": n_bad, "reviews": kept}
    return out


# --- metadata ---------------------------------------------------------------------------------------------

def read_metadata(path: Path, wanted: list[str], cfg: DataConfig, bad: BadRows) -> tuple[list, dict]:
    """-> ([(title, image_uri, attributes)] aligned with ``wanted`` item ids, summary)."""
    position = {item: i for i, item in enumerate(wanted)}
    found: list = [None] * len(wanted)
    schema, rows, duplicates, bad_before = None, 0, 0, len(bad)
    for number, row, text in json_rows(path, bad):
        rows += 1                          # JSON objects; unparseable lines are counted in bad_rows
        if schema is None:
            schema = schema_of(path, row, number, cfg.amazon.schema, {s: (META_ID[s],) for s in SCHEMAS})
        item = _id(row.get(META_ID[schema]))
        if item is None:
            bad.report(path, number, f"a non-empty {META_ID[schema]} ({schema} metadata)",
                       repr(row.get(META_ID[schema]))[:80], text)
            continue
        at = position.get(item)
        if at is None:
            continue
        if found[at] is not None:          # the 2018 dumps repeat some items: the first row wins
            duplicates += 1
            continue
        title, attributes = item_text(row, schema, cfg.amazon.text_fields, cfg.amazon.text_chars)
        found[at] = (title, largest_image(row, schema), attributes)
    missing = sum(f is None for f in found)
    summary = {"file": path.name, "schema": schema, "rows": rows, "bad_rows": len(bad) - bad_before,
               "items_with_metadata": len(wanted) - missing, "items_without_metadata": missing,
               "repeated_rows": duplicates,
               "items_with_image": sum(1 for f in found if f is not None and f[1])}
    return [f or (None, None, None) for f in found], summary


# --- the importer -----------------------------------------------------------------------------------------

def check_config(cfg: DataConfig) -> None:
    unknown = [f for f in cfg.amazon.text_fields if f not in TEXT_FIELDS]
    if unknown:
        raise ConfigError(f"data.amazon.text_fields: expected names among {list(TEXT_FIELDS)}, found {unknown}")


def import_amazon(folder: Path, cfg: DataConfig, bad: BadRows) -> Dataset:
    check_config(cfg)
    files = domain_files(folder, cfg.amazon.domains)
    users = Codes(cfg.amazon.batch_rows)   # one code per user across both domains: X's file first, then Y's
    reviews = [read_reviews(r, cfg.amazon.schema, cfg.amazon.batch_rows, bad, users) for _, r, _ in files]
    names = resolve_names(cfg, DomainNames((files[0][0], files[1][0]), f"file names in {folder.name}"))
    result = run_recipe(reviews, users.ids, cfg, names.names, folder)
    item_ids, titles, images, attributes, metadata = [], [], [], [], []
    shared = set(result.item_ids[0]) & set(result.item_ids[1])
    for d, (_, _, meta_path) in enumerate(files):
        rows, summary = read_metadata(meta_path, result.item_ids[d], cfg, bad)
        metadata.append(summary)
        item_ids += [f"{names.names[d]}:{i}" if i in shared else i for i in result.item_ids[d]]
        titles += [r[0] for r in rows]
        images += [r[1] for r in rows]
        attributes += [r[2] for r in rows]
    n_items = (len(result.item_ids[0]), len(result.item_ids[1]))
    items = pa.table({"item_index": pa.array(range(sum(n_items)), pa.int32()),
                      "item_id": item_ids, "domain": pa.array([0] * n_items[0] + [1] * n_items[1], pa.int8()),
                      "title": pa.array(titles, pa.string()), "image_uri": pa.array(images, pa.string()),
                      "attributes": pa.array(attributes, pa.string())}, schema=ITEM_SCHEMA)
    extra = {"domain_names": names.origin, "missing_split_files": [],
             "reviews": [r.summary for r in reviews], "metadata": metadata,
             "items_missing_metadata": [m["items_without_metadata"] for m in metadata],
             "items_in_both_domains": len(shared), "recipe": result.counts,
             "case_ids": ("<user>" if cfg.amazon.holdout == "merged" else
                          "<user> for train rows, <user>:<domain> for the valid/test cases (one per domain)"),
             "case_id_suffixes": [f":{n}" for n in names.names]}
    meta = DatasetMeta(name=cfg.name or folder.name, domains=names.names, n_items=n_items, source=str(folder),
                       source_format="amazon", extra=extra)
    return Dataset(items, result.sequences, meta)
