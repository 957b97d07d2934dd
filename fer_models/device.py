"""Device and precision: pick what this machine computes fast, and say what was picked.

``--device auto`` is CUDA when ``torch.cuda.is_available()``, else the CPU.
``--amp auto`` is:

- on CUDA: bf16 where the GPU supports it (``torch.cuda.is_bf16_supported()``), else fp16
  (with a gradient scaler in training);
- on the CPU: bf16 only where the CPU computes it natively (AVX512-BF16 or AMX), else
  float32 (``none``). Without native support, bf16 autocast is emulated and trains
  ``mini_xception_cbam`` about 12x slower than float32 (measured on an AVX2-only CPU).

Detection asks torch's own CPU probes (``torch.cpu._is_avx512_bf16_supported`` /
``_is_amx_tile_supported``), never a hard-coded CPU, and honours an ``ONEDNN_MAX_CPU_ISA``
cap (with ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` a bf16 machine behaves as an
AVX2-only one: that is how ``benchmarks/train_speed.py`` measures both kinds on one machine).
This module is the one home of these rules: training, evaluation, prediction, ``summary``
and ``benchmarks/train_speed.py`` all call :func:`resolve`.
"""

from __future__ import annotations

import os
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

    def autocast(self) -> torch.autocast:
        """Autocast context for forward passes (a no-op for ``none``)."""
        return torch.autocast(self.device.type, dtype=_DTYPES.get(self.amp, torch.bfloat16),
                              enabled=self.amp in _DTYPES)

    def describe(self) -> str:
        """One line for logs, e.g. ``cpu (AVX512+BF16), amp bf16``."""
        where = (f"{self.device} ({torch.cuda.get_device_name(self.device)})" if self.device.type == "cuda"
                 else f"cpu ({cpu_capability()})")
        return f"{where}, amp {self.amp}"

    def record(self) -> dict[str, str]:
        """What goes into a run's config / log / report."""
        return {"device": str(self.device), "amp": self.amp, "cpu_capability": cpu_capability()}


def resolve(device: str = "auto", amp: str = "auto") -> Placement:
    """Resolve ``--device`` and ``--amp`` together (see the module docstring)."""
    dev = resolve_device(device)
    return Placement(dev, resolve_amp(amp, dev))


__all__ = ["AMP_CHOICES", "DEVICE_CHOICES", "Placement", "cpu_capability", "cpu_native_bf16", "resolve",
           "resolve_amp", "resolve_device"]
