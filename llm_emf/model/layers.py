"""SASRec building blocks: masked multi-head attention, pre-LN blocks, a causal sequence encoder.

Sequences are left-padded: column ``L-1`` is always the most recent item, so "the state after the last
item" is ``H[:, -1]`` for every row. Masks are boolean, True = may attend.

Order enters in one of three ways (``model.positions``). ``relative`` (default) adds a learned bias per
head and distance (query column - key column) to the attention logits: a state sees how far back each
item is, never how many items follow it, and the newest item is at distance 0 in every row, so the slot
every prediction reads is trained by every row. ``right`` is SASRec's learned embedding per column: also
the same slot for the newest item, but an earlier state learns how many items follow it in the window.
``start`` counts from the window's first item: no look-ahead, but long test histories read slots that
short training windows rarely reach (docs/method.md has the measurements).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose mask on CPU comes from ``torch.rand`` (same distribution and scaling): CPU
    ``bernoulli_`` draws one number at a time and was a tenth of a training step, ``rand`` is vectorised
    and 2.4x faster (bench/results/train_ceiling.md). Other devices use torch's own kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        if self.p == 1.0:
            return x * 0.0
        keep = (torch.rand(x.shape, device=x.device) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * keep


class MaskedAttention(nn.Module):
    """Multi-head attention with an explicit boolean mask; a query with no allowed key returns zeros."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        assert d % n_heads == 0, "hidden size must be divisible by the number of heads"
        self.n_heads = n_heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, memory: torch.Tensor, allowed: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, Tq, d) queries; memory: (B, Tk, d) keys/values; allowed: (B, Tq, Tk) bool;
        # bias: (h, Tq, Tk) added to the attention logits (relative positions) or None
        B, Tq, d = x.shape
        h = self.n_heads
        q = self.q(x).view(B, Tq, h, d // h).transpose(1, 2)                   # (B, h, Tq, d/h)
        k, v = self.kv(memory).view(B, -1, 2, h, d // h).permute(2, 0, 3, 1, 4)  # 2 x (B, h, Tk, d/h)
        any_key = allowed.any(dim=-1, keepdim=True)                             # (B, Tq, 1)
        # Rows with no allowed key would be NaN under softmax; let them see key 0 and zero them below.
        safe = allowed | (~any_key & (torch.arange(allowed.shape[-1], device=x.device) == 0))
        mask = safe.unsqueeze(1)                                                # (B, 1, Tq, Tk)
        if bias is not None:
            mask = torch.where(mask, bias.to(q.dtype).unsqueeze(0),
                               torch.tensor(float("-inf"), dtype=q.dtype, device=x.device))   # (B, h, Tq, Tk)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, Tq, d)                                 # (B, Tq, d)
        return self.out(y) * any_key.to(y.dtype)


class FeedForward(nn.Module):
    def __init__(self, d: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d), nn.GELU(), Dropout(dropout), nn.Linear(d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.ln_attn = nn.LayerNorm(d)
        self.attn = MaskedAttention(d, n_heads, dropout)
        self.ln_ffn = nn.LayerNorm(d)
        self.ffn = FeedForward(d, dropout)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        a = self.ln_attn(x)
        x = x + self.drop(self.attn(a, a, allowed, bias))
        return x + self.drop(self.ffn(self.ln_ffn(x)))


def causal_mask(valid: torch.Tensor) -> torch.Tensor:
    """(B, L) bool valid positions -> (B, L, L) bool: query t may see valid keys s <= t."""
    L = valid.shape[1]
    tri = torch.ones(L, L, dtype=torch.bool, device=valid.device).tril()      # (L, L)
    return tri.unsqueeze(0) & valid.unsqueeze(1)                              # (B, L, L)


class CausalEncoder(nn.Module):
    """SASRec: item vectors (+ positions) -> causal pre-LN blocks -> (B, L, d); pads give zeros."""

    def __init__(self, d: int, n_heads: int, n_blocks: int, max_len: int, dropout: float,
                 positions: str = "relative"):
        super().__init__()
        self.positions = positions
        if positions == "relative":     # one bias per (distance, head) per block
            self.distance_bias = nn.ModuleList(nn.Embedding(max_len, n_heads) for _ in range(n_blocks))
        else:
            self.pos = nn.Embedding(max_len, d)
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d, n_heads, dropout) for _ in range(n_blocks))
        self.ln_final = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # x: (B, L, d) item vectors of a left-padded sequence; valid: (B, L) bool
        keep = valid.unsqueeze(-1).to(x.dtype)                                # (B, L, 1)
        L = valid.shape[1]
        cols = torch.arange(L, device=x.device)
        if self.positions == "relative":
            h = self.drop(x) * keep
            distance = (cols.view(-1, 1) - cols.view(1, -1)).clamp(min=0)    # (L, L) query - key, >= 0 where causal
            biases = [table(distance).permute(2, 0, 1) for table in self.distance_bias]   # each (h, L, L)
        else:
            if self.positions == "right":
                positions = cols.expand_as(valid)                              # (B, L): newest item at L-1
            else:
                positions = (valid.long().cumsum(dim=1) - 1).clamp(min=0)     # (B, L): from the window's first item
            h = self.drop(x + self.pos(positions)) * keep
            biases = [None] * len(self.blocks)
        allowed = causal_mask(valid)
        for block, bias in zip(self.blocks, biases):
            h = block(h, allowed, bias) * keep                                # pads stay zero
        return self.ln_final(h) * keep


class CrossDomainAttention(nn.Module):
    """Single-domain states attend to mixed-sequence states no later than their own time (one pre-LN block)."""

    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.ln_q = nn.LayerNorm(d)
        self.ln_kv = nn.LayerNorm(d)
        self.attn = MaskedAttention(d, n_heads, dropout)
        self.drop = Dropout(dropout)

    def forward(self, single: torch.Tensor, mixed: torch.Tensor, mixed_time: torch.Tensor,
                mixed_valid: torch.Tensor) -> torch.Tensor:
        # single: (B, L, d); mixed: (B, L, d); mixed_time: (B, L) column in the mixed window of each
        # single-domain item (-1: before the window or padding); mixed_valid: (B, L) bool
        cols = torch.arange(mixed.shape[1], device=mixed.device)
        allowed = (cols.view(1, 1, -1) <= mixed_time.unsqueeze(-1)) & mixed_valid.unsqueeze(1)  # (B, L, L)
        return self.drop(self.attn(self.ln_q(single), self.ln_kv(mixed), allowed))           # (B, L, d)
