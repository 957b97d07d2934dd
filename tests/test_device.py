"""fer_models.device: the auto device / precision choice, with the hardware mocked (no GPU needed)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from fer_models import device as dev  # noqa: E402


@pytest.fixture
def hardware(monkeypatch: pytest.MonkeyPatch):
    """Set what the machine has: fake CPU bf16 support, CUDA presence and CUDA bf16 support."""

    def set_(cpu_bf16: bool, cuda: bool = False, cuda_bf16: bool = True, level: str = "AVX2") -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: cpu_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: level)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: int(cuda))
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)

    return set_


def test_avx2_only_cpu_trains_in_float32(hardware) -> None:
    hardware(cpu_bf16=False, level="AVX2")
    placement = dev.resolve("auto", "auto")
    assert placement.device.type == "cpu" and placement.amp == "none"
    assert dev.cpu_capability() == "AVX2"
    assert placement.record() == {"device": "cpu", "amp": "none", "cpu_capability": "AVX2"}


def test_native_bf16_cpu_uses_bf16(hardware) -> None:
    hardware(cpu_bf16=True, level="AVX512")
    placement = dev.resolve("auto", "auto")
    assert (placement.device.type, placement.amp) == ("cpu", "bf16")
    assert dev.cpu_capability() == "AVX512+BF16"


def test_amx_counts_as_native(hardware, monkeypatch: pytest.MonkeyPatch) -> None:
    hardware(cpu_bf16=False, level="AVX512")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert dev.resolve("cpu", "auto").amp == "bf16"


@pytest.mark.parametrize("cuda_bf16, expected", [(True, "bf16"), (False, "fp16")])
def test_cuda_present(hardware, cuda_bf16: bool, expected: str) -> None:
    hardware(cpu_bf16=False, cuda=True, cuda_bf16=cuda_bf16)
    placement = dev.resolve("auto", "auto")
    assert placement.device == torch.device("cuda") and placement.amp == expected
    # an explicit CPU still follows the CPU rule
    assert dev.resolve("cpu", "auto").amp == "none"


def test_cuda_absent_errors_clearly(hardware) -> None:
    hardware(cpu_bf16=True, cuda=False)
    assert dev.resolve("auto").device.type == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        dev.resolve("cuda")
    with pytest.raises(ValueError, match="unknown device|unsupported device"):
        dev.resolve("tpu")
    with pytest.raises(ValueError, match="fp16 is for CUDA"):
        dev.resolve("cpu", "fp16")
    with pytest.raises(ValueError, match="amp must be one of"):
        dev.resolve("cpu", "int8")


def test_explicit_choices_are_kept(hardware) -> None:
    hardware(cpu_bf16=False)
    assert dev.resolve("cpu", "bf16").amp == "bf16"  # the user asked: emulated, but honoured
    assert dev.resolve("cpu", "none").amp == "none"


def test_autocast_follows_the_choice() -> None:
    x = torch.randn(2, 3)
    w = torch.randn(3, 3)
    with dev.resolve("cpu", "bf16").autocast():
        assert (x @ w).dtype == torch.bfloat16
    with dev.resolve("cpu", "none").autocast():
        assert (x @ w).dtype == torch.float32


def test_training_records_the_choice(hardware, tmp_path) -> None:
    """The resolved choice reaches config.json and every log line (AVX2-only machine mocked)."""
    import json

    from conftest import train_config as config, write_train_csv as write_csv
    from fer_models.train import main

    hardware(cpu_bf16=False, level="AVX2")
    csv = write_csv(tmp_path / "toy.csv", 42)
    out = tmp_path / "run"
    main(config(csv, out, recipe="default", epochs=1, max_steps_per_epoch=1))
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved == {"device": "cpu", "amp": "none", "cpu_capability": "AVX2",
                        "keep_freed_memory": dev.keep_freed_memory()}
    log = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert log["amp"] == "none" and log["cpu_capability"] == "AVX2"


def test_onednn_isa_cap_disables_native_bf16(hardware, monkeypatch: pytest.MonkeyPatch) -> None:
    hardware(cpu_bf16=True, level="AVX512")
    for cap, native in (("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True), ("ALL", True),
                        ("AVX512_CORE_AMX", True)):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert dev.cpu_native_bf16() is native, cap
        assert dev.resolve("cpu", "auto").amp == ("bf16" if native else "none")


class _FakeLibc:
    """Stands in for ``ctypes.CDLL(None)``: records ``mallopt`` calls, answers ``ok``."""

    def __init__(self, ok: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.ok = ok

        def mallopt(param: int, value: int) -> int:
            self.calls.append((param, value))
            return self.ok

        self.mallopt = mallopt


@pytest.fixture
def fake_libc(monkeypatch: pytest.MonkeyPatch) -> _FakeLibc:
    libc = _FakeLibc()
    monkeypatch.setattr(dev, "_kept", None)
    monkeypatch.setattr(dev.ctypes, "CDLL", lambda _name: libc)
    monkeypatch.setattr(dev.platform, "libc_ver", lambda: ("glibc", "2.36"))
    for name in (dev.MALLOC_ENV, "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD"):
        monkeypatch.delenv(name, raising=False)
    return libc


def test_keep_freed_memory_sets_glibc_thresholds_once(fake_libc: _FakeLibc) -> None:
    assert dev.keep_freed_memory() is True
    assert dev.keep_freed_memory() is True  # applied once per process
    assert fake_libc.calls == [(-3, 32 * 1024 * 1024), (-1, 2**31 - 1)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


@pytest.mark.parametrize("env", [{"FER_MODELS_KEEP_MEMORY": "0"}, {"MALLOC_MMAP_THRESHOLD_": "131072"},
                                 {"MALLOC_TRIM_THRESHOLD_": "0"}, {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}])
def test_keep_freed_memory_leaves_a_tuned_or_opted_out_allocator(fake_libc: _FakeLibc, monkeypatch, env) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert dev.keep_freed_memory() is False
    assert fake_libc.calls == []


def test_keep_freed_memory_off_glibc_or_refused(fake_libc: _FakeLibc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev.platform, "libc_ver", lambda: ("", ""))  # musl, macOS, Windows
    assert dev.keep_freed_memory() is False and fake_libc.calls == []
    monkeypatch.setattr(dev, "_kept", None)
    monkeypatch.setattr(dev.platform, "libc_ver", lambda: ("glibc", "2.36"))
    fake_libc.ok = 0  # glibc refuses the value
    assert dev.keep_freed_memory() is False


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="glibc only")
def test_keep_freed_memory_on_this_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real mallopt accepts both values here (process-wide, harmless for the other tests)."""
    for name in (dev.MALLOC_ENV, "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(dev, "_kept", None)
    assert dev.keep_freed_memory() is True
