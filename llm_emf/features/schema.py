"""Schemas of the stage-1 tables: the enriched item table and the feature table the model reads.

The feature table has one row per item, keyed by ``item_id`` (the catalog's source id, unique across
both domains after ``prepare``). Embeddings are L2-normalised float32 lists; an item without an image or
text has a zero vector and ``has_image`` / ``has_text`` false, so the model can mask it instead of
treating zeros as a real feature.
"""

from __future__ import annotations

import pyarrow as pa

ENRICHED_SCHEMA = pa.schema([
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("domain", pa.int8(), nullable=False),
    pa.field("title", pa.string()),
    pa.field("enrichment", pa.string()),        # generated text (reasoning stripped); null when failed
    pa.field("text", pa.string()),              # what the text encoder sees: title + enrichment
    pa.field("prompt_version", pa.string(), nullable=False),
    pa.field("llm_model", pa.string(), nullable=False),
    pa.field("cache_key", pa.string(), nullable=False),   # hash of (item, prompt version, model, generation params)
    pa.field("error", pa.string()),             # null on success
])

FEATURE_SCHEMA = pa.schema([
    pa.field("item_id", pa.string(), nullable=False),
    pa.field("domain", pa.int8(), nullable=False),
    pa.field("text_embedding", pa.list_(pa.float32())),   # (e_text,), L2-normalised, zeros when has_text is false
    pa.field("image_embedding", pa.list_(pa.float32())),  # (e_img,), L2-normalised, zeros when has_image is false
    pa.field("has_text", pa.bool_(), nullable=False),
    pa.field("has_image", pa.bool_(), nullable=False),
    pa.field("text_truncated", pa.bool_(), nullable=False),
    pa.field("text_model", pa.string()),
    pa.field("image_model", pa.string()),
    pa.field("prompt_version", pa.string()),
    pa.field("content_hash", pa.string(), nullable=False),  # hash of the inputs + model names: re-runs skip it
])
