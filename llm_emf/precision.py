"""Where bfloat16 pays: one rule for training's autocast and the enrichment model's dtype.

On x86 CPUs bf16 matmuls are fast only with AVX-512 or AMX (oneDNN kernels). On an AVX2-only CPU torch
falls back to a scalar path: a 2048^2 bf16 matmul ran at 0.25 GFLOP/s against 78 GFLOP/s in fp32 on an
AMD EPYC with AVX2, so a `train.bf16=true` epoch that took a minute took over a quarter of an hour.
"""

from __future__ import annotations

import platform
import warnings

import torch

_X86 = ("x86_64", "amd64", "i386", "i686")
_warned: set[str] = set()


def native_bf16(device: str | torch.device) -> bool:
    """True where bf16 matmuls run at least as fast as fp32: CUDA GPUs with bf16, x86 CPUs with AVX-512 or
    AMX. Other CPU architectures are trusted (their capability string does not say)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    if kind != "cpu" or platform.machine().lower() not in _X86:
        return True
    return torch.backends.cpu.get_cpu_capability().startswith(("AVX512", "AMX"))


def use_bf16(requested: bool, device: str | torch.device) -> bool:
    """``train.bf16`` as it applies on ``device``: off, with one warning per process and device kind, where
    bf16 is not native (training then runs in fp32, the same model at full precision)."""
    if not requested:
        return False
    if native_bf16(device):
        return True
    kind = torch.device(device).type
    if kind not in _warned:
        _warned.add(kind)
        capability = torch.backends.cpu.get_cpu_capability() if kind == "cpu" else torch.cuda.get_device_name()
        warnings.warn(f"train.bf16=true: this {kind} ({capability}) has no native bfloat16 matrix unit "
                      "(x86 needs AVX-512 or AMX), where bf16 runs orders of magnitude slower than fp32; "
                      "training in fp32", RuntimeWarning, stacklevel=2)
    return False
