"""The ``vllm`` enrichment backend: Ray Data's built-in vLLM batch inference (``ray.data.llm``), GPUs only.

vLLM is a GPU-only extra (``pip install llm-emf[gpu]``): imported lazily so the rest works without it.
"""

from __future__ import annotations

import numpy as np

# columns of the enrichment pipeline that must survive the vLLM stages
CARRIED = ("item_id", "domain", "title", "cache_key", "prompt", "has_title")


def _preprocess(max_new_tokens: int, temperature: float, seed: int):
    def preprocess(row: dict) -> dict:
        return dict(row, messages=[{"role": "user", "content": row["prompt"]}],
                    sampling_params=dict(temperature=temperature, max_tokens=max_new_tokens, seed=seed))
    return preprocess


def _postprocess(row: dict) -> dict:
    tokens = row.get("generated_tokens")
    return dict({k: row[k] for k in CARRIED}, enrichment=row.get("generated_text") or "",
                n_new_tokens=0 if tokens is None else len(tokens))


def _collect_errors(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Failed rows bypass postprocess and carry ``__inference_error__``; give every row the same columns."""
    n = len(batch["item_id"])
    raw = batch.get("__inference_error__", np.array([""] * n, dtype=object))
    out = {k: batch[k] for k in CARRIED}
    out["enrichment"] = batch.get("enrichment", np.array([""] * n, dtype=object))
    out["n_new_tokens"] = batch.get("n_new_tokens", np.zeros(n, dtype=np.int64))
    out["error"] = np.array([str(e) if e else None for e in raw], dtype=object)
    return out


def vllm_enrich(ds, model_source: str, *, engine_kwargs: dict, concurrency: int, batch_size: int,
                max_new_tokens: int, temperature: float, seed: int):
    """prompt rows -> rows with ``enrichment``, ``n_new_tokens`` and ``error``."""
    try:
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig
    except ImportError as e:  # pragma: no cover - depends on the install
        from llm_emf.config import ConfigError
        raise ConfigError(f"features.enrich.backend=vllm needs the GPU extra (pip install 'llm-emf[gpu]'): {e}")
    config = vLLMEngineProcessorConfig(
        model_source=model_source,
        engine_kwargs=dict(engine_kwargs),
        concurrency=concurrency,           # one engine replica per GPU
        batch_size=batch_size,
        should_continue_on_error=True,     # a failed row keeps its place with an error instead of killing the job
    )
    processor = build_processor(config, preprocess=_preprocess(max_new_tokens, temperature, seed),
                                postprocess=_postprocess)
    return processor(ds).map_batches(_collect_errors, batch_format="numpy")
