"""Config section: the LLM-EMF network (method.md stages 2 and 3)."""

from __future__ import annotations

from dataclasses import dataclass

from .loader import help_field


@dataclass
class ModelConfig:
    name: str = help_field("llm_emf", "(str) llm_emf (the cross-domain model; modalities switched below) or "
                           "sasrec (one single-domain model per domain)", choices=("llm_emf", "sasrec"))
    hidden_size: int = help_field(128, "(int) q, the item/state dimension", min=8, max=4096)
    n_heads: int = help_field(1, "(int) attention heads per block", min=1, max=64)
    n_blocks: int = help_field(2, "(int) self-attention blocks per encoder", min=1, max=24)
    dropout: float = help_field(0.2, "(float) dropout on embeddings, attention and FFN", min=0.0, max=0.9)
    max_len: int = help_field(15, "(int) most recent items of a sequence the model sees", min=2, max=512)
    use_id: bool = help_field(True, "(bool) use the learned ID embedding")
    use_text: bool = help_field(False, "(bool) use the frozen text embedding from the feature table")
    use_image: bool = help_field(False, "(bool) use the frozen image embedding from the feature table")
    fusion: str = help_field("early", "(str) early: fuse modality vectors into one item vector; late: one encoder "
                             "per modality, fuse softmaxed scores", choices=("early", "late"))
    text_weight: float = help_field(1.0, "(float) b, weight of the text modality", min=0.0, max=100.0)
    image_weight: float = help_field(1.0, "(float) a, weight of the image modality", min=0.0, max=100.0)
    learnable_weights: bool = help_field(False, "(bool) learn the fusion weights, starting from the values above")
    cross_attention: bool = help_field(True, "(bool) single-domain states attend to the mixed-sequence states")
    loss_weight: float = help_field(1.0, "(float) lambda, weight of the shared (mixed-state) loss term", min=0.0,
                                    max=100.0)
    fused_loss: bool = help_field(True, "(bool) compute the full-softmax loss in row chunks with its gradient "
                                  "fused in (same loss, less memory traffic; early fusion and sasrec)")
    features: str = help_field("", "(str) feature table (Parquet) with text/image embeddings; required when "
                               "use_text or use_image")
