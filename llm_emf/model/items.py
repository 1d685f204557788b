"""Item vectors: the learned ID table plus adapted frozen text/image embeddings (docs/method.md, Fusion).

Frozen features are registered as buffers (moved with the model, never trained, not saved). They can be
conditioned per domain first (``model.text_norm``): raw sentence/CLIP vectors are anisotropic (all items
of a domain share a large common direction). An adaptor (``model.adaptor``) maps them to q dimensions.
docs/method.md has the measurements behind the defaults (raw vectors, one shared linear map).
An item whose ``has_text`` / ``has_image`` flag is false contributes nothing from that modality: its
adapted vector is multiplied by 0, so whatever sits in its feature row cannot change any score.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from llm_emf.config.model import ModelConfig
from llm_emf.data.schema import in_domain

from .batch import PAD
from .features import ItemFeatures

CONTENT = ("text", "image")


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


def condition_features(matrix: torch.Tensor, has: torch.Tensor, n_x: int, mode: str) -> torch.Tensor:
    """(n_items, e) frozen vectors -> conditioned per domain: ``none``, ``center`` or ``whiten``.

    ``center`` subtracts the domain's mean vector and rescales rows to unit norm; ``whiten`` applies ZCA
    whitening with the domain's covariance (eigenvalues floored at 1% of their mean, so near-empty
    directions are not blown up) and divides by sqrt(e) so rows keep a norm near 1. Rows without the
    modality stay zero and do not enter the statistics.
    """
    if mode == "none":
        return matrix
    out = torch.zeros_like(matrix)
    for rows in (torch.arange(n_x), torch.arange(n_x, matrix.shape[0])):
        rows = rows[has[rows]]
        if rows.numel() == 0:
            continue
        x = matrix[rows].double()                                            # (n_D, e)
        centred = x - x.mean(dim=0)
        if mode == "center" or rows.numel() < 2:
            out[rows] = F.normalize(centred, dim=-1).to(matrix.dtype)
            continue
        cov = centred.T @ centred / (rows.numel() - 1)                        # (e, e)
        evals, evecs = torch.linalg.eigh(cov)
        floor = 0.01 * evals.clamp(min=0).mean() + 1e-12
        zca = evecs @ torch.diag(evals.clamp(min=0).add(floor).rsqrt()) @ evecs.T
        out[rows] = (centred @ zca / math.sqrt(x.shape[1])).to(matrix.dtype)
    return out


class ContentAdaptor(nn.Module):
    """Frozen (n_items, e) -> (n_items, q): ``linear`` (shared, bias-free), ``domain`` (one affine map per
    domain) or ``moe`` (per domain, UniSRec's gated mixture of affine experts (x - b_k) W_k)."""

    def __init__(self, e: int, d: int, kind: str, n_x: int, experts: int):
        super().__init__()
        self.kind, self.n_x = kind, n_x
        if kind == "linear":
            self.proj = nn.Linear(e, d, bias=False)
        elif kind == "domain":
            self.proj = nn.ModuleList(nn.Linear(e, d) for _ in range(2))
        else:
            self.shift = nn.Parameter(torch.zeros(2, experts, e))            # b_k per domain
            self.experts = nn.Parameter(torch.empty(2, experts, e, d))       # W_k per domain
            nn.init.normal_(self.experts, std=0.02)
            self.gate = nn.ModuleList(nn.Linear(e, experts) for _ in range(2))

    def _domain(self, x: torch.Tensor, domain: int) -> torch.Tensor:
        if self.kind == "domain":
            return self.proj[domain](x)
        gate = torch.softmax(self.gate[domain](x), dim=-1)                   # (n, K)
        y = torch.einsum("nke,ked->nkd", x.unsqueeze(1) - self.shift[domain], self.experts[domain])  # (n, K, q)
        return (gate.unsqueeze(-1) * y).sum(dim=1)                            # (n, q)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return self.proj(feats)
        return torch.cat([self._domain(feats[:self.n_x], 0), self._domain(feats[self.n_x:], 1)])


def resolve_unseen_id(mode: str, modalities: tuple[str, ...]) -> str:
    """``auto``: borrow content neighbours' rows when the model reads content (docs/method.md, Cold
    items, has the measurement), else the learned shared vector, the only choice ID-only models can train."""
    if mode != "auto":
        return mode
    return "neighbor" if any(m in modalities for m in CONTENT) else "learned"


class ItemVectors(nn.Module):
    """Per-modality item vectors ``(n_items, q)``: ``id`` (E_id), ``image`` and ``text`` (adapted features).

    ``trained`` (n_items,) marks items that occur in training sequences. The others have no interaction
    to fit an ID row to, so their ID part is ``model.unseen_id``: a shared learned vector per domain, zero,
    the domain's mean trained row, or the rows of the trained items whose content is most like theirs
    (``neighbor``); never their own randomly initialised row.

    ``id_tables`` 3 (``model.id_tables=per_encoder``) adds ``id_domain``, one more full-size ID table per domain
    (table 1 + D, read by domain D's encoder; ``id`` stays table 0, the mixed encoder's), and a learned
    unseen-item vector per table. Full size keeps every table indexed by item_index (one rule for unseen items,
    catalog remapping); a domain's table leaves the other domain's rows unused.
    """

    def __init__(self, n_x: int, n_y: int, cfg: ModelConfig, modalities: tuple[str, ...],
                 features: ItemFeatures | None, trained: torch.Tensor | None = None, id_tables: int = 1):
        super().__init__()
        self.modalities = modalities
        self.n_x, self.n_items = n_x, n_x + n_y
        self.id_tables = id_tables if "id" in modalities else 0
        n_items = self.n_items
        self.unseen_id = resolve_unseen_id(cfg.unseen_id, modalities)
        if "id" in modalities:
            self.id = nn.Embedding(n_items, cfg.hidden_size)
            if trained is not None and len(trained) != n_items:
                raise ValueError(f"trained-item mask covers {len(trained)} items, the dataset has {n_items}")
            mask = torch.ones(n_items, dtype=torch.bool) if trained is None else torch.as_tensor(trained).bool()
            self.register_buffer("id_trained", mask, persistent=False)      # recomputed from the dataset
            self.has_unseen = not bool(mask.all())
            # Only when something uses it: DDP refuses a parameter that never gets a gradient.
            if self.unseen_id == "learned" and (self.has_unseen or cfg.id_dropout > 0):
                # one per domain; (tables, 2, q) with several tables, still one key for serving (serving/run.py)
                shape = (2, cfg.hidden_size) if id_tables == 1 else (id_tables, 2, cfg.hidden_size)
                self.unseen = nn.Parameter(torch.zeros(shape))
            if id_tables > 1:       # last, and only here: the default path's parameters and RNG draws stay as they were
                self.id_domain = nn.ModuleList(nn.Embedding(n_items, cfg.hidden_size) for _ in range(id_tables - 1))
        self.adaptors = nn.ModuleDict()
        for name in CONTENT:
            if name not in modalities:
                continue
            matrix = getattr(features, name) if features is not None else None
            if matrix is None:
                raise ValueError(f"model.use_{name} is on but the feature table has no item with has_{name}=true")
            if matrix.shape[0] != n_items:
                raise ValueError(f"{name} features cover {matrix.shape[0]} items, the dataset has {n_items}")
            has = getattr(features, f"has_{name}").bool()
            # Not persistent: checkpoints stay small; the features are reloaded from model.features.
            self.register_buffer(f"{name}_features", condition_features(matrix.float(), has, n_x, cfg.text_norm),
                                 persistent=False)                              # (n_items, e)
            self.register_buffer(f"has_{name}", has, persistent=False)
            self.adaptors[name] = ContentAdaptor(matrix.shape[1], cfg.hidden_size, cfg.adaptor, n_x,
                                                 cfg.adaptor_experts)
        if "id" in modalities and self.unseen_id == "neighbor":
            if not any(m in modalities for m in CONTENT):
                raise ValueError("model.unseen_id=neighbor finds an item's neighbours by its text/image vectors; "
                                 "switch on model.use_text or model.use_image, or choose learned, zero or mean")
            # Lists only for rows that can borrow: the untrained ones, and every row under ID dropout.
            borrowers = torch.ones(n_items, dtype=torch.bool) if cfg.id_dropout > 0 else ~self.id_trained
            index, weight = content_neighbours(
                [getattr(self, f"{m}_features") for m in CONTENT if m in modalities],
                [getattr(self, f"has_{m}") for m in CONTENT if m in modalities],
                self.id_trained, n_x, cfg.unseen_neighbors, borrowers)
            self.register_buffer("neighbor_index", index, persistent=False)    # (n_items, k)
            self.register_buffer("neighbor_weight", weight, persistent=False)  # (n_items, k); rows sum to 1 or 0

    def id_table(self, table: int = 0) -> nn.Embedding:
        """ID table ``table``: 0 ``id`` (the only one unless model.id_tables=per_encoder), 1 + D domain D's."""
        return self.id if table == 0 else self.id_domain[table - 1]

    def id_rows(self, drop: torch.Tensor | None = None, table: int = 0) -> torch.Tensor:
        """(n_items, q) ID vectors of ``table``: items never trained, and those in ``drop`` (ID dropout), get
        the unseen-item vector of their domain instead of their own row.

        Only the unseen rows are computed and written (``index_put``), and the domain means are masked
        matmuls: this runs every training step, and whole-table gathers and boolean indexing made backward
        scatters over the entire ID table (a fifth of a Food-Kitchen step, bench/results/train_ceiling.md).
        """
        w = self.id_table(table).weight
        if drop is None and not self.has_unseen:
            return w
        unseen = ~self.id_trained if drop is None else ~self.id_trained | drop
        rows = torch.nonzero(unseen).flatten()                                   # (u,)
        in_y = (rows >= self.n_x).long()                                         # (u,) domain
        if self.unseen_id == "zero":
            fill = torch.zeros(rows.numel(), w.shape[1], dtype=w.dtype, device=w.device)
        elif self.unseen_id == "learned":
            unseen = self.unseen if self.unseen.dim() == 2 else self.unseen[table]
            fill = unseen.to(w.dtype)[in_y]                                       # (u, q)
        else:
            known = (~unseen).to(w.dtype)
            sums = torch.stack([known[:self.n_x] @ w[:self.n_x], known[self.n_x:] @ w[self.n_x:]])   # (2, q)
            counts = torch.stack([known[:self.n_x].sum(), known[self.n_x:].sum()]).unsqueeze(1)
            fill = torch.nan_to_num(sums / counts)[in_y]                         # a domain with none: zero
            if self.unseen_id == "neighbor":
                weight = self.neighbor_weight[rows].to(w.dtype)                   # (u, k)
                borrowed = (weight.unsqueeze(-1) * w[self.neighbor_index[rows]]).sum(1)   # (u, q)
                fill = torch.where(weight.sum(1, keepdim=True) > 0, borrowed, fill)   # no content: the mean
        return w.index_put((rows,), fill)

    def id_penalty(self, used: list[torch.Tensor]) -> torch.Tensor:
        """train.embedding_l2's penalty: the sum of squared entries of the rows of table t whose items are in
        ``used[t]`` (item indices, PAD allowed), each row once. A domain's own table (table 1 + D) counts only
        its domain's rows: the only ones it has a use for."""
        total = 0.0
        for t, items in enumerate(used):
            rows = torch.unique(items[items != PAD])
            if t > 0:
                rows = rows[in_domain(rows, self.n_x, t - 1)]
            total = total + self.id_table(t).weight[rows].pow(2).sum()
        return total

    def modality(self, name: str) -> torch.Tensor:
        """(n_items, q) vectors of one modality; zero rows for items that lack it."""
        if name == "id":
            return self.id_rows()
        mask = getattr(self, f"has_{name}").unsqueeze(-1)                       # (n_items, 1)
        out = self.adaptors[name](getattr(self, f"{name}_features"))            # (n_items, q)
        return out * mask.to(out.dtype)

    def has(self, name: str) -> torch.Tensor:
        """(n_items,) bool: which items carry this modality (ID: all)."""
        if name == "id":
            return torch.ones(self.n_items, dtype=torch.bool, device=self.id.weight.device)
        return getattr(self, f"has_{name}")

    def has_content(self) -> torch.Tensor:
        """(n_items,) bool: items with at least one content modality switched on in this model."""
        return torch.stack([self.has(m) for m in CONTENT if m in self.modalities]).any(dim=0)


def unit_content(features: list[torch.Tensor], has: list[torch.Tensor]) -> torch.Tensor:
    """(n_items, sum e) rows whose dot product is the content cosine neighbours are chosen by: each modality
    unit-normalised (zero where the item lacks it), the modalities concatenated, the rows renormalised."""
    parts = [F.normalize(f.float(), dim=-1) * h.unsqueeze(-1).float() for f, h in zip(features, has)]
    return F.normalize(torch.cat(parts, dim=1), dim=-1)


def content_neighbours(features: list[torch.Tensor], has: list[torch.Tensor], trained: torch.Tensor, n_x: int,
                       k: int, borrowers: torch.Tensor | None = None, temperature: float = 0.05,
                       chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """For every item (only those in ``borrowers`` when given; the others get zero weights), its ``k`` most
    similar trained items of the same domain, never itself: ``(index (n_items, k) int64, weight (n_items, k))``.

    Similarity is the cosine of the items' frozen content (each modality's vector unit-normalised, the
    modalities concatenated). Weights are a softmax of cosine / ``temperature``, so a near-duplicate title
    dominates a merely related one. Items without content, or in a domain without two trained items with
    content, get zero weights (their caller falls back to the domain mean).
    """
    content = unit_content(features, has)                                        # (n_items, sum e)
    has_any = torch.stack(has).any(dim=0)
    n_items = content.shape[0]
    index = torch.zeros(n_items, k, dtype=torch.long)
    weight = torch.zeros(n_items, k)
    for lo, hi in ((0, n_x), (n_x, n_items)):
        pool = lo + torch.nonzero(trained[lo:hi].bool() & has_any[lo:hi]).flatten()    # candidate neighbours
        kk = min(k, pool.numel() - 1)
        if kk < 1:
            continue
        queries = torch.arange(lo, hi) if borrowers is None else lo + torch.nonzero(borrowers[lo:hi]).flatten()
        for start in range(0, queries.numel(), chunk):
            rows = queries[start:start + chunk]
            sims = content[rows] @ content[pool].T                                # (chunk, |pool|)
            sims[rows.unsqueeze(1) == pool.unsqueeze(0)] = -torch.inf             # never an item's own row
            top = sims.topk(kk, dim=1)
            index[rows, :kk] = pool[top.indices]
            weight[rows, :kk] = torch.softmax(top.values / temperature, dim=1) * has_any[rows].unsqueeze(1)
    return index, weight


def _drop_rows(vectors: torch.Tensor, p: float, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Zero each row with probability ``p`` (only rows where ``allowed``); no rescaling: a dropped item
    must be scored from what is left of it, as an item without that modality would be."""
    drop = torch.rand(vectors.shape[0], device=vectors.device) < p               # (n_items,)
    if allowed is not None:
        drop = drop & allowed
    return vectors * (~drop).unsqueeze(-1).to(vectors.dtype)


class EarlyFusion(nn.Module):
    """x_i = E_id[i] + a * A_img(E_img[i]) + b * A_tex(E_tex[i]) (terms present only when switched on).

    In training, ``id_dropout`` treats an item as unseen for a step (its ID term becomes the unseen-item
    vector; only items that have content unless that vector is learned, so none is left blank) and
    ``content_dropout`` drops its content terms, each per item and step.
    """

    def __init__(self, vectors: ItemVectors, cfg: ModelConfig):
        super().__init__()
        self.vectors = vectors
        self.id_dropout, self.content_dropout = cfg.id_dropout, cfg.content_dropout
        given = {"image": cfg.image_weight, "text": cfg.text_weight}
        self.weights = nn.ModuleDict({m: FusionWeight(given[m], cfg.learnable_weights)
                                      for m in CONTENT if m in vectors.modalities})

    def forward(self) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """(n_items, q), or with several ID tables (model.id_tables=per_encoder) one such tensor per table:
        each table's ID rows plus the same content terms (one ID dropout draw for all tables)."""
        outs = [0.0]
        if "id" in self.vectors.modalities:
            drop = None
            learned = self.vectors.unseen_id == "learned"
            if self.training and self.id_dropout > 0 and (self.weights or learned):
                drop = torch.rand(self.vectors.n_items, device=self.vectors.id.weight.device) < self.id_dropout
                if not learned:
                    drop &= self.vectors.has_content()
            outs = [self.vectors.id_rows(drop, t) for t in range(self.vectors.id_tables)]
        for name, weight in self.weights.items():
            term = self.vectors.modality(name)
            if self.training and self.content_dropout > 0:
                term = _drop_rows(term, self.content_dropout)
            scaled = weight() * term
            outs = [out + scaled for out in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)              # each (n_items, q)
