"""Builders for the canonical Arrow tables (ITEM_SCHEMA, SEQUENCE_SCHEMA) shared by every importer."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from .schema import ITEM_SCHEMA, SEQUENCE_SCHEMA


@dataclass
class ItemRows:
    """One domain's items in item_index order (the caller offsets domain Y by n_x)."""

    item_ids: list[str] = field(default_factory=list)
    titles: list[str | None] = field(default_factory=list)
    image_uris: list[str | None] = field(default_factory=list)

    def add(self, item_id: str, title: str | None = None, image_uri: str | None = None) -> int:
        self.item_ids.append(item_id)
        self.titles.append(title or None)
        self.image_uris.append(image_uri or None)
        return len(self.item_ids) - 1

    def __len__(self) -> int:
        return len(self.item_ids)


def items_table(x: ItemRows, y: ItemRows) -> pa.Table:
    """X items get item_index 0..n_x-1, Y items n_x..n_x+n_y-1."""
    n_x, n_y = len(x), len(y)
    return pa.Table.from_pydict({
        "item_index": list(range(n_x + n_y)),
        "item_id": x.item_ids + y.item_ids,
        "domain": [0] * n_x + [1] * n_y,
        "title": x.titles + y.titles,
        "image_uri": x.image_uris + y.image_uris,
        "attributes": [None] * (n_x + n_y),
    }, schema=ITEM_SCHEMA)


@dataclass
class SequenceRows:
    user_ids: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    items: list[list[int]] = field(default_factory=list)
    timestamps: list[list[int] | None] = field(default_factory=list)

    def add(self, user_id: str, split: str, items: list[int], timestamps: list[int] | None = None) -> None:
        self.user_ids.append(user_id)
        self.splits.append(split)
        self.items.append(items)
        self.timestamps.append(timestamps)

    def __len__(self) -> int:
        return len(self.user_ids)

    def table(self) -> pa.Table:
        return pa.Table.from_pydict({"user_id": self.user_ids, "split": self.splits, "items": self.items,
                                     "timestamps": self.timestamps}, schema=SEQUENCE_SCHEMA)
