"""The CPU image stage (paths, file:// and http:// URLs, bad images) and the encoder actor without Ray."""

from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import pytest

from features_fixtures import synthetic_image
from llm_emf.features.encoders import FeatureEncoder, load_clip
from llm_emf.features.images import FetchPolicy, ImageLoader, decode_resized

pytestmark = pytest.mark.unit


@pytest.fixture()
def http_root(tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_decode_resizes_shorter_side_then_centre_crops(tmp_path):
    from PIL import Image

    img = np.zeros((40, 80, 3), dtype=np.uint8)  # (H, W, 3): left half black, right half white
    img[:, 40:] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    out = decode_resized((tmp_path / "a.png").read_bytes(), 20)  # -> 40x20, crop the middle 20 columns
    assert out.shape == (20, 20, 3) and out.dtype == np.uint8
    assert out[:, :8].max() < 30 and out[:, 12:].min() > 225


def test_image_loader_statuses(http_root):
    root, base = http_root
    synthetic_image(root / "ok.png", 1)
    (root / "bad.jpg").write_bytes(b"garbage")
    uris = [str(root / "ok.png"), (root / "ok.png").as_uri(), f"{base}/ok.png", f"{base}/absent.png",
            str(root / "bad.jpg"), str(root / "absent.png"), None, "  "]
    # the test server is on loopback, which only an explicit policy allows (test_image_fetch_safety.py)
    loader = ImageLoader(16, policy=FetchPolicy(allow_private=True, timeout_s=5))
    batch = loader({"item_id": np.arange(len(uris)), "image_uri": np.array(uris, dtype=object)})
    assert list(batch["image_status"]) == ["ok", "ok", "ok", "unreadable", "unreadable", "missing", "missing",
                                           "missing"]
    assert batch["pixels"].shape == (8, 16, 16, 3)
    assert (batch["pixels"][0] == batch["pixels"][1]).all() and (batch["pixels"][0] == batch["pixels"][2]).all()
    assert not batch["pixels"][3:].any()
    assert "HTTPError" in batch["image_error"][3] and "UnidentifiedImageError" in batch["image_error"][4]


def _batch(texts, statuses, size=64):
    n = len(texts)
    rng = np.random.default_rng(0)
    return {"item_id": np.array([f"i{k}" for k in range(n)], dtype=object), "domain": np.zeros(n, dtype=np.int8),
            "text": np.array(texts, dtype=object), "prompt_version": np.array([None] * n, dtype=object),
            "content_hash": np.array(["h"] * n, dtype=object), "image_uri": np.array([None] * n, dtype=object),
            "image_status": np.array(statuses, dtype=object), "image_error": np.array([None] * n, dtype=object),
            "pixels": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)}


def test_clip_encoder_normalises_zeroes_and_counts_truncation():
    enc = FeatureEncoder("clip", "tiny-clip-64", "", use_images=True, seed=0)
    long_text = "stainless steel whisk " * 40  # ~120 BPE tokens > 75
    out = enc(_batch(["Kuhn Rikon whisk", None, long_text], ["ok", "missing", "unreadable"])).to_pydict()
    text = np.array(out["text_embedding"], dtype=np.float32)  # (3, 64)
    image = np.array(out["image_embedding"], dtype=np.float32)  # (3, 64)
    assert text.shape == image.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), [1, 0, 1], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(image, axis=1), [1, 0, 0], atol=1e-5)
    assert out["has_text"] == [True, False, True] and out["has_image"] == [True, False, False]
    assert out["text_truncated"] == [False, False, True]


def test_local_checkpoint_loads_with_weights_only(tmp_path):
    import torch

    model, _ = load_clip("tiny-clip-64", "", seed=3, device="cpu")
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    other = FeatureEncoder("clip", "tiny-clip-64", str(tmp_path / "tiny.pt"), use_images=False, seed=99)
    same = FeatureEncoder("clip", "tiny-clip-64", "", use_images=False, seed=3)
    differs = FeatureEncoder("clip", "tiny-clip-64", "", use_images=False, seed=4)
    b = _batch(["a cutting mat"], ["missing"])
    emb = [np.array(e(dict(b)).column("text_embedding").to_pylist()) for e in (other, same, differs)]
    np.testing.assert_allclose(emb[0], emb[1], atol=1e-6)
    assert not np.allclose(emb[0], emb[2])
    assert other.clip.visual.output_dim == 64 and emb[0].shape == (1, 64)


def test_string_columns_survive_ray_nan_for_all_none():
    from llm_emf.features.encoders import _strings

    assert _strings(np.array([np.nan, "a", None], dtype=object)).to_pylist() == [None, "a", None]
