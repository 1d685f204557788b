"""A batch of queries scored against one domain's items, a chunk of items at a time.

Full ranking and top-k lists need the score of every item of a domain, but never all of them at once: the
dense ``(B, n_D)`` matrix of ``model.score`` is 2 GB for 512 users and a million items, and grows with the
catalog. An :class:`ItemScores` holds what the scores are made of (the query states and the item vectors,
``B x q`` and ``n_D x q``) and computes the scores of a chunk of items on demand, so a caller (the evaluator's
ranks, serving's top-k) holds one ``(B, chunk)`` block at a time; :func:`chunk_size` sizes that block from a
byte budget. Kinds:

- :class:`DenseScores`: a score tensor a scorer already computed (scorers that return tensors, baselines);
- :class:`DotScores`: ``score = state . item`` (early fusion, SASRec);
- :class:`MixtureScores`: late fusion's log of a weighted mixture of per-modality softmaxes. A softmax needs
  its normaliser over all items first, so a first pass over the chunks accumulates each modality's
  logsumexp; the chunks then give the same log-probabilities as ``LLMEMF._log_probs`` (up to float rounding).

Equal item vectors must give equal scores, or ties (cold items share one ID vector) would be broken by float
noise. A BLAS picks its kernel by matrix shape, and the same dot product can differ in the last bit between
kernels (a one-row product takes a matrix-vector kernel whose result depends on the item's position). So
the matmul kinds compute every chunk as a ``(max(B, 2), width)`` product, the last chunk included (it is
taken as the last ``width`` items and its overlap dropped), and :meth:`ItemScores.target_scores` computes a
row's score of one given item (the target, for ranks) in a product of that same shape. A chunk then holds the
dense matrix's columns up to that kernel-choice rounding, as batching rows differently already does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .batch import Ragged

# Bytes of fp32 scores per chunk (the block a caller holds; its comparison masks and top-k work add about a
# quarter more): 8,192 items for an eval batch of 512, 16,384 for recommend's 256. Smaller chunks pay a fixed
# cost per chunk (a dozen small tensor ops, each a thread barrier), larger ones gain nothing and leave the
# cache (bench/results/million_items.md, "Chunk budget"). Memory is bounded by it, whatever the catalog size.
SCORE_CHUNK_BYTES = 16 << 20
# Narrower chunks only add per-chunk overhead (Python, small matmuls): the floor when rows are many.
MIN_CHUNK_ITEMS = 256


def chunk_size(n_rows: int, n_items: int, blocks: int = 1) -> int:
    """Items per chunk for ``n_rows`` queries: about ``SCORE_CHUNK_BYTES`` (read at call time) over ``blocks``
    fp32 ``(n_rows, chunk)`` temporaries, at least ``MIN_CHUNK_ITEMS``, at most ``n_items``."""
    size = max(MIN_CHUNK_ITEMS, SCORE_CHUNK_BYTES // (4 * max(n_rows, 1) * max(blocks, 1)))
    return int(max(1, min(size, n_items)))


class ItemScores:
    """Scores of ``n_rows`` queries against ``n_items`` items (column j: the domain's j-th item)."""

    n_rows: int
    n_items: int
    blocks = 1          # fp32 (B, chunk) temporaries one chunk costs (chunk_size divides the budget by it)
    fixed_width = False  # compute every chunk, the last one included, at the same width (see the module doc)

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    def _block(self, lo: int, hi: int) -> torch.Tensor:
        """``(B, hi - lo)`` scores of items ``[lo, hi)``, a new tensor."""
        raise NotImplementedError

    def at(self, cols: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` scores of the items ``cols`` (``(B, C)`` int64 columns), row by row, computed alike for
        every entry (equal item vectors give equal scores among them)."""
        raise NotImplementedError

    def chunk_size(self) -> int:
        return chunk_size(self.n_rows, self.n_items, self.blocks)

    def width(self, size: int | None = None) -> int:
        """The chunk width ``chunks(size)`` uses."""
        size = self.chunk_size() if size is None else int(size)
        if size < 1:
            raise ValueError(f"chunk size: expected a positive number of items, found {size}")
        return min(size, max(self.n_items, 1))

    def chunks(self, size: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """``(lo, (B, chunk) scores)`` over all items in order, ``size`` items per chunk (default: the byte
        budget's); each block is a new tensor the caller may modify."""
        width = self.width(size)
        for lo in range(0, self.n_items, width):
            hi = min(lo + width, self.n_items)
            if self.fixed_width and hi - lo < width:      # the last chunk, at the others' width
                yield lo, self._block(self.n_items - width, self.n_items)[:, width - (hi - lo):]
            else:
                yield lo, self._block(lo, hi)

    def target_scores(self, cols: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """``(B,)`` each row's score of item ``cols[b]``, computed as ``chunks(size)`` computes it."""
        return self.at(cols.to(self.device, torch.long)[:, None])[:, 0]

    def dense(self) -> torch.Tensor:
        """All ``(B, n_items)`` scores at once (small catalogs, tests)."""
        return self._block(0, self.n_items)

    @staticmethod
    def cat(parts: list["ItemScores"]) -> "ItemScores":
        """The rows of ``parts`` (same kind, same items) as one batch."""
        if len(parts) == 1:
            return parts[0]
        return type(parts[0])._cat(parts)

    @classmethod
    def _cat(cls, parts: list) -> "ItemScores":
        raise NotImplementedError


class DenseScores(ItemScores):
    """Scores already computed as a ``(B, n)`` tensor (any dtype kept; chunks are copies, the tensor is not touched)."""

    def __init__(self, scores: torch.Tensor):
        if scores.dim() != 2:
            raise ValueError(f"expected scores (B, n_items), found shape {tuple(scores.shape)}")
        self.scores = scores
        self.n_rows, self.n_items = scores.shape

    @property
    def device(self) -> torch.device:
        return self.scores.device

    def _block(self, lo: int, hi: int) -> torch.Tensor:
        return self.scores[:, lo:hi].clone()

    def at(self, cols: torch.Tensor) -> torch.Tensor:
        return self.scores.gather(1, cols.to(self.scores.device, torch.long))

    @classmethod
    def _cat(cls, parts):
        return cls(torch.cat([p.scores for p in parts]))


def _by_rows(cols: torch.Tensor, q: int, score_rows) -> torch.Tensor:
    """``score_rows(r0, r1) -> (r1 - r0, C)`` over blocks of rows whose gathered item vectors (rows, C, q) stay
    near ``SCORE_CHUNK_BYTES``, concatenated."""
    n, width = cols.shape
    step = max(1, SCORE_CHUNK_BYTES // max(width * q * 4, 1))
    blocks = [score_rows(r, min(r + step, n)) for r in range(0, n, step)]
    return torch.cat(blocks) if blocks else torch.zeros(cols.shape, dtype=torch.float32, device=cols.device)


def _two_rows(states: torch.Tensor) -> torch.Tensor:
    # A one-row product takes a matrix-vector kernel whose result depends on the item's position: pad to two.
    return torch.cat([states, torch.zeros_like(states)]) if states.shape[0] == 1 else states


class _MatmulScores(ItemScores):
    """Kinds whose chunks are matmuls of the states with a block of item vectors (see the module doc)."""

    fixed_width = True

    def _rows_of(self, items_of) -> torch.Tensor:
        """``(B, w)`` scores of the items ``items_of(all_items)`` picks, ``w`` of them, as one matmul block."""
        raise NotImplementedError

    def _block(self, lo: int, hi: int) -> torch.Tensor:
        return self._rows_of(lambda x: x[lo:hi])

    @torch.no_grad()
    def target_scores(self, cols: torch.Tensor, size: int | None = None) -> torch.Tensor:
        # The targets of up to ``width`` rows become the items of one block of the chunks' shape; row b reads
        # its own target on the block's diagonal.
        width = self.width(size)
        cols = cols.to(self.device, torch.long)
        out = torch.empty(self.n_rows, dtype=torch.float32, device=self.device)
        for r0 in range(0, self.n_rows, width):
            rows = torch.arange(r0, min(r0 + width, self.n_rows), device=self.device)
            index = torch.zeros(width, dtype=torch.long, device=self.device)        # padding: item 0
            index[:len(rows)] = cols[rows]
            block = self._rows_of(lambda x: x[index])                               # (B, width)
            out[rows] = block[rows, rows - r0]
        return out


class DotScores(_MatmulScores):
    """``scores[b, j] = states[b] . items[j]``, in fp32."""

    def __init__(self, states: torch.Tensor, items: torch.Tensor):
        self.states, self.items = states, items            # (B, q), (n, q)
        self.n_rows, self.n_items = states.shape[0], items.shape[0]
        self._states = _two_rows(states)

    @property
    def device(self) -> torch.device:
        return self.states.device

    @torch.no_grad()
    def _rows_of(self, items_of) -> torch.Tensor:
        return (self._states @ items_of(self.items).T)[:self.n_rows].float()

    @torch.no_grad()
    def at(self, cols: torch.Tensor) -> torch.Tensor:
        cols = cols.to(self.device, torch.long)
        return _by_rows(cols, self.items.shape[1], lambda r0, r1: (
            self.items[cols[r0:r1]].float() * self.states[r0:r1, None, :].float()).sum(dim=-1))

    @classmethod
    def _cat(cls, parts):
        return cls(torch.cat([p.states for p in parts]), parts[0].items)


@dataclass
class MixtureStream:
    """One modality of a late-fusion mixture: its query states, item vectors, which items carry it, log weight."""
    states: torch.Tensor        # (B, q)
    items: torch.Tensor         # (n, q)
    has: torch.Tensor           # (n,) bool
    log_weight: torch.Tensor    # () log of the modality's (clamped) fusion weight


class MixtureScores(_MatmulScores):
    """``log sum_m w_m softmax_m(i) - log sum_m w_m``, each softmax over the items that carry modality m
    (``LLMEMF._log_probs``); items lacking modality m get ``missing`` from it (a finite "minus infinity")."""

    def __init__(self, streams: list[MixtureStream], log_norm: torch.Tensor, missing: float):
        self.streams, self.log_norm, self.missing = streams, log_norm, missing
        self.n_rows, self.n_items = streams[0].states.shape[0], streams[0].items.shape[0]
        self.blocks = 2 * len(streams) + 2          # per-modality logits and parts, their stack, the result
        self._states = [_two_rows(s.states) for s in streams]
        self._lse: list[torch.Tensor] | None = None

    @property
    def device(self) -> torch.device:
        return self.streams[0].states.device

    def _logits(self, m: int, items_of) -> tuple[torch.Tensor, torch.Tensor]:
        """Modality m's ``(B, w)`` masked logits of a block of items, and which of them carry it ``(w,)``."""
        s = self.streams[m]
        has = items_of(s.has)
        logits = (self._states[m] @ items_of(s.items).T)[:self.n_rows].float()
        return logits.masked_fill(~has, self.missing), has

    @torch.no_grad()
    def normalisers(self) -> list[torch.Tensor]:
        """Per modality, ``(B,)`` logsumexp of its masked logits over all items: the first pass, run once."""
        if self._lse is None:
            width = self.width()
            lse = [torch.full((self.n_rows,), -math.inf, device=self.device) for _ in self.streams]
            for lo in range(0, self.n_items, width):
                for m in range(len(self.streams)):
                    logits, _ = self._logits(m, lambda x: x[lo:lo + width])
                    lse[m] = torch.logaddexp(lse[m], torch.logsumexp(logits, dim=1))
            self._lse = lse
        return self._lse

    def _mixture(self, parts: list[tuple[torch.Tensor, torch.Tensor]], rows: slice = slice(None)) -> torch.Tensor:
        """Log-probabilities from each modality's ``(logits, has)`` of rows ``rows``."""
        out = []
        for s, lse, (logits, has) in zip(self.streams, self.normalisers(), parts):
            out.append(logits - lse[rows, None] + s.log_weight + (~has).float() * self.missing)
        return torch.logsumexp(torch.stack(out), dim=0) - self.log_norm

    @torch.no_grad()
    def _rows_of(self, items_of) -> torch.Tensor:
        return self._mixture([self._logits(m, items_of) for m in range(len(self.streams))])

    @torch.no_grad()
    def at(self, cols: torch.Tensor) -> torch.Tensor:
        cols = cols.to(self.device, torch.long)

        def rows(r0: int, r1: int) -> torch.Tensor:
            parts = []
            for s in self.streams:
                has = s.has[cols[r0:r1]]
                logits = (s.items[cols[r0:r1]].float() * s.states[r0:r1, None, :].float()).sum(dim=-1)
                parts.append((logits.masked_fill(~has, self.missing), has))
            return self._mixture(parts, slice(r0, r1))
        return _by_rows(cols, self.streams[0].items.shape[1] * len(self.streams), rows)

    @classmethod
    def _cat(cls, parts):
        streams = [MixtureStream(torch.cat([p.streams[m].states for p in parts]), s.items, s.has, s.log_weight)
                   for m, s in enumerate(parts[0].streams)]
        return cls(streams, parts[0].log_norm, parts[0].missing)


class SeenItems:
    """(row, column) pairs to leave out of a ranking (items a user already has), found chunk by chunk."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n_items: int):
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        keep = (cols >= 0) & (cols < n_items)
        order = np.argsort(cols[keep], kind="stable")      # by column: a chunk's pairs are one slice
        self.rows, self.cols = rows[keep][order], cols[keep][order]

    @classmethod
    def of_histories(cls, histories: Ragged, first_item: int, n_items: int) -> "SeenItems":
        """Every item of each history (``item_index``) that lies in ``[first_item, first_item + n_items)``."""
        compact = histories.take(np.arange(len(histories.starts)))      # values row-major, compacted
        rows = np.repeat(np.arange(len(compact.starts)), compact.lengths)
        return cls(rows, compact.values.astype(np.int64) - first_item, n_items)

    def mask(self, chunk: torch.Tensor, lo: int) -> None:
        """Set this chunk's pairs (columns ``[lo, lo + chunk width)``) to -inf, in place."""
        a, b = np.searchsorted(self.cols, [lo, lo + chunk.shape[1]])
        if b > a:
            rows = torch.as_tensor(self.rows[a:b], device=chunk.device)
            cols = torch.as_tensor(self.cols[a:b] - lo, device=chunk.device)
            chunk[rows, cols] = -math.inf
