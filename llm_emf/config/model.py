"""Config section: the LLM-EMF network (method.md stages 2 and 3).

The keys a user sets first come first; the ablations and the alternatives measured against the defaults carry
``measured=`` (what they were measured to do, from docs/method.md) and ``--help`` lists them apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from .fields import help_field


@dataclass
class ModelConfig:
    name: str = help_field("llm_emf", "(str) llm_emf (the cross-domain model; modalities switched below) or "
                           "sasrec (one single-domain model per domain)", choices=("llm_emf", "sasrec"))
    use_id: bool = help_field(True, "(bool) use the learned ID embedding")
    use_text: bool = help_field(False, "(bool) use the frozen text embedding from the feature table")
    use_image: bool = help_field(False, "(bool) use the frozen image embedding from the feature table")
    features: str = help_field("", "(str) feature table (Parquet) with text/image embeddings; required when "
                               "use_text or use_image")
    fusion: str = help_field("early", "(str) early: fuse modality vectors into one item vector; late: one encoder "
                             "per modality, fuse softmaxed scores", choices=("early", "late"))
    text_weight: float = help_field(1.0, "(float) b, weight of the text modality", min=0.0, max=100.0)
    image_weight: float = help_field(1.0, "(float) a, weight of the image modality", min=0.0, max=100.0)
    learnable_weights: bool = help_field(False, "(bool) learn the fusion weights, starting from the values above")
    hidden_size: int = help_field(128, "(int) q, the item/state dimension", min=8, max=4096)
    n_heads: int = help_field(1, "(int) attention heads per block", min=1, max=64)
    n_blocks: int = help_field(2, "(int) self-attention blocks per encoder", min=1, max=24)
    dropout: float = help_field(0.2, "(float) dropout on embeddings, attention and FFN", min=0.0, max=0.9)
    max_len: int = help_field(15, "(int) most recent items of a sequence the model sees", min=2, max=512)
    loss_weight: float = help_field(1.0, "(float) lambda, weight of the shared (mixed-state) loss term", min=0.0,
                                    max=100.0)
    head: str = help_field("combined", "(str) which state scores a domain's items: combined (h^D: the mixed "
                           "sequence's state plus the domain's own, with cross-attention; the paper), single (S^D: "
                           "the domain's own sequence alone, as a per-domain SASRec) or select (train both, each "
                           "with its loss term, and keep per domain the one with the better validation MRR, so a "
                           "domain the other one does not help falls back to its own sequence)",
                           choices=("combined", "single", "select"))
    # ablations and measured alternatives (--help lists them under their own heading)
    mixed_weight: float = help_field(1.0, "(float) alpha, share of the mixed-sequence state in the combined state: "
                                     "h^D = alpha * H^{X+Y} + S^D (+ cross-attention)", min=0.0, max=100.0,
                                     measured="not yet measured")
    id_tables: str = help_field("shared", "(str) item-ID tables: shared (one table read by the three encoders "
                                "and scoring every state; the paper) or per_encoder (the mixed-sequence encoder and "
                                "each domain's encoder read their own table; domain D's combined and single states "
                                "score with D's table, the shared loss term's mixed state with the mixed encoder's; "
                                "so with model.head=single a domain's encoder and table learn from its own sequences "
                                "alone, as a separate SASRec's; text/image parts stay shared; needs "
                                "model.name=llm_emf and model.use_id)", choices=("shared", "per_encoder"),
                                measured="ablation, not yet measured")
    positions: str = help_field("relative", "(str) how attention knows order: relative (a learned bias per head "
                                "and distance back from the query; the last item is the same slot for every "
                                "length), right (learned position of each column, SASRec: the last column is "
                                "always the newest item), start (learned position counted from the window's "
                                "first item)", choices=("relative", "right", "start"),
                                measured="start level with relative on FK (valid MRR 0.0876 vs 0.0874); right not "
                                "measured at convergence; relative stays as it cannot learn the window's future "
                                "length")
    cross_attention: bool = help_field(True, "(bool) single-domain states attend to the mixed-sequence states",
                                       measured="false is level with true on FK (valid MRR 0.0875 vs 0.0874); its "
                                       "attention is near uniform (bench/quality/xattn_probe.py); on, as in the paper")
    text_norm: str = help_field("none", "(str) preprocessing of the frozen text/image vectors per domain: none, "
                                "center (subtract the domain's mean vector, rescale to unit norm) or whiten "
                                "(ZCA whitening with the domain's covariance)", choices=("none", "center", "whiten"),
                                measured="center (with adaptor=domain) and whiten (with adaptor=moe) both validated "
                                "below none on FK text models (valid MRR 0.090 and 0.090 vs 0.095)")
    adaptor: str = help_field("linear", "(str) map from frozen vectors to q: linear (one bias-free map for both "
                              "domains), domain (one affine map per domain) or moe (per domain, a gated mixture "
                              "of model.adaptor_experts affine maps, as UniSRec)", choices=("linear", "domain", "moe"),
                              measured="domain (centred vectors) and moe (whitened vectors) both validated below "
                              "linear on FK text models (valid MRR 0.090 and 0.090 vs 0.095)")
    adaptor_experts: int = help_field(4, "(int) experts of the moe adaptor", min=1, max=64,
                                      measured="4, with adaptor=moe, validated below adaptor=linear "
                                      "(see model.adaptor); other counts not measured")
    id_dropout: float = help_field(0.0, "(float) training only: probability that an item's ID vector is "
                                   "replaced by the unseen-item vector (model.unseen_id) for a step, so it must be "
                                   "recognised from its content; items without content are spared unless that "
                                   "vector is learned", min=0.0, max=1.0,
                                   measured="0.2 (centred, adaptor=domain) and 0.5 lowered FK text models' valid "
                                   "MRR (0.086 vs 0.090, 0.092 vs 0.095); the cold-item text model uses 0.3 "
                                   "(bench/results/cold_fk.md)")
    content_dropout: float = help_field(0.0, "(float) training only: probability that an item's text/image term "
                                        "is dropped for a step", min=0.0, max=1.0,
                                        measured="not measured; off by default")
    unseen_id: str = help_field("auto", "(str) ID vector of items in no training sequence (cold items, new "
                                "items): neighbor (the ID vectors of the model.unseen_neighbors trained items of "
                                "the domain whose text/image is most similar; needs content), learned (one shared "
                                "vector per domain, fitted while those items serve as negatives), zero (no ID part: "
                                "content alone), mean (the mean trained ID vector of the domain), or auto (neighbor "
                                "when the model reads text or image, else learned)",
                                choices=("auto", "neighbor", "learned", "zero", "mean"),
                                measured="on FK cold items learned, zero and mean rank cold targets near chance "
                                "(sampled HR@10 0.00-0.03), neighbor 0.21-0.24 on Food, warm targets unchanged")
    unseen_neighbors: int = help_field(1, "(int) with model.unseen_id=neighbor: how many content neighbours lend "
                                       "their ID vectors (softmax-weighted by cosine similarity)", min=1, max=100,
                                       measured="5 or 20 neighbours ranked FK cold targets worse than 1")
    fused_loss: bool = help_field(True, "(bool) compute the full-softmax loss in row chunks with its gradient "
                                  "fused in (same loss, less memory traffic; early fusion and sasrec)",
                                  measured="same loss, training 149 -> 202 sequences/s on one CPU thread "
                                  "(bench/results/train_speed_1thread.md); false only to compare")
