"""Training in-process (train.num_workers=0): learning, reproducibility, resume, early stopping, outputs."""

import json
from pathlib import Path

import pytest
import torch

from llm_emf.checkpoints import load_state
from llm_emf.training import shard_indices, train

from faults import FailOnceAfterEpoch
from train_tiny_dataset import tiny_train_config

pytestmark = pytest.mark.unit


def test_shards_cover_every_index_once_per_epoch_and_are_equal_sized():
    parts = [shard_indices(11, seed=3, epoch=0, rank=r, world_size=3) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]
    covered = sorted(set(int(i) for p in parts for i in p))
    assert covered == list(range(11))
    assert not (shard_indices(11, 3, 1, 0, 1) == shard_indices(11, 3, 0, 0, 1)).all()   # reshuffled per epoch


def test_training_lowers_the_loss_and_writes_results(tmp_path, dataset_dir):
    cfg = tiny_train_config(tmp_path, epochs=4, run_name="learn")
    result = train(cfg)
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0]
    # the walk is learnable: validation MRR (full ranking over 12 / 15 items) beats random by far
    assert result.history[-1]["valid_mrr"] > 0.5
    run_dir = Path(result.run_dir)
    assert run_dir == (tmp_path / "runs" / "learn").absolute()
    saved = json.loads((run_dir / "results.json").read_text())
    assert set(saved["test"]["metrics"]) == {"sampled", "full"}
    assert set(saved["best"]) == {"Food", "Kitchen"}
    assert json.loads((run_dir / "history.json").read_text())["history"][0]["epoch"] == 1
    state = load_state(result.checkpoint)                  # weights_only=True
    assert state["epoch"] == 4 and set(state["best_states"]) == {"Food", "Kitchen"}
    assert {"python", "numpy", "torch"} <= set(state["rng"])
    for key in ("MRR", "NDCG@5", "NDCG@10", "HR@1", "HR@5", "HR@10"):
        assert 0.0 <= result.test.metrics["full"]["Food"][key] <= 1.0


def test_same_seed_gives_identical_metrics(tmp_path, dataset_dir):
    a = train(tiny_train_config(tmp_path, epochs=2, run_name="a"))
    b = train(tiny_train_config(tmp_path, epochs=2, run_name="b"))
    assert a.history == b.history
    assert a.test.metrics == b.test.metrics


def test_killed_and_resumed_run_matches_an_uninterrupted_one(tmp_path, dataset_dir):
    full = train(tiny_train_config(tmp_path, epochs=2, run_name="full"))
    crash = tiny_train_config(tmp_path, epochs=2, run_name="crash")
    with pytest.raises(RuntimeError, match="injected failure after epoch 1"):
        train(crash, hooks=[FailOnceAfterEpoch(1)])
    # local mode has no worker group to restart: the same run again resumes, as Ray's FailureConfig would
    crashed = train(crash, hooks=[FailOnceAfterEpoch(1)])
    assert (Path(crashed.run_dir) / "injected_failure.txt").exists()
    # driver restart: a first run stopped after 1 epoch, then the same run name continues it
    train(tiny_train_config(tmp_path, epochs=1, run_name="restart"))
    restarted = train(tiny_train_config(tmp_path, epochs=2, run_name="restart"))
    for other in (crashed, restarted):
        assert [h["epoch"] for h in other.history] == [1, 2]
        assert other.history == full.history
        assert other.test.metrics == full.test.metrics


def test_early_stopping_on_validation_mrr(tmp_path, dataset_dir):
    # lr=0: nothing changes, so validation MRR never improves after epoch 1 and patience=1 stops at epoch 2
    result = train(tiny_train_config(tmp_path, epochs=6, lr=0.0, patience=1, run_name="stop"))
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert result.summary()["stopped_early"] is True
    assert all(b["epoch"] == 1 for b in result.best.values())


@pytest.mark.parametrize("model", [dict(name="sasrec"), dict(fusion="late", use_id=True, cross_attention=False)])
def test_other_models_train_end_to_end(tmp_path, dataset_dir, model):
    cfg = tiny_train_config(tmp_path, epochs=1, run_name="other")
    for k, v in model.items():
        setattr(cfg.model, k, v)
    result = train(cfg)
    assert len(result.history) == 1 and torch.isfinite(torch.tensor(result.history[0]["train_loss"]))


def test_bf16_autocast_trains(tmp_path, dataset_dir, monkeypatch):
    monkeypatch.setattr("llm_emf.training.loop.use_bf16", lambda requested, device: requested)   # any CPU
    result = train(tiny_train_config(tmp_path, epochs=1, bf16=True, run_name="bf16"))
    assert torch.isfinite(torch.tensor(result.history[0]["train_loss"]))
    assert result.history[0]["bf16"] == 1.0
    fp32 = train(tiny_train_config(tmp_path, epochs=1, run_name="fp32"))
    assert fp32.history[0]["bf16"] == 0.0
    assert result.history[0]["train_loss"] != fp32.history[0]["train_loss"]   # autocast really changed the math


def test_bf16_on_a_cpu_without_native_bf16_trains_exactly_as_fp32(tmp_path, dataset_dir, monkeypatch):
    monkeypatch.setattr("llm_emf.precision.platform.machine", lambda: "x86_64")
    monkeypatch.setattr("llm_emf.precision.torch.backends.cpu.get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr("llm_emf.precision._warned", set())
    with pytest.warns(RuntimeWarning, match=r"train.bf16=true: this cpu \(AVX2\) has no native bfloat16"):
        asked = train(tiny_train_config(tmp_path, epochs=1, bf16=True, run_name="asked"))
    plain = train(tiny_train_config(tmp_path, epochs=1, run_name="plain"))
    assert asked.history[0]["bf16"] == 0.0
    assert asked.history[0]["train_loss"] == plain.history[0]["train_loss"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trains_on_cuda_with_bf16(tmp_path, dataset_dir):
    result = train(tiny_train_config(tmp_path, epochs=2, use_gpu=True, bf16=True, run_name="gpu"))
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_use_gpu_without_cuda_is_a_clear_error(tmp_path, dataset_dir):
    from llm_emf.config import ConfigError
    with pytest.raises(ConfigError, match="train.use_gpu: expected a CUDA device, found none"):
        train(tiny_train_config(tmp_path, epochs=1, use_gpu=True, run_name="nogpu"))


def _write_tiny_features(path, n_items, missing_image=(0, 5, 20), seed=0):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from llm_emf.features.schema import FEATURE_SCHEMA

    rng = np.random.default_rng(seed)
    vec = lambda: (lambda v: (v / np.linalg.norm(v)).tolist())(rng.standard_normal(8))   # noqa: E731
    has_image = [i not in missing_image for i in range(n_items)]
    rows = [{"item_id": f"i{i}", "domain": 0, "text_embedding": vec(),
             "image_embedding": vec() if has_image[i] else [0.0] * 8, "has_text": True, "has_image": has_image[i],
             "text_truncated": False, "text_model": "t", "image_model": "m", "prompt_version": "v",
             "content_hash": str(i)} for i in range(n_items)]
    pq.write_table(pa.Table.from_pylist(rows, schema=FEATURE_SCHEMA), path)
    return path


def test_multimodal_model_with_learnable_weights_trains_from_a_feature_table(tmp_path, dataset_dir):
    from train_tiny_dataset import N_X, N_Y
    cfg = tiny_train_config(tmp_path, epochs=2, run_name="mm")
    cfg.model.use_text = cfg.model.use_image = cfg.model.learnable_weights = True
    cfg.model.features = str(_write_tiny_features(tmp_path / "features.parquet", N_X + N_Y))
    result = train(cfg)
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]
    state = load_state(result.checkpoint)
    learned = float(state["model"]["fusion.weights.text.value"])
    assert learned != 1.0                                   # a learnable b moved from its start value
    assert not any("features" in k for k in state["model"])  # frozen feature buffers are not checkpointed
    # the features are pinned: the same-width table rewritten with other vectors is refused, not used
    from llm_emf.config import ConfigError
    from llm_emf.serving import load_models
    load_models(result.checkpoint)
    _write_tiny_features(tmp_path / "features.parquet", N_X + N_Y, seed=1)
    with pytest.raises(ConfigError, match=r"expected the item features this model was trained with"):
        load_models(result.checkpoint)
    cfg.train.epochs = 3
    with pytest.raises(ConfigError, match=r"features.parquet'; point model.features at the original table"):
        train(cfg)                                          # resuming with other features is refused too


def test_clear_errors_for_missing_dataset_and_features(tmp_path, dataset_dir):
    from llm_emf.config import ConfigError
    cfg = tiny_train_config(tmp_path, run_name="err")
    cfg.data.dataset = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="data.dataset: expected a prepared dataset folder"):
        train(cfg)
    cfg = tiny_train_config(tmp_path, run_name="err2")
    cfg.model.use_text = True
    with pytest.raises(ConfigError, match="model.features: expected a feature table path"):
        train(cfg)


def test_a_caller_supplied_session_receives_every_epoch_report(tmp_path, dataset_dir):
    from llm_emf.training.session import LocalSession

    cfg = tiny_train_config(tmp_path, epochs=2, run_name="own")
    session = LocalSession(tmp_path / "runs" / "own")
    result = train(cfg, session=session)
    assert [r["epoch"] for r in session.reports] == [1, 2]
    assert Path(result.checkpoint).parent == tmp_path / "runs" / "own" / "checkpoints"
