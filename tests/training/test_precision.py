"""llm_emf.precision: where bf16 is native, and train.bf16 falling back to fp32 elsewhere."""

import pytest
import torch

from llm_emf import precision
from llm_emf.features.generation import pick_dtype

pytestmark = pytest.mark.unit


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to be an x86 CPU with a given torch capability string."""
    monkeypatch.setattr(precision, "_warned", set())

    def set_cpu(capability: str, machine: str = "x86_64"):
        monkeypatch.setattr(precision.platform, "machine", lambda: machine)
        monkeypatch.setattr(precision.torch.backends.cpu, "get_cpu_capability", lambda: capability)
    return set_cpu


@pytest.mark.parametrize("capability, native", [("AVX512", True), ("AVX512_BF16", True), ("AMX", True),
                                                ("AVX2", False), ("DEFAULT", False)])
def test_x86_cpus_do_bf16_natively_only_with_avx512_or_amx(cpu, capability, native):
    cpu(capability)
    assert precision.native_bf16("cpu") is native
    assert pick_dtype("cpu") == (torch.bfloat16 if native else torch.float32)


def test_other_cpu_architectures_are_trusted(cpu):
    cpu("DEFAULT", machine="aarch64")
    assert precision.native_bf16("cpu") is True


def test_cuda_asks_the_device(monkeypatch):
    for supported in (True, False):
        monkeypatch.setattr(precision.torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert precision.native_bf16("cuda") is supported
        assert pick_dtype("cuda") == (torch.bfloat16 if supported else torch.float16)


def test_use_bf16_falls_back_with_one_warning(cpu, recwarn):
    cpu("AVX2")
    assert precision.use_bf16(False, "cpu") is False and len(recwarn) == 0    # not asked: nothing to say
    with pytest.warns(RuntimeWarning, match=r"this cpu \(AVX2\) has no native bfloat16.*training in fp32"):
        assert precision.use_bf16(True, "cpu") is False
    recwarn.clear()
    assert precision.use_bf16(True, torch.device("cpu")) is False
    assert len(recwarn) == 0                                                   # once per process
    cpu("AVX512")
    assert precision.use_bf16(True, "cpu") is True
