"""``train.compile``: the training step's sequence encoders through ``torch.compile`` (inductor).

What is compiled: every causal encoder (``CausalEncoder``: LLM-EMF's mixed and two single-domain encoders,
SASRec's two) and every ``CrossDomainAttention``, in training mode with gradients on; evaluation, serving and
everything around the encoders (item vectors, the C2DSR combination, the fused loss) stay eager. One compiled
forward per class serves all its instances (the same code with the same shapes: one compile for three
encoders). The fused loss is a custom autograd.Function with a Python chunk loop and data-dependent branches,
which dynamo would unroll per batch size or break on.

Shapes: a batch holds one row per supervision window, so its row count changes from batch to batch. The row
count is marked dynamic from the first call, so one graph per class serves every batch: a static first graph
would cost a second compile at the second batch, and a resumed run in a new process would run some batches
through the other graph than the uninterrupted run did, so its numbers would differ by float rounding.
(Inductor sums long fp32 reductions in chunks of 4,096: batches on either side of B x L = 4,096 rows get a
graph each, the same in every run.)

Dropout: on CPU the masks come from aten's vectorised ``rand`` (inductor's ``fallback_random``): inductor's
own CPU random numbers cost a scalar Philox evaluation per element, and the compiled encoders were slower with
them. Either way the same seed gives the same masks run after run, but not eager mode's masks (the attention's
dropout is drawn differently), so compiled and eager training agree to float rounding only without dropout
(tests/training/test_compile.py).

Measured (bench/results/train_ceiling.md, Food-Kitchen, 2-core AVX-512 CPU): a compiled step was 2-11% slower
than an eager one in fp32 and bf16 (3% without dropout), after 41-56 s of compiling with an empty cache. The
encoders are under a third of the step, and the full-softmax loss, most of the rest, is matmuls either way.
Hence ``train.compile`` is off by default.

State: the compiled function replaces the module's ``forward`` as an instance attribute; parameters,
buffers and ``state_dict`` keys stay the module's own (no ``_orig_mod.`` prefix), so checkpoints are the same
as eager mode's and resume either way.

Fallback: where it cannot work (a Python or platform torch.compile does not support, no C++ compiler for CPU
kernels, no Triton for CUDA ones, another device) or when compiling fails (any dynamo or inductor error in a
step), the modules go back to eager mode, the failed step is rerun eagerly from the same RNG state, and one
warning per process says why.
"""

from __future__ import annotations

import platform
import warnings
from typing import Callable

import torch
import torch.nn as nn

from llm_emf.model.layers import CausalEncoder, CrossDomainAttention

COMPILED = (CausalEncoder, CrossDomainAttention)
_compiled: dict[tuple[type, str], Callable] = {}   # (class, device type) -> its compiled forward (all instances)
_warned: set[str] = set()


def unavailable(device: str | torch.device) -> str | None:
    """Why torch.compile cannot compile the training step on ``device`` here; None when it can."""
    from torch._dynamo import is_dynamo_supported

    if not is_dynamo_supported():
        return f"torch.compile does not support Python {platform.python_version()} on {platform.system()}"
    kind = torch.device(device).type
    if kind == "cpu":
        from torch._inductor.cpp_builder import get_cpp_compiler
        try:
            get_cpp_compiler()          # runs `<compiler> --version`; raises when none of inductor's candidates runs
        except Exception as e:      # noqa: BLE001: any failure to find one means inductor cannot build CPU kernels
            return f"no C++ compiler for inductor's CPU kernels ({type(e).__name__}; install g++ or set CXX)"
    elif kind == "cuda":
        from torch.utils._triton import has_triton
        if not has_triton():
            return "no Triton for inductor's CUDA kernels (pip install triton)"
    else:
        return f"inductor does not compile for device type '{kind}' here"
    return None


def compile_errors() -> tuple[type[BaseException], ...]:
    """What a failed compile raises (dynamo's and inductor's errors, a C++ build error)."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import CppCompileError
    return (TorchDynamoException, CppCompileError)


def outermost(model: nn.Module, classes: tuple[type, ...]) -> list[nn.Module]:
    """The modules of ``classes`` in ``model`` that are not inside another one (that one's graph holds them)."""
    found: list[nn.Module] = []

    def walk(module: nn.Module) -> None:
        if isinstance(module, classes):
            found.append(module)
            return
        for child in module.children():
            walk(child)
    walk(model)
    return found


def _compiled_forward(cls: type, device_type: str) -> Callable:
    if (cls, device_type) not in _compiled:
        # CPU: aten's vectorised rand for dropout masks (module doc, Dropout)
        options = {"fallback_random": True} if device_type == "cpu" else {}
        _compiled[cls, device_type] = torch.compile(cls.forward, options=options)
    return _compiled[cls, device_type]


class _TrainingForward:
    """A module's ``forward`` while compiled: the compiled one in training mode with gradients on (the
    training step), the class's own otherwise (validation, scoring), so evaluation never waits for a compile."""

    def __init__(self, module: nn.Module, device_type: str):
        from torch._dynamo import maybe_mark_dynamic

        self.module = module
        self.compiled = _compiled_forward(type(module), device_type)
        self.eager = type(module).forward
        self.mark_dynamic = maybe_mark_dynamic

    def __call__(self, *args, **kwargs):
        if self.module.training and torch.is_grad_enabled():
            for a in args:          # every input's first dimension is the batch's row count
                if isinstance(a, torch.Tensor) and a.dim() > 0:
                    self.mark_dynamic(a, 0)
            return self.compiled(self.module, *args, **kwargs)
        return self.eager(self.module, *args, **kwargs)


class StepCompiler:
    """Compiles ``model``'s encoders in place (when ``enabled`` and possible) and runs training steps with
    the fallback of the module doc. ``active``: the encoders are compiled now; ``reason``: why not, if they
    were asked to be and are not."""

    def __init__(self, model: nn.Module, device: str | torch.device, enabled: bool):
        self.device = torch.device(device)
        self.modules: list[nn.Module] = []
        self.reason: str | None = None
        if not enabled:
            return
        from torch._dynamo import config as dynamo_config

        if dynamo_config.disable:       # torch's own switch, set on purpose (the test suite does): no warning
            self.reason = "torch.compile is off in this process (TORCH_COMPILE_DISABLE=1)"
            return
        why = unavailable(self.device)
        if why is not None:
            self._fall_back(why)
            return
        self.modules = outermost(model, COMPILED)
        for m in self.modules:
            m.forward = _TrainingForward(m, self.device.type)

    @property
    def active(self) -> bool:
        return bool(self.modules)

    def run(self, step: Callable[[], tuple]) -> tuple:
        """``step()`` (forward and backward of one batch); on a compile error, eager mode from here on and
        ``step()`` again from the RNG state it started with (its gradients are zeroed by the step itself)."""
        if not self.modules:
            return step()
        rng = _rng_state(self.device)
        try:
            return step()
        except compile_errors() as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            self._fall_back(f"compiling failed ({type(e).__name__}: {first[:300]})")
            _set_rng_state(self.device, rng)
            return step()

    def _fall_back(self, why: str) -> None:
        for m in self.modules:
            del m.forward                     # the instance attribute: the class's forward again
        self.modules = []
        self.reason = why
        if why not in _warned:
            _warned.add(why)
            warnings.warn(f"train.compile=true: {why}; training in eager mode (train.compile=false silences this)",
                          RuntimeWarning, stacklevel=3)


def _rng_state(device: torch.device):
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(device: torch.device, state) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
