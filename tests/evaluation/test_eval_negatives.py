"""Sampled negatives: seeded, in the target's domain, never the target, written once and checked on reuse."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm_emf.config import ConfigError
from llm_emf.data.schema import DataError
from llm_emf.evaluation.negatives import load_or_create_negatives, negatives_path, sample_negatives

pytestmark = pytest.mark.unit

N_X, N_Y = 50, 30
USERS = [f"u{i}" for i in range(40)]
TARGETS = np.array([(7 * i) % (N_X + N_Y) for i in range(40)], dtype=np.int64)   # both domains


def _load(path, **over):
    kw = dict(fingerprint="abc", split="test", seed=3, n_negatives=20, user_ids=USERS, targets=TARGETS,
              n_x=N_X, n_y=N_Y)
    kw.update(over)
    return load_or_create_negatives(path, **kw)


def test_negatives_are_in_the_targets_domain_distinct_and_never_the_target():
    table = sample_negatives(USERS, TARGETS, N_X, N_Y, 20, seed=3, split="test")
    for target, negs in zip(TARGETS.tolist(), table.column("negatives").to_pylist()):
        lo, hi = (0, N_X) if target < N_X else (N_X, N_X + N_Y)
        assert len(negs) == 20 and len(set(negs)) == 20
        assert target not in negs
        assert all(lo <= n < hi for n in negs)


def test_negatives_are_deterministic_by_seed_and_do_not_depend_on_row_order():
    a = sample_negatives(USERS, TARGETS, N_X, N_Y, 20, seed=3, split="test").column("negatives").to_pylist()
    b = sample_negatives(USERS, TARGETS, N_X, N_Y, 20, seed=3, split="test").column("negatives").to_pylist()
    c = sample_negatives(USERS, TARGETS, N_X, N_Y, 20, seed=4, split="test").column("negatives").to_pylist()
    rev = sample_negatives(USERS[::-1], TARGETS[::-1], N_X, N_Y, 20, seed=3, split="test")
    assert a == b
    assert a != c
    assert rev.column("negatives").to_pylist()[::-1] == a


def test_small_domain_uses_every_other_item():
    table = sample_negatives(["a", "b"], np.array([1, N_X + 2]), N_X, N_Y, 999, seed=0, split="valid")
    x_negs, y_negs = table.column("negatives").to_pylist()
    assert sorted(x_negs) == [i for i in range(N_X) if i != 1]
    assert sorted(y_negs) == [i for i in range(N_X, N_X + N_Y) if i != N_X + 2]


def test_sampling_is_roughly_uniform_over_the_domain():
    users = [f"v{i}" for i in range(2000)]
    table = sample_negatives(users, np.zeros(2000, dtype=np.int64), N_X, N_Y, 5, seed=1, split="test")
    counts = np.bincount(np.concatenate(table.column("negatives").to_pylist()), minlength=N_X)
    assert counts[0] == 0
    expected = 2000 * 5 / (N_X - 1)                                         # ~204 per item
    assert counts[1:].min() > 0.6 * expected and counts[1:].max() < 1.4 * expected


def test_file_is_written_once_then_reused(tmp_path):
    path = tmp_path / "neg.parquet"
    first = _load(path)
    assert first.shape == (40, 20)
    meta = pq.read_schema(path).metadata
    assert meta[b"llm_emf.fingerprint"] == b"abc" and meta[b"llm_emf.seed"] == b"3"
    # edit row 0 on disk to other valid negatives: a reused file returns the edit, a resampled one would not
    table = pq.read_table(path)
    negs = table.column("negatives").to_pylist()
    target0 = int(TARGETS[0])
    negs[0] = sorted(set(range(N_X)) - {target0} - set(negs[0]))[:20]
    edited = table.set_column(2, "negatives", pa.array(negs, pa.list_(pa.int32())))
    pq.write_table(edited.replace_schema_metadata(table.schema.metadata), path)
    second = _load(path)
    assert second[0].tolist() == negs[0] and second[0].tolist() != first[0].tolist()
    np.testing.assert_array_equal(second[1:], first[1:])
    # cases in another order get the same negatives, aligned to their order
    shuffled = _load(path, user_ids=USERS[::-1], targets=TARGETS[::-1])
    np.testing.assert_array_equal(shuffled, second[::-1])


@pytest.mark.parametrize("change, expected, found", [
    (dict(fingerprint="other"), "fingerprint=other", "fingerprint=abc"),
    (dict(seed=9), "seed=9", "seed=3"),
    (dict(n_negatives=5), "n_negatives=5", "n_negatives=20"),
    (dict(split="valid"), "split=valid", "split=test"),
])
def test_mismatching_file_is_rejected_with_its_name(tmp_path, change, expected, found):
    path = tmp_path / "neg.parquet"
    _load(path)
    with pytest.raises(DataError) as e:
        _load(path, **change)
    assert str(e.value).startswith(f"{path}: expected negatives for {expected}")
    assert str(e.value).endswith(f"found {found}")


def test_tampered_rows_are_rejected_naming_the_row(tmp_path):
    path = tmp_path / "neg.parquet"
    _load(path)
    table = pq.read_table(path)
    negs = table.column("negatives").to_pylist()
    negs[4] = [int(TARGETS[4])] + negs[4][1:]                               # the target among its negatives
    bad = table.set_column(2, "negatives", pa.array(negs, pa.list_(pa.int32()))).replace_schema_metadata(
        table.schema.metadata)
    pq.write_table(bad, path)
    with pytest.raises(DataError, match=r"neg\.parquet, line 5: expected target") as e:
        _load(path)
    assert "user_id 'u4'" in str(e.value)


def test_unknown_case_and_duplicate_users_are_rejected(tmp_path):
    path = tmp_path / "neg.parquet"
    _load(path)
    with pytest.raises(DataError, match="no row for user_id 'new'"):
        _load(path, user_ids=USERS[:-1] + ["new"])
    with pytest.raises(DataError, match=r"line 2: expected one sequence per user_id.*'u0' again"):
        _load(tmp_path / "dup.parquet", user_ids=["u0", "u0"], targets=np.array([1, 2]))


def test_default_path_and_placeholders(cfg, tmp_path):
    assert negatives_path(cfg, "test") == tmp_path / "dataset" / "negatives_test_seed42_n999.parquet"
    cfg.eval.negatives_file = str(tmp_path / "n_{split}_{seed}.parquet")
    assert negatives_path(cfg, "valid") == tmp_path / "n_valid_42.parquet"
    cfg.eval.negatives_file = str(tmp_path / "n_{user}.parquet")
    with pytest.raises(ConfigError, match="placeholders"):
        negatives_path(cfg, "valid")


def test_negatives_do_not_follow_the_training_seed(cfg, tmp_path):
    """Runs with different training seeds must be scored on the same candidates (one file per split)."""
    first = negatives_path(cfg, "test")
    cfg.seed = 7
    assert negatives_path(cfg, "test") == first
    cfg.eval.negatives_seed = 3
    assert negatives_path(cfg, "test") == tmp_path / "dataset" / "negatives_test_seed3_n999.parquet"
