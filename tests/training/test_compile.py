"""train.compile (llm_emf/training/compiling.py): compiled training steps match eager ones, the state_dict is the
module's own, and where compiling cannot work training falls back to eager mode with exactly one warning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from llm_emf.checkpoints import load_state
from llm_emf.data.cold import trained_items
from llm_emf.model import build_model
from llm_emf.model.batch import sequences_of
from llm_emf.model.layers import CausalEncoder, CrossDomainAttention
from llm_emf.precision import use_bf16
from llm_emf.training import compiling, train
from llm_emf.training.compiling import StepCompiler, unavailable
from llm_emf.training.hooks import TrainHook
from llm_emf.training.loop import build_optimizer, train_epoch
from train_tiny_dataset import tiny_dataset, tiny_train_config


@pytest.fixture(autouse=True)
def compile_on(monkeypatch):
    """torch.compile as a user has it (even where TORCH_COMPILE_DISABLE=1 is set around the suite), and each
    test sees the process's first warning of its reason."""
    from torch._dynamo import config as dynamo_config

    monkeypatch.setattr(compiling, "_warned", set())
    with dynamo_config.patch(disable=False):
        yield


@pytest.fixture
def compiler_here():
    """Inductor builds CPU kernels with a C++ compiler in subprocesses: these tests are integration tests."""
    why = unavailable("cpu")
    if why is not None:
        pytest.skip(f"torch.compile cannot run here: {why}")


def _setup(tmp_path, name="llm_emf", dropout=0.0, seed=0, bf16=False):
    cfg = tiny_train_config(tmp_path, bf16=bf16)
    cfg.model.name, cfg.model.dropout, cfg.model.cross_attention = name, dropout, True
    dataset = tiny_dataset()
    torch.manual_seed(seed)
    model = build_model(cfg.model, dataset.n_x, dataset.n_y, None, trained_items(dataset))
    seqs = sequences_of(dataset.split("train"))
    seqs = seqs.take(np.flatnonzero(seqs.lengths >= 2))
    return cfg, model, seqs


def _losses(tmp_path, compile_: bool, steps: int = 4, **kw) -> tuple[list[float], StepCompiler, torch.nn.Module]:
    """Per-step mean losses of ``steps`` single-batch epochs. Batches of 16 sequences have different row
    counts (one row per supervision window), so a compiled run sees several shapes."""
    cfg, model, seqs = _setup(tmp_path, **kw)
    opt, sched = build_optimizer(model, cfg)
    compiler = StepCompiler(model, "cpu", compile_)
    rng = np.random.default_rng(0)
    torch.manual_seed(1)
    out = []
    for _ in range(steps):
        rows = rng.choice(len(seqs.starts), 16, replace=False)
        out.append(train_epoch(model, opt, sched, seqs, rows, cfg, "cpu", compiler=compiler))
    return out, compiler, model


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("name, bf16", [("llm_emf", False), ("sasrec", False), ("llm_emf", True)])
def test_compiled_steps_match_eager_and_learn(tmp_path, name, bf16, compiler_here):
    """bf16=True: autocast where the CPU has native bf16 (elsewhere train.bf16 trains in fp32, precision.py)."""
    eager, _, eager_model = _losses(tmp_path, False, steps=6, name=name, bf16=bf16)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        compiled, compiler, model = _losses(tmp_path, True, steps=6, name=name, bf16=bf16)
    assert _compile_warnings(warned) == []              # compiling works here: no fallback
    assert compiler.active and compiler.reason is None
    assert {type(m) for m in compiler.modules} == ({CausalEncoder} if name == "sasrec"
                                                   else {CausalEncoder, CrossDomainAttention})
    # the same model trained on the same batches: equal up to float reordering (bf16 rounds intermediates that
    # inductor keeps in fp32 inside a fused kernel), and it learns
    native = use_bf16(bf16, "cpu")
    np.testing.assert_allclose(compiled, eager, rtol=1e-3 if native else 1e-5)
    assert compiled[-1] < compiled[0]
    assert list(model.state_dict()) == list(eager_model.state_dict())
    assert not any("_orig_mod" in k for k in model.state_dict())
    # the trained models score alike (parameters can differ where Adam amplifies rounding noise in gradients
    # that are zero in exact arithmetic, e.g. the attention keys' bias, which no score depends on)
    _, _, seqs = _setup(tmp_path, name=name)
    batch = model.build_eval_batch(seqs.take(np.arange(32)))
    model.eval(), eager_model.eval()
    for domain in (0, 1):
        torch.testing.assert_close(model.score(batch, domain), eager_model.score(batch, domain),
                                   rtol=1e-2 if native else 1e-4, atol=1e-2 if native else 1e-5)


@pytest.mark.integration
@pytest.mark.slow
def test_dropout_under_compile_is_seeded(tmp_path, compiler_here):
    # inductor draws its own dropout masks: not eager's, but the same for the same seed
    a, _, _ = _losses(tmp_path, True, steps=3, dropout=0.3)
    b, _, _ = _losses(tmp_path, True, steps=3, dropout=0.3)
    assert a == b
    assert np.isfinite(a).all()


@pytest.mark.integration
@pytest.mark.slow
def test_state_dict_loads_into_eager_and_back(tmp_path, compiler_here):
    cfg, model, seqs = _setup(tmp_path)
    keys = list(model.state_dict())
    compiler = StepCompiler(model, "cpu", True)
    opt, sched = build_optimizer(model, cfg)
    train_epoch(model, opt, sched, seqs, np.arange(16), cfg, "cpu", compiler=compiler)
    state = model.state_dict()
    assert list(state) == keys
    _, plain, _ = _setup(tmp_path, seed=5)
    plain.load_state_dict(state)                       # a compiled run's checkpoint loads into an eager model
    model.load_state_dict(plain.state_dict())          # and back
    model.eval()                                       # evaluation runs the class's own forward
    batch = plain.build_eval_batch(seqs.take(np.arange(8)))
    torch.testing.assert_close(model.score(batch, 1), plain.score(batch, 1))


def test_disabled_compiles_nothing(tmp_path):
    _, model, _ = _setup(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compiler = StepCompiler(model, "cpu", False)
    assert not compiler.active and compiler.reason is None
    assert not any("forward" in vars(m) for m in model.modules())


def _compile_warnings(warned) -> list[str]:
    return [str(w.message) for w in warned if "train.compile" in str(w.message)]


def test_a_compile_error_falls_back_to_eager_with_one_warning(tmp_path, monkeypatch):
    """The encoders compile and run (drawing their dropout masks), then the cross-domain attention fails in the
    compiler backend (as a C++ build error would): training goes on eagerly, the failed step rerun from the RNG
    state it started with, so the losses are eager mode's; one warning says why."""
    calls = []

    def failing_backend(graph, example_inputs):
        calls.append(graph)
        raise RuntimeError("simulated C++ build error")
    backends = {CausalEncoder: "eager", CrossDomainAttention: failing_backend}   # "eager": dynamo, no inductor
    monkeypatch.setattr(compiling, "_compiled", {})
    monkeypatch.setattr(compiling, "_compiled_forward",
                        lambda cls, device_type: compiling._compiled.setdefault(
                            cls, torch.compile(cls.forward, backend=backends[cls])))
    monkeypatch.setattr(compiling, "unavailable", lambda device: None)
    eager, _, _ = _losses(tmp_path, False, dropout=0.2)
    with pytest.warns(RuntimeWarning) as warned:
        fell_back, compiler, model = _losses(tmp_path, True, dropout=0.2)
    messages = _compile_warnings(warned)
    assert len(messages) == 1, messages
    assert "BackendCompilerFailed" in messages[0] and "eager mode" in messages[0]
    assert len(calls) == 1                             # tried once, never again
    assert not compiler.active and "compiling failed" in compiler.reason
    assert not any("forward" in vars(m) for m in model.modules())
    assert fell_back == eager                          # the same RNG draws: bit for bit


@pytest.mark.integration             # looks for the compiler by running it
def test_no_cxx_compiler_warns_once_and_trains_eagerly(tmp_path):
    import torch._inductor.config as inductor_config

    here = unavailable("cpu")
    eager, _, _ = _losses(tmp_path, False, steps=2)
    with inductor_config.patch({"cpp.cxx": ("/nonexistent/g++",)}):      # the compilers inductor looks for
        assert "no C++ compiler" in unavailable("cpu")
        with pytest.warns(RuntimeWarning) as warned:
            first, compiler, _ = _losses(tmp_path, True, steps=2)
            second, _, _ = _losses(tmp_path, True, steps=2)    # a second run in the same process: no second warning
    assert len(_compile_warnings(warned)) == 1 and "no C++ compiler" in _compile_warnings(warned)[0]
    assert not compiler.active and first == second == eager
    assert unavailable("cpu") == here                          # the real search is back


def test_unsupported_device_is_named():
    assert "device type 'meta'" in unavailable("meta")


class CompileOn(TrainHook):
    """Turns torch.compile back on inside a Ray Train worker, in case TORCH_COMPILE_DISABLE=1 is set around the
    suite (the workers inherit the environment)."""

    def on_train_start(self, ctx, start_epoch: int) -> None:
        from torch._dynamo import config as dynamo_config

        dynamo_config.disable = False


@pytest.mark.integration
@pytest.mark.slow
def test_compiled_training_resumes_to_the_same_numbers(tmp_path, dataset_dir, compiler_here):
    """Through train(): epochs record that they ran compiled, checkpoints hold plain keys (finish() loads them
    into a fresh eager model), and a run resumed after epoch 1 matches an uninterrupted one, dropout included."""
    full = train(tiny_train_config(tmp_path, epochs=2, run_name="full", compile=True))
    assert [h["compiled"] for h in full.history] == [1.0, 1.0]
    assert not any("_orig_mod" in k for k in load_state(full.checkpoint)["model"])
    train(tiny_train_config(tmp_path, epochs=1, run_name="resumed", compile=True))
    resumed = train(tiny_train_config(tmp_path, epochs=2, run_name="resumed", compile=True))
    assert resumed.history == full.history
    assert resumed.test.metrics == full.test.metrics
    eager = train(tiny_train_config(tmp_path, epochs=1, run_name="eager"))      # the default: off
    assert eager.history[0]["compiled"] == 0.0


@pytest.mark.integration
@pytest.mark.slow
def test_ray_train_workers_compile_each(tmp_path, dataset_dir, local_ray, compiler_here):
    """Two DDP workers (gloo): each compiles its own encoders; the loss falls and the checkpoint loads."""
    import sys

    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # CompileOn travels to the workers
    cfg = tiny_train_config(tmp_path, epochs=2, num_workers=2, cpus_per_worker=0.5, run_name="ddp_compiled",
                            compile=True)
    result = train(cfg, hooks=[CompileOn()])
    assert [h["compiled"] for h in result.history] == [1.0, 1.0]
    assert result.history[0]["world_size"] == 2
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]
    assert not any("_orig_mod" in k for k in load_state(result.checkpoint)["model"])
