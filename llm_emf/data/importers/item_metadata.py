"""An optional item-metadata CSV for formats whose item lists carry no text (C2DSR releases ship one)::

    id,title,attributes[,more columns]

``id`` (or ``item_id`` / ``item`` / ``asin``) is the item id of the item lists; ``title`` is optional;
``attributes``, when present, is a JSON object (kept as is) or free text (kept under the key "attributes"),
and every other non-empty column is added to that object. Ids the dataset does not have are counted in
dataset.json (a release's metadata often covers more items than a pair); when none matches, the ids are of
another kind (row numbers instead of ASINs, say) and the import stops.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..schema import DataError
from ..textio import BadRows, read_csv_records, wrong_width

ID_COLUMNS = ("id", "item_id", "item", "asin")
MAX_LISTED = 5


@dataclass
class ItemMetadata:
    titles: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)    # item id -> JSON object text
    summary: dict = field(default_factory=dict)                 # recorded in dataset.json


def read_item_metadata(path: Path, known_ids: set[str], bad: BadRows) -> ItemMetadata:
    records = read_csv_records(path, bad)
    header = next(records, None)
    if header is None:
        raise DataError(path, None, "a header row id,title[,attributes,...]", "an empty file")
    names = [f.strip() for f in header.fields]
    id_column = next((c for c in ID_COLUMNS if c in names), None)
    if id_column is None or len(set(names)) != len(names):
        raise DataError(path, header.line, f"a header row with an id column ({' / '.join(ID_COLUMNS)}), "
                        "each column name once", repr(header.text))
    meta, seen, unknown = ItemMetadata(), set(), []
    for record in records:
        problem = wrong_width(record, len(names))
        row = dict(zip(names, (f.strip() for f in record.fields)))
        item = row.pop(id_column, "")
        if problem is None and not item:
            problem = ("a non-empty id", "an empty field")
        elif problem is None and item in seen:
            problem = ("each id once", f"id {item!r} again")
        if problem:
            bad.report(path, record.line, *problem, record.text)
            continue
        seen.add(item)
        if item not in known_ids:
            unknown.append(item)
            continue
        title, attributes = row.pop("title", ""), attributes_json(row)
        if title:
            meta.titles[item] = title
        if attributes:
            meta.attributes[item] = attributes
    matched = len(seen) - len(unknown)
    if unknown and not matched:
        raise DataError(path, None, "ids that appear in the item lists",
                        f"none of {len(unknown)} ids (first {unknown[0]!r})")
    meta.summary = {"file": str(path), "rows": len(seen), "matched": matched, "titles": len(meta.titles),
                    "unknown_ids": len(unknown), "first_unknown": unknown[:MAX_LISTED]}
    return meta


def attributes_json(row: dict[str, str]) -> str | None:
    """The row's attributes (column ``attributes`` plus any other non-empty column) as a JSON object, or None."""
    out: dict = {}
    text = row.pop("attributes", "")
    if text:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            out.update(parsed)
        else:
            out["attributes"] = text
    out.update({k: v for k, v in row.items() if k and v})
    return json.dumps(out, ensure_ascii=False) if out else None
