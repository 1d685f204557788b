"""Batch building: windows, single-domain subsequences and the column maps, against hand-built values."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from llm_emf.model.batch import PAD, Ragged, eval_inputs, mixed_batch, single_domain_batch, training_batch

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
    assert b.items.shape == (2000, 15) and b.items.dtype == torch.int64
    # spot check row 7 against a direct computation
    seq = rows[7]
    x_hist = [i for i in seq[:-1] if i < 20][-15:]
    assert [i for i in b.seq[0][7].tolist() if i != PAD] == x_hist


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
