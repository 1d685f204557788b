"""GPU paths: the vLLM backend through ray.data.llm and open_clip on CUDA. Skipped cleanly without CUDA."""

from __future__ import annotations

import importlib.util

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from features_fixtures import feature_config

pytestmark = [pytest.mark.gpu, pytest.mark.integration,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs the gpu extra (vllm)")
def test_vllm_backend_enriches_every_row(local_ray, catalog, tmp_path):
    from llm_emf.features.enrich import run_enrich

    cfg = feature_config(tmp_path, **{"features.enrich.backend": "vllm",
                                      "features.enrich.model": "embedded:qwen2.5-coder-0.5b-instruct",
                                      "features.enrich.max_new_tokens": 16})
    cfg.features.enrich.engine_kwargs = {"max_model_len": 1024, "gpu_memory_utilization": 0.5}
    summary = run_enrich(cfg, catalog, ("Food", "Kitchen"))
    assert (summary.done, summary.failed) == (8, 0)
    rows = pq.read_table(cfg.features.enrich.output).to_pylist()
    assert len(rows) == 8 and all(r["enrichment"] for r in rows)


def test_open_clip_on_cuda_matches_cpu(catalog, tmp_path):
    from llm_emf.features.encoders import FeatureEncoder

    enc = FeatureEncoder("clip", "tiny-clip-64", "", use_images=True, seed=0)
    assert enc.device == "cuda"
    rng = np.random.default_rng(0)
    batch = {"item_id": np.array(["a", "b"], dtype=object), "domain": np.zeros(2, dtype=np.int8),
             "text": np.array(["whisk", "coffee maker"], dtype=object),
             "prompt_version": np.array([None, None], dtype=object), "content_hash": np.array(["h", "h"], dtype=object),
             "image_uri": np.array([None, None], dtype=object), "image_status": np.array(["ok", "ok"], dtype=object),
             "image_error": np.array([None, None], dtype=object),
             "pixels": rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)}
    gpu = np.array(enc(dict(batch)).column("image_embedding").to_pylist())
    enc.clip.cpu()
    enc.device, enc.mean, enc.std = "cpu", enc.mean.cpu(), enc.std.cpu()
    cpu = np.array(enc(dict(batch)).column("image_embedding").to_pylist())
    np.testing.assert_allclose(gpu, cpu, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(gpu, axis=1), 1.0, atol=1e-5)
