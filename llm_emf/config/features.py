"""Config sections: LLM enrichment and multimodal embedding (method.md stage 1)."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import help_field, section

IMAGE_SCHEMES = ("http", "https", "file", "s3", "gs")   # 'file': a local path or a file:// URL; s3/gs: objects


@dataclass
class EnrichConfig:
    backend: str = help_field("transformers", "(str) vllm (ray.data.llm, GPUs), transformers (batched generate) or "
                              "none (raw titles)", choices=("vllm", "transformers", "none"))
    model: str = help_field("embedded:qwen2.5-coder-0.5b-instruct", "(str) a hub name, a local folder, a .gguf "
                            "file, or 'embedded:<name>' for a model installed from PyPI")
    prompt: str = help_field("enrich_v1", "(str) prompt template name (llm_emf/features/prompts/<name>.txt) or a path")
    max_new_tokens: int = help_field(64, "(int) cap on generated tokens per item", min=1, max=4096)
    temperature: float = help_field(0.0, "(float) sampling temperature; 0 is greedy", min=0.0, max=5.0)
    batch_size: int = help_field(8, "(int) prompts per generate() batch", min=1, max=4096)
    concurrency: int = help_field(1, "(int) model replicas (one per GPU with vllm)", min=1)
    threads: int = help_field(0, "(int) torch threads per transformers actor on CPU; 0: its node's CPUs shared "
                              "among the job's actors", min=0, max=1024)
    engine_kwargs: dict[str, str | int | float | bool] = help_field(
        None, "(dict) extra engine arguments passed through to vLLM", default_factory=dict)
    output: str = help_field("runs/features/enriched.parquet", "(str) enriched item table (Parquet)")
    limit: int = help_field(0, "(int) enrich only the first N items (0: all)", min=0)


@dataclass
class EmbedConfig:
    text_backend: str = help_field("minilm", "(str) clip (open_clip text tower) or minilm (the offline "
                                   "all-MiniLM-L6-v2 sentence encoder)", choices=("clip", "minilm"))
    clip_model: str = help_field("ViT-B-32", "(str) open_clip model name, or a path to a model-config JSON")
    clip_pretrained: str = help_field("", "(str) pretrained tag or local checkpoint path; empty means random "
                                      "weights (tests only: noise, never for quality numbers)")
    batch_size: int = help_field(64, "(int) items per encoder batch", min=1, max=1 << 16)
    concurrency: int = help_field(1, "(int) encoder actors", min=1)
    threads: int = help_field(0, "(int) torch threads per encoder actor on CPU; 0: its node's CPUs shared among "
                              "the job's actors", min=0, max=1024)
    image_timeout_s: float = help_field(10.0, "(float) seconds one image may take in all (connect, redirects, body), "
                                        "not per socket operation", min=0.1, max=600.0)
    image_max_mb: int = help_field(32, "(int) largest image accepted, in MiB; bytes are counted while reading",
                                   min=1, max=1024)
    image_schemes: list[str] = help_field(None, "(list) what an image_uri may be: 'http', 'https', 'file' (a local "
                                          "path or file:// URL), 's3' and 'gs' (objects under the dataset folder "
                                          "or image_roots)", default_factory=lambda: list(IMAGE_SCHEMES))
    image_roots: list[str] = help_field(None, "(list) folders local images may be read from besides the dataset "
                                        "folder (symlinks are followed before the check)", default_factory=list)
    image_allow_private: bool = help_field(False, "(bool) fetch http(s) images from private, loopback and link-local "
                                           "addresses too (an intranet image server); off, every address a host "
                                           "resolves to must be public")
    use_images: bool = help_field(True, "(bool) encode images (zero vector and has_image=false where missing)")
    output: str = help_field("runs/features/features.parquet", "(str) feature table (Parquet)")


@dataclass
class FeaturesConfig:
    enrich: EnrichConfig = section(EnrichConfig, "LLM enrichment")
    embed: EmbedConfig = section(EmbedConfig, "text and image embedding")
