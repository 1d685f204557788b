"""Vectorised batch building: ragged item sequences -> left-padded windows for the three encoders.

Everything works on flat numpy arrays plus row offsets (the Arrow list layout), never a Python loop
per item, so building a batch costs a few array operations (method.md: keep epochs cheap).

For a mixed input window ``items`` (B, L) the batch also holds, per domain D in {X, Y}:
  ``seq[D]``    (B, L) the last L D-items of the whole input history (left-padded, -1 = pad),
  ``last[D]``   (B, L) for each mixed column t, the column of ``seq[D]`` holding the last D-item at or before
                t (-1: none yet): h^D_t reads the single-domain state there,
  ``time[D]``   (B, L) for each column of ``seq[D]``, the mixed column of that item (-1: before the window):
                cross-attention lets it see mixed columns <= that one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from llm_emf.data.schema import in_domain

PAD = -1


@dataclass
class Ragged:
    """Rows of variable length stored flat: row r is ``values[starts[r]:ends[r]]``."""

    values: np.ndarray   # (N,)
    starts: np.ndarray   # (B,) int64
    ends: np.ndarray     # (B,) int64

    @classmethod
    def from_arrow(cls, column: pa.ChunkedArray | pa.ListArray) -> "Ragged":
        arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        offsets = arr.offsets.to_numpy().astype(np.int64)
        base = offsets[0]
        values = arr.values.slice(base, offsets[-1] - base).to_numpy(zero_copy_only=False).astype(np.int64)
        return cls(values, offsets[:-1] - base, offsets[1:] - base)

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    def take(self, rows: np.ndarray) -> "Ragged":
        """The given rows, compacted: later steps cost O(values of these rows), not O(all values)
        (a batch taken from 4M training interactions must not scan all 4M; bench/train/user_scaling.py)."""
        starts, ends = self.starts[rows], self.ends[rows]
        new_ends = np.cumsum(ends - starts)
        return Ragged(self.values[_row_positions(starts, ends)], new_ends - (ends - starts), new_ends)

    def drop_last(self) -> "Ragged":
        return Ragged(self.values, self.starts, np.maximum(self.ends - 1, self.starts))

    def drop_first(self) -> "Ragged":
        return Ragged(self.values, np.minimum(self.starts + 1, self.ends), self.ends)

    def window(self, L: int, values: np.ndarray | None = None) -> np.ndarray:
        """(B, L) the last L entries of each row, left-padded with PAD; ``values`` overrides the payload."""
        values = self.values if values is None else values
        idx = self.ends[:, None] - L + np.arange(L)[None, :]                   # (B, L) flat positions
        ok = idx >= self.starts[:, None]
        if values.size == 0:
            return np.full(idx.shape, PAD, dtype=np.int64)
        return np.where(ok, values[np.clip(idx, 0, values.size - 1)], PAD)

    def running_count(self, mask: np.ndarray) -> np.ndarray:
        """(N,) for each flat position, how many masked entries its row has up to and including it."""
        c = np.cumsum(mask, dtype=np.int64)
        before = np.where(self.starts > 0, c[np.maximum(self.starts - 1, 0)], 0)  # count before each row
        row_of = np.repeat(np.arange(len(self.starts)), self.lengths)
        out = np.zeros_like(c)
        flat_pos = _row_positions(self.starts, self.ends)
        out[flat_pos] = c[flat_pos] - before[row_of]
        return out

    def filter(self, mask: np.ndarray) -> "Ragged":
        """Keep masked entries of every row (order kept); returns a compact Ragged."""
        pos = _row_positions(self.starts, self.ends)
        row_of = np.repeat(np.arange(len(self.starts)), self.lengths)
        kept = mask[pos]
        keep = pos[kept]
        counts = np.bincount(row_of[kept], minlength=len(self.starts)).astype(np.int64)
        ends = np.cumsum(counts)
        return Ragged(self.values[keep], ends - counts, ends)


def _row_positions(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Flat positions of all rows, concatenated in row order."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    row_first = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(total, dtype=np.int64) + row_first


@dataclass
class MixedBatch:
    """Tensors for one batch of the cross-domain model (see module doc); all (B, L) int64."""

    items: torch.Tensor                 # mixed input window, PAD = -1
    seq: tuple[torch.Tensor, torch.Tensor]    # X-only, Y-only input histories (last L)
    last: tuple[torch.Tensor, torch.Tensor]   # mixed column -> single-domain column of last D-item
    time: tuple[torch.Tensor, torch.Tensor]   # single-domain column -> mixed column
    targets: torch.Tensor | None = None       # next item after each mixed column (training), PAD = -1

    def to(self, device: torch.device | str) -> "MixedBatch":
        mv = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return MixedBatch(mv(self.items), tuple(map(mv, self.seq)), tuple(map(mv, self.last)),
                          tuple(map(mv, self.time)), mv(self.targets))


def mixed_batch(inputs: Ragged, n_x: int, L: int, targets: Ragged | None = None) -> MixedBatch:
    """Build the cross-domain batch for input histories ``inputs`` (and aligned next-item ``targets``)."""
    items = inputs.window(L)                                                   # (B, L)
    seqs, lasts, times = [], [], []
    for domain in (0, 1):
        in_d = in_domain(inputs.values, n_x, domain)                          # (N,)
        count = inputs.running_count(in_d)                                     # (N,) D-items so far in row
        n_dom = np.zeros(len(inputs.starts), dtype=np.int64)
        nonempty = inputs.lengths > 0
        n_dom[nonempty] = count[inputs.ends[nonempty] - 1]                      # D-items in each row
        seqs.append(inputs.filter(in_d).window(L))                             # (B, L)
        win_count = inputs.window(L, count)                                    # (B, L), PAD where padded
        col = L - 1 - (n_dom[:, None] - win_count)                             # single-domain column
        last = np.where((items != PAD) & (win_count > 0) & (col >= 0), col, PAD)
        lasts.append(last)
        time = np.full((len(items), L), PAD, dtype=np.int64)
        win_dom = inputs.window(L, in_d.astype(np.int64)) == 1
        rows, cols = np.nonzero(win_dom & (last != PAD))
        time[rows, last[rows, cols]] = cols                                    # inverse of `last` on D items
        times.append(time)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))   # noqa: E731
    return MixedBatch(t(items), (t(seqs[0]), t(seqs[1])), (t(lasts[0]), t(lasts[1])),
                      (t(times[0]), t(times[1])), None if targets is None else t(targets.window(L)))


def supervision_windows(sequences: Ragged, L: int) -> Ragged:
    """Every row's prefixes ending at ``n, n - L, n - 2L, ...`` (while at least 2 items long).

    A window of L inputs supervises the last L targets of its prefix, so these prefixes together supervise
    every next-item target of a long sequence exactly once; with only the whole row, targets before its
    last L would never be trained. Each prefix keeps the row's full history before it (the single-domain
    windows and cross-attention read it). Rows stay grouped: a row's prefixes are adjacent, newest first.
    """
    n_windows = np.maximum((sequences.lengths - 2) // L + 1, 0)              # (B,) prefixes with >= 2 items
    row = np.repeat(np.arange(len(sequences.starts)), n_windows)             # (W,)
    k = np.arange(len(row)) - np.repeat(np.cumsum(n_windows) - n_windows, n_windows)   # (W,) 0, 1, ... per row
    return Ragged(sequences.values, sequences.starts[row], sequences.ends[row] - k * L)


def training_batch(sequences: Ragged, n_x: int, L: int) -> MixedBatch:
    """Dense next-item supervision of every target: inputs items[:-1], targets items[1:] (aligned windows)
    over the :func:`supervision_windows` of each row."""
    windows = supervision_windows(sequences, L)
    return mixed_batch(windows.drop_last(), n_x, L, targets=windows.drop_first())


def single_domain_batch(sequences: Ragged, n_x: int, domain: int, L: int, training: bool) -> tuple:
    """(inputs, targets) (B, L) of the D-only subsequences, for the per-domain SASRec baseline.

    Training: inputs are D-items[:-1] and targets D-items[1:], over the :func:`supervision_windows` of the
    D-only subsequence (every D target once). Evaluation: ``sequences`` are already the inputs; all their
    D-items form the window and targets is None.
    """
    only = sequences.filter(in_domain(sequences.values, n_x, domain))
    if not training:
        return torch.from_numpy(only.window(L)), None
    only = supervision_windows(only, L)
    return torch.from_numpy(only.drop_last().window(L)), torch.from_numpy(only.drop_first().window(L))


def sequences_of(rows: pa.Table) -> Ragged:
    """The ``items`` column of SEQUENCE_SCHEMA rows as a Ragged."""
    return Ragged.from_arrow(rows.column("items"))


def eval_inputs(rows: pa.Table) -> Ragged:
    """Validation/test rows: the input history is items[:-1] (the last item is the target)."""
    return sequences_of(rows).drop_last()
