"""Deterministic synthetic product images: exercise the image path where the data has no real images.

Each item gets a small PNG whose colours and shapes come from ``sha256(seed, domain, item_id)`` and which
shows the initials of its title. The same (seed, item_id, domain, title, size) always gives the same bytes:
nothing random, no timestamps or metadata in the PNG. They carry no visual meaning about the product;
they only let the image encoder, its caching and the fusion code run end to end.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from pathlib import Path

import pyarrow as pa
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from llm_emf import files

from .schema import Dataset

IMAGE_DIR = "images"


def _initials(title: str | None, item_id: str) -> str:
    words = [w for w in (title or item_id).split() if w[:1].isalnum()]
    return "".join(w[0] for w in words[:2]).upper() or item_id[:2].upper()


def draw_item_image(item_id: str, domain: int, title: str | None, size: int = 64, seed: int = 0) -> bytes:
    """PNG bytes of a ``size`` x ``size`` RGB image determined by the arguments alone."""
    digest = hashlib.sha256(f"{seed}\0{domain}\0{item_id}".encode()).digest()  # 32 bytes drive every choice
    background = tuple(96 + b // 2 for b in digest[0:3])  # light colours so the text stays readable
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for k in range(1 + digest[3] % 3):  # 1-3 shapes
        b = digest[4 + 7 * k: 11 + 7 * k]
        x0, y0 = b[0] * size // 512, b[1] * size // 512            # top-left in the first half
        x1, y1 = x0 + size // 4 + b[2] * size // 512, y0 + size // 4 + b[3] * size // 512
        colour = (b[4], b[5], b[6])
        box = (x0, y0, min(x1, size - 1), min(y1, size - 1))
        # the domain picks the shape family, so X and Y images differ systematically
        (draw.ellipse if (b[0] + domain) % 2 else draw.rectangle)(box, fill=colour)
    draw.text((2, size - 12), _initials(title, item_id), fill=(0, 0, 0), font=ImageFont.load_default())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def add_synthetic_images(ds: Dataset, folder: str | Path, size: int = 64, seed: int = 0) -> Dataset:
    """Write ``<folder>/images/<item_index>.png`` for every item and set image_uri to it: the absolute path
    for a local folder, the object's URI (``s3://...``) for an object-store folder."""
    if files.is_remote(folder):
        # drawn locally, then uploaded as one copy (pyarrow uploads in parallel): one PUT per item in turn is slow
        remote = files.join(folder, IMAGE_DIR)
        with tempfile.TemporaryDirectory(prefix="llm-emf-images-") as tmp:
            _draw_all(ds, Path(tmp), size, seed)
            files.upload(Path(tmp), remote)
        uris = [files.join(remote, f"{index}.png") for index in ds.items.column("item_index").to_pylist()]
    else:
        uris = _draw_all(ds, Path(folder).resolve() / IMAGE_DIR, size, seed)
    position = ds.items.schema.get_field_index("image_uri")
    ds.items = ds.items.set_column(position, "image_uri", pa.array(uris, pa.string()))
    return ds


def _draw_all(ds: Dataset, image_dir: Path, size: int, seed: int) -> list[str]:
    """Every item's image as ``image_dir/<item_index>.png``; returns their paths."""
    image_dir.mkdir(parents=True, exist_ok=True)
    columns = [ds.items.column(c).to_pylist() for c in ("item_index", "item_id", "domain", "title")]
    paths = []
    for index, item_id, domain, title in tqdm(list(zip(*columns)), desc="synthetic images", unit="img",
                                              disable=None, mininterval=5):
        path = image_dir / f"{index}.png"
        path.write_bytes(draw_item_image(item_id, domain, title, size, seed))
        paths.append(str(path))
    return paths
