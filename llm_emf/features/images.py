"""The CPU stage of ``embed``: fetch, decode and resize item images before the encoder stage.

An image comes from a local path, a ``file://`` URL or an ``http(s)://`` URL (urllib with a timeout).
A missing URI or an unreadable image yields ``has_image=false`` and a status saying why, never an exception:
the encoder writes a zero vector for it and the driver counts it.
"""

from __future__ import annotations

import io
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

MAX_IMAGE_BYTES = 32 << 20  # refuse anything larger than 32 MiB instead of exhausting memory


def read_image_bytes(uri: str, timeout_s: float) -> bytes:
    if uri.startswith(("http://", "https://")):
        with urllib.request.urlopen(uri, timeout=timeout_s) as response:  # noqa: S310 - schemes checked above
            data = response.read(MAX_IMAGE_BYTES + 1)
    else:
        path = Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path)) if uri.startswith("file://") else Path(uri)
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise ValueError(f"image larger than {MAX_IMAGE_BYTES} bytes")
        data = path.read_bytes()
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"image larger than {MAX_IMAGE_BYTES} bytes")
    return data


def decode_resized(data: bytes, size: int) -> np.ndarray:
    """``(size, size, 3)`` uint8: shorter side to ``size`` (bicubic), then a centre crop, as CLIP preprocesses."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        left, top = (im.width - size) // 2, (im.height - size) // 2
        return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


class ImageLoader:
    """Ray Data batch function: ``image_uri`` -> ``pixels`` (N, S, S, 3) uint8, ``image_status``, ``image_error``."""

    def __init__(self, size: int, timeout_s: float = 10.0):
        self.size, self.timeout_s = size, timeout_s

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["item_id"])
        pixels = np.zeros((n, self.size, self.size, 3), dtype=np.uint8)
        status, errors = ["ok"] * n, [None] * n
        for i, uri in enumerate(batch["image_uri"]):
            if not isinstance(uri, str) or not uri.strip():
                status[i] = "missing"
                continue
            try:
                pixels[i] = decode_resized(read_image_bytes(uri.strip(), self.timeout_s), self.size)
            except FileNotFoundError as e:
                status[i], errors[i] = "missing", f"{type(e).__name__}: {e}"[:300]
            except Exception as e:  # noqa: BLE001 - corrupt file, bad URL, timeout: recorded and counted
                status[i], errors[i] = "unreadable", f"{type(e).__name__}: {e}"[:300]
        batch["pixels"] = pixels
        batch["image_status"] = np.array(status, dtype=object)
        batch["image_error"] = np.array(errors, dtype=object)
        return batch
