"""Batch building: windows, single-domain subsequences and the column maps, against hand-built values."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from llm_emf.model.batch import (PAD, Ragged, eval_inputs, mixed_batch, single_domain_batch, supervision_windows,
                                 training_batch)

pytestmark = pytest.mark.unit

N_X = 5   # items 0-4 are X, 5+ are Y


def ragged(rows):
    return Ragged.from_arrow(pa.array(rows, pa.list_(pa.int32())))


def test_window_left_pads_and_keeps_the_last_items():
    r = ragged([[1, 2, 3, 4, 5], [7], []])
    np.testing.assert_array_equal(r.window(3), [[3, 4, 5], [PAD, PAD, 7], [PAD, PAD, PAD]])


def test_filter_keeps_order_and_handles_empty_rows():
    r = ragged([[0, 5, 1, 6], [], [7, 8], [2]])
    x = r.filter(r.values < N_X)
    assert x.lengths.tolist() == [2, 0, 0, 1]
    np.testing.assert_array_equal(x.window(2), [[0, 1], [PAD, PAD], [PAD, PAD], [PAD, 2]])


def test_sliced_arrow_column_is_read_from_its_own_offsets():
    arr = pa.array([[9, 9], [0, 5, 6], [1]], pa.list_(pa.int32())).slice(1, 2)
    np.testing.assert_array_equal(Ragged.from_arrow(arr).window(3), [[0, 5, 6], [PAD, PAD, 1]])


def test_mixed_batch_maps_hand_checked():
    # input history 0,5,1,6,7 (X,Y,X,Y,Y); window L=4 shows 5,1,6,7 and item 0 falls before the window
    b = mixed_batch(ragged([[0, 5, 1, 6, 7]]), N_X, 4)
    assert b.items.tolist() == [[5, 1, 6, 7]]
    assert b.seq[0].tolist() == [[PAD, PAD, 0, 1]]        # X history keeps item 0 from before the window
    assert b.seq[1].tolist() == [[PAD, 5, 6, 7]]
    assert b.last[0].tolist() == [[2, 3, 3, 3]]           # last X item at/before each mixed column
    assert b.last[1].tolist() == [[1, 1, 2, 3]]
    assert b.time[0].tolist() == [[PAD, PAD, PAD, 1]]     # item 0 is before the window: sees no mixed state
    assert b.time[1].tolist() == [[PAD, 0, 2, 3]]


def test_training_batch_targets_are_the_next_items():
    b = training_batch(ragged([[0, 5, 1], [6, 2]]), N_X, 3)
    assert b.items.tolist() == [[PAD, 0, 5], [PAD, PAD, 6]]
    assert b.targets.tolist() == [[PAD, 5, 1], [PAD, PAD, 2]]
    assert b.last[0].tolist() == [[PAD, 2, 2], [PAD, PAD, PAD]]   # no X item yet in row 2


def test_single_domain_batches():
    r = ragged([[0, 5, 1, 6, 2]])
    inp, tgt = single_domain_batch(r, N_X, 0, 3, training=True)
    assert inp.tolist() == [[PAD, 0, 1]] and tgt.tolist() == [[PAD, 1, 2]]
    inp, tgt = single_domain_batch(r, N_X, 1, 3, training=False)
    assert inp.tolist() == [[PAD, 5, 6]] and tgt is None


def test_eval_inputs_drop_the_target():
    rows = pa.table({"items": pa.array([[0, 5, 1], [6, 7]], pa.list_(pa.int32()))})
    np.testing.assert_array_equal(eval_inputs(rows).window(3), [[PAD, 0, 5], [PAD, PAD, 6]])


def test_batch_building_is_vectorised_for_large_batches():
    rng = np.random.default_rng(0)
    rows = [list(rng.integers(0, 40, size=rng.integers(2, 30))) for _ in range(2000)]
    b = training_batch(ragged(rows), 20, 15)
    n_windows = [(len(r) - 2) // 15 + 1 for r in rows]                  # rows of 17+ items need two windows
    assert b.items.shape == (sum(n_windows), 15) and b.items.dtype == torch.int64
    # spot check row 7's newest window against a direct computation
    seq, first = rows[7], sum(n_windows[:7])
    x_hist = [i for i in seq[:-1] if i < 20][-15:]
    assert [i for i in b.seq[0][first].tolist() if i != PAD] == x_hist


def test_take_compacts_the_rows_so_a_batch_never_scans_the_whole_dataset():
    r = ragged([[0, 5, 1], [6], [2, 7, 3, 8], []])
    taken = r.take(np.array([2, 0, 3]))
    assert taken.values.tolist() == [2, 7, 3, 8, 0, 5, 1]           # only the chosen rows' items
    assert taken.starts.tolist() == [0, 4, 7] and taken.ends.tolist() == [4, 7, 7]
    np.testing.assert_array_equal(taken.window(3), [[7, 3, 8], [0, 5, 1], [PAD, PAD, PAD]])
    # the batch built from the compact rows is the one built from the same rows of the full table
    full = training_batch(r.take(np.array([2, 0])), N_X, 3)
    again = training_batch(ragged([[2, 7, 3, 8], [0, 5, 1]]), N_X, 3)
    for a, b in ((full.items, again.items), (full.targets, again.targets), (full.last[1], again.last[1]),
                 (full.time[0], again.time[0]), (full.seq[1], again.seq[1])):
        assert torch.equal(a, b)


def test_supervision_windows_train_every_target_of_a_long_sequence_once():
    seq = list(range(5, 5 + 9))                     # 9 Y items: 8 next-item targets, windows of 3
    w = supervision_windows(ragged([seq, [1], [2, 3]]), 3)
    # prefixes ending at 9, 6, 3 items of row 0 (newest first); row 1 has no target; row 2 one prefix
    assert (w.ends - w.starts).tolist() == [9, 6, 3, 2]
    b = training_batch(ragged([seq, [1], [2, 3]]), N_X, 3)
    assert b.targets.tolist() == [[11, 12, 13], [8, 9, 10], [PAD, 6, 7], [PAD, PAD, 3]]
    assert b.items.tolist() == [[10, 11, 12], [7, 8, 9], [PAD, 5, 6], [PAD, PAD, 2]]
    targets = [t for row in b.targets.tolist() for t in row if t != PAD]
    assert sorted(targets) == sorted(seq[1:] + [3])  # each target exactly once


def test_supervision_windows_keep_the_history_before_the_window():
    # 0 (X) opens the row; the second window's X history must still see it, as the first window's does
    b = training_batch(ragged([[0, 5, 6, 7, 8, 9, 1]]), N_X, 3)
    assert b.seq[0].tolist()[1] == [PAD, PAD, 0]        # prefix [0,5,6,7]: inputs 5,6,7, X history [0]
    assert b.targets.tolist() == [[8, 9, 1], [5, 6, 7]]


def test_single_domain_windows_train_every_domain_target_once():
    r = ragged([[0, 5, 1, 6, 2, 3, 4]])             # X items 0,1,2,3,4: 4 targets, windows of 2
    inp, tgt = single_domain_batch(r, N_X, 0, 2, training=True)
    assert tgt.tolist() == [[3, 4], [1, 2]] and inp.tolist() == [[2, 3], [0, 1]]
