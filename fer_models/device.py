"""Device and precision: pick what this machine computes fast, and say what was picked.

``--device auto`` is CUDA when ``torch.cuda.is_available()``, else the CPU.
``--amp auto`` is:

- on CUDA: bf16 where the GPU supports it (``torch.cuda.is_bf16_supported()``), else fp16
  (with a gradient scaler in training);
- on the CPU: bf16 only where the CPU computes it natively (AVX512-BF16 or AMX), else
  float32 (``none``). Without native support, bf16 autocast is emulated and trains many
  times slower than float32 (measured: docs/training.md, "Device and precision").

Detection asks torch's own CPU probes (``torch.cpu._is_avx512_bf16_supported`` /
``_is_amx_tile_supported``), never a hard-coded CPU, and honours an ``ONEDNN_MAX_CPU_ISA``
cap (with ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` a bf16 machine behaves as an
AVX2-only one: that is how ``benchmarks/train_speed.py`` measures both kinds on one machine).
This module is the one home of these rules: training, evaluation, prediction, ``summary``
and ``benchmarks/train_speed.py`` all call :func:`resolve`.

It also holds the one process-wide CPU setting training makes, :func:`keep_freed_memory`: glibc's
malloc returns freed memory to the kernel (large blocks unmapped, the heap trimmed), and the next
step's activations fault the same pages in again. A training step frees and re-allocates the same
activation buffers every step, so the kernel's page work shows as system time; what keeping
freed memory gains is measured in docs/training.md, "Speed on CPU" (results.md, "Freed memory kept").
"""

from __future__ import annotations

import ctypes
import os
import platform
from dataclasses import dataclass

import torch

from fer_models.config import AMP_CHOICES, DEVICE_CHOICES

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _isa_cap_allows_bf16() -> bool:
    """False when ``ONEDNN_MAX_CPU_ISA`` (or ``DNNL_MAX_CPU_ISA``) caps oneDNN below a bf16 ISA.

    oneDNN's bf16-computing ISAs are named ``AVX512_CORE_BF16``, ``..._FP16``, ``..._AMX*`` and
    ``AVX10_*``; a cap such as ``AVX2`` or ``AVX512_CORE`` makes bf16 emulated again.
    """
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    return cap in ("ALL", "DEFAULT") or any(tag in cap for tag in ("BF16", "FP16", "AMX", "AVX10"))


def cpu_native_bf16() -> bool:
    """True if this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles), and oneDNN may use it."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return _isa_cap_allows_bf16() and any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def cpu_capability() -> str:
    """torch's CPU kernel level (``DEFAULT``, ``AVX2``, ``AVX512``, ...), plus ``+BF16`` if native."""
    level = torch.backends.cpu.get_cpu_capability()
    return f"{level}+BF16" if cpu_native_bf16() else level


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` if available else ``cpu``; ``cuda[:N]`` must be available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}; expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available here (use --device cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def resolve_amp(amp: str, device: torch.device) -> str:
    """The autocast precision for ``amp`` on ``device``: ``bf16``, ``fp16`` or ``none``."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {AMP_CHOICES}, got {amp!r}")
    if device.type == "cpu" and amp == "fp16":
        raise ValueError("--amp fp16 is for CUDA; on the CPU use bf16 or none")
    if amp != "auto":
        return amp
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_native_bf16() else "none"


@dataclass(frozen=True)
class Placement:
    """Where and in what precision a model runs (the resolved ``--device`` / ``--amp``)."""

    device: torch.device
    amp: str

    def autocast(self, cache_enabled: bool = True) -> torch.autocast:
        """Autocast context for forward passes (a no-op for ``none``); ``cache_enabled=False`` inside
        a captured CUDA graph (the cast-weight cache must not outlive the capture)."""
        return torch.autocast(self.device.type, dtype=_DTYPES.get(self.amp, torch.bfloat16),
                              enabled=self.amp in _DTYPES, cache_enabled=cache_enabled)

    def describe(self) -> str:
        """One line for logs, e.g. ``cpu (AVX512+BF16), amp bf16``."""
        where = (f"{self.device} ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda"
                 else f"cpu ({cpu_capability()})")
        return f"{where}, amp {self.amp}"

    def record(self) -> dict[str, str]:
        """What goes into a run's config / log / report."""
        return {"device": str(self.device), "amp": self.amp, "cpu_capability": cpu_capability()}


#: glibc ``mallopt`` parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
#: Set to ``0`` to leave the C allocator as it is (also left alone when the user set glibc's own
#: ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` or preloads another allocator).
MALLOC_ENV = "FER_MODELS_KEEP_MEMORY"
_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks up to 32 MiB for reuse instead of unmapping them.

    Raises the mmap threshold to glibc's 64-bit maximum (32 MiB) and the trim threshold to
    2 GiB, so the buffers a training step frees are reused by the next step without page
    faults. Process-wide, applied once; the peak memory of the process is kept instead of
    returned. Returns whether the setting is in force (False off glibc, or when opted out with
    ``FER_MODELS_KEEP_MEMORY=0``, or when the environment already tunes the allocator).
    """
    global _kept
    if _kept is None:
        _kept = False
        env = os.environ
        user_tuned = ("MALLOC_MMAP_THRESHOLD_" in env or "MALLOC_TRIM_THRESHOLD_" in env
                      or "malloc" in env.get("LD_PRELOAD", ""))
        if env.get(MALLOC_ENV, "1") != "0" and not user_tuned and platform.libc_ver()[0] == "glibc":
            mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
            if mallopt is not None:
                mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                _kept = (mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) == 1
                         and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1)
    return _kept


def resolve(device: str = "auto", amp: str = "auto") -> Placement:
    """Resolve ``--device`` and ``--amp`` together (see the module docstring)."""
    dev = resolve_device(device)
    return Placement(dev, resolve_amp(amp, dev))


__all__ = ["AMP_CHOICES", "DEVICE_CHOICES", "MALLOC_ENV", "Placement", "cpu_capability", "cpu_native_bf16",
           "keep_freed_memory", "resolve", "resolve_amp", "resolve_device"]
