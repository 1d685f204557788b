"""Item text and image link from an Amazon metadata row (2018 and 2023 schemas), for amazon.py."""

from __future__ import annotations

import html
import json
import re

# config name -> field of each schema
TEXT_FIELDS = {"brand": {"2018": "brand", "2023": "store"},
               "categories": {"2018": "category", "2023": "categories"},
               "features": {"2018": "feature", "2023": "features"},
               "description": {"2018": "description", "2023": "description"}}
LABELS = {"brand": "Brand", "categories": "Categories", "features": "Features", "description": "Description"}
SEPARATORS = {"categories": " > ", "description": " "}     # lists: a category path, description paragraphs
TAG = re.compile(r"<[^>]*>")
BLANKS = re.compile(r"\s+")


def clean(value, separator: str = "; ") -> str:
    """Text of a metadata value: lists joined, HTML entities unescaped, tags removed, blanks collapsed."""
    if isinstance(value, list):
        parts = [clean(v) for v in value if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
        return separator.join(p for p in parts if p)
    if value is None or isinstance(value, (bool, dict)):
        return ""
    return BLANKS.sub(" ", TAG.sub(" ", html.unescape(str(value)))).strip()


def largest_image(row: dict, schema: str) -> str | None:
    if schema == "2018":
        for key in ("imageURLHighRes", "imageURL"):
            links = [u for u in (row.get(key) or []) if isinstance(u, str) and u.strip()]
            if links:
                return links[0].strip()
        return None
    images = [im for im in (row.get("images") or []) if isinstance(im, dict)]
    images.sort(key=lambda im: im.get("variant") != "MAIN")      # stable: MAIN first, else file order
    for image in images:
        for key in ("hi_res", "large", "thumb"):
            if isinstance(image.get(key), str) and image[key].strip():
                return image[key].strip()
    return None


def item_text(row: dict, schema: str, fields: list[str], max_chars: int) -> tuple[str | None, str]:
    """-> (text for ``title`` or None, attributes JSON of the raw fields)."""
    title = clean(row.get("title"))
    parts = [title + "." if title and not title.endswith((".", "!", "?")) else title]
    raw = {"title": row.get("title")}
    for name in fields:
        key = TEXT_FIELDS[name][schema]
        raw[key] = row.get(key)
        text = clean(row.get(key), SEPARATORS.get(name, "; "))
        if text:
            parts.append(f"{LABELS[name]}: {text}" + ("" if text.endswith((".", "!", "?")) else "."))
    text = " ".join(p for p in parts if p)[:max_chars].strip()
    return text or None, json.dumps({k: v for k, v in raw.items() if v not in (None, "", [])}, ensure_ascii=False)
