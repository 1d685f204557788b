"""People and cases: a sequence row is one training sequence or one evaluation case, and one person may have
several. ``stats`` and ``dataset.json`` (``extra.counts``) count both, from each importer's case ids (recorded in
``extra.case_ids``):

    llmcdsr       ``<file tag>:<user>``: user numbers restart in every file, so each id is a person
    c2dsr         ``<split>:<user>`` or ``<split>:<user>:<line>``: the person is ``<user>`` (the same user_idx in
                  every split file; a user id holds no ``:``). Older datasets' ``<split>:<user>:A`` / ``:B`` too.
    amazon        ``<user>`` (train), ``<user>:<domain>`` (valid/test with data.amazon.holdout=domain; the
                  suffixes are ``extra.case_id_suffixes``, the names at import time): the person is ``<user>``
    interactions  ``<user>`` in every split
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .schema import SPLITS, Dataset

C2DSR_PERSON = (r"^[^:]*:([^:]*)(:.*)?$", r"\1")      # <split>:<user>[:<line>] -> <user>


def last_items(items: pa.ChunkedArray) -> np.ndarray:
    lengths = pc.list_value_length(items).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(items).to_numpy(zero_copy_only=False).astype(np.int64)
    ends = np.cumsum(lengths) - 1
    return np.where(lengths > 0, flat[np.maximum(ends, 0)] if len(flat) else -1, -1)


def _amazon_people(ds: Dataset, ids: pa.Array) -> pa.Array:
    extra = ds.meta.extra if isinstance(ds.meta.extra, dict) else {}
    holdout = ((extra.get("recipe") or {}).get("settings") or {}).get("holdout", "domain")
    if holdout == "merged" or not len(ids):
        return ids
    suffixes = extra.get("case_id_suffixes") or [f":{name}" for name in ds.meta.domains]
    split = ds.sequences.column("split").combine_chunks()
    is_case = pc.not_equal(split, "train").to_numpy(zero_copy_only=False)
    last = last_items(ds.sequences.column("items"))
    out = ids
    for d, suffix in enumerate(suffixes):          # a case's suffix names its target's domain
        in_d = (last >= ds.n_x) if d else ((last >= 0) & (last < ds.n_x))
        mask = is_case & in_d & pc.ends_with(ids, suffix).to_numpy(zero_copy_only=False)
        if mask.any():
            out = pc.if_else(pa.array(mask), pc.utf8_slice_codeunits(ids, 0, -len(suffix)), out)
    return out


def person_ids(ds: Dataset) -> pa.Array:
    """The person behind each sequence row, aligned with ``ds.sequences``."""
    ids = ds.sequences.column("user_id").combine_chunks()
    if ds.meta.source_format == "c2dsr":
        return pc.replace_substring_regex(ids, *C2DSR_PERSON)
    if ds.meta.source_format == "amazon":
        return _amazon_people(ds, ids)
    return ids


def people_counts(ds: Dataset) -> dict:
    """``{"sequences": {split: rows}, "people": {split: distinct people, "all": distinct people}}``."""
    people = person_ids(ds)
    split = ds.sequences.column("split").combine_chunks()
    out: dict = {"sequences": {}, "people": {}}
    for name in SPLITS:
        mask = pc.equal(split, name)
        out["sequences"][name] = int(pc.sum(mask).as_py() or 0)
        out["people"][name] = int(pc.count_distinct(people.filter(mask)).as_py())
    out["people"]["all"] = int(pc.count_distinct(people).as_py())
    return out
