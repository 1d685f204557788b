"""Item vectors: the learned ID table plus projected frozen text/image embeddings (method.md, Fusion).

Frozen features are registered as buffers (moved with the model, never trained, not saved). An item whose
``has_text`` / ``has_image`` flag is false contributes nothing from that modality: its feature term is
multiplied by 0, so whatever sits in its feature row cannot change any score.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .features import ItemFeatures


class FusionWeight(nn.Module):
    """A non-negative fusion weight (a or b): fixed (a buffer) or learnable (a parameter)."""

    def __init__(self, value: float, learnable: bool):
        super().__init__()
        t = torch.tensor(float(value))
        if learnable:
            self.value = nn.Parameter(t)
        else:
            self.register_buffer("value", t)

    def forward(self) -> torch.Tensor:
        return self.value


class ItemVectors(nn.Module):
    """Per-modality item vectors ``(n_items, q)``: ``id``, ``image`` (W_img E_img), ``text`` (W_tex E_tex)."""

    def __init__(self, n_items: int, d: int, modalities: tuple[str, ...], features: ItemFeatures | None):
        super().__init__()
        self.modalities = modalities
        self.n_items = n_items
        if "id" in modalities:
            self.id = nn.Embedding(n_items, d)
        for name in ("text", "image"):
            if name not in modalities:
                continue
            matrix = getattr(features, name) if features is not None else None
            if matrix is None:
                raise ValueError(f"model.use_{name} is on but the feature table has no item with has_{name}=true")
            if matrix.shape[0] != n_items:
                raise ValueError(f"{name} features cover {matrix.shape[0]} items, the dataset has {n_items}")
            # Not persistent: checkpoints stay small; the features are reloaded from model.features.
            self.register_buffer(f"{name}_features", matrix.float(), persistent=False)     # (n_items, e)
            self.register_buffer(f"has_{name}", getattr(features, f"has_{name}").bool(), persistent=False)
            # No bias: a masked (zero) feature row must map to the zero vector.
            setattr(self, f"{name}_proj", nn.Linear(matrix.shape[1], d, bias=False))

    def modality(self, name: str) -> torch.Tensor:
        """(n_items, q) vectors of one modality; zero rows for items that lack it."""
        if name == "id":
            return self.id.weight
        feats = getattr(self, f"{name}_features")                       # (n_items, e)
        mask = getattr(self, f"has_{name}").unsqueeze(-1)               # (n_items, 1)
        return getattr(self, f"{name}_proj")(feats) * mask.to(feats.dtype)

    def has(self, name: str) -> torch.Tensor:
        """(n_items,) bool: which items carry this modality (ID: all)."""
        if name == "id":
            return torch.ones(self.n_items, dtype=torch.bool, device=self.id.weight.device)
        return getattr(self, f"has_{name}")


class EarlyFusion(nn.Module):
    """x_i = E_id[i] + a * W_img E_img[i] + b * W_tex E_tex[i] (terms present only when switched on)."""

    def __init__(self, vectors: ItemVectors, image_weight: float, text_weight: float, learnable: bool):
        super().__init__()
        self.vectors = vectors
        self.weights = nn.ModuleDict({m: FusionWeight(w, learnable)
                                      for m, w in (("image", image_weight), ("text", text_weight))
                                      if m in vectors.modalities})

    def forward(self) -> torch.Tensor:
        out = self.vectors.modality("id") if "id" in self.vectors.modalities else 0.0
        for name, weight in self.weights.items():
            out = out + weight() * self.vectors.modality(name)
        return out                                                      # (n_items, q)
