"""Item features: LLM enrichment of item text (enrich) and frozen text and image embeddings (embed) on Ray Data."""
