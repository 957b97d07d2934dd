"""Model cost table: parameters, FLOPs / multiply-adds and CPU inference speed.

FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode` on one
image. That counter counts a multiply-add as **2** FLOPs and counts only
convolutions and matrix products (not BatchNorm, activations, pooling,
softmax or the element-wise products of attention gates); multiply-adds
(MACs) are reported as FLOPs / 2.

Speed is measured in eval mode under ``torch.inference_mode()``, on the device and in the
precision that ``fer_models.device.resolve`` picks (``--device`` / ``--amp``; float32 when
called without one), NCHW (or channels_last on request), with a fixed number of intra-op threads:
latency at batch 1 and throughput at batch 256, each the median over timed
repeats after warm-up runs.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily so the CLI can read the defaults cheaply
    import torch
    from torch import nn

    from fer_models.device import Placement

#: Input of every model: one grayscale 48x48 face, (C, H, W).
INPUT_SHAPE: tuple[int, int, int] = (1, 48, 48)
LATENCY_BATCH = 1
THROUGHPUT_BATCH = 256
DEFAULT_LATENCY_REPEATS = 20
DEFAULT_THROUGHPUT_REPEATS = 3
DEFAULT_WARMUP = 2
#: FlopCounterMode counts one multiply-add as this many FLOPs.
FLOPS_PER_MAC = 2
#: Heading of the section that ``write_section`` replaces in docs/results.md.
SECTION_HEADING = "## Model cost"

#: Sizes given by the paper for comparison: (params, FLOPs as printed there).
PAPER_REFERENCE: dict[str, tuple[float, float | None]] = {
    "mini_xception_paper": (0.61e6, 28.3e6),
    "mini_xception_cbam_paper": (0.68e6, 30.1e6),
    "mobilenet_v2": (2.23e6, None),
    "resnet18": (11.69e6, 98.7e6),
    "vit": (13.45e6, 102.3e6),
}


@dataclass(frozen=True)
class ModelCost:
    """Cost of one model on a (1, 48, 48) input.

    ``flops`` is FlopCounterMode's count for one image (2 per multiply-add),
    ``macs`` = flops / 2. Timings are None when not measured.
    """

    name: str
    params: int
    flops: int
    macs: int
    latency_ms: float | None = None
    throughput_ips: float | None = None


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; BatchNorm running statistics are buffers, not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape: Sequence[int] = INPUT_SHAPE) -> int:
    """FLOPs of one forward pass on a single zero image of shape ``input_shape`` (C, H, W).

    FlopCounterMode convention: 2 FLOPs per multiply-add; convolutions and
    matrix products only. The model is put in eval mode.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    x = torch.zeros(1, *input_shape)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def time_forward(
    model: nn.Module, x: torch.Tensor, repeats: int, warmup: int = DEFAULT_WARMUP,
    placement: Placement | None = None,
) -> list[float]:
    """Wall-clock seconds of ``repeats`` forward passes on ``x`` after ``warmup`` untimed ones.

    ``placement`` (default: CPU, float32) sets the autocast precision; on CUDA each pass is
    synchronised before the clock stops. ``model`` and ``x`` must be on its device.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    import torch

    from fer_models.device import resolve

    placement = placement or resolve("cpu", "none")
    sync = torch.cuda.synchronize if placement.device.type == "cuda" else (lambda: None)
    model.eval()
    times = []
    with torch.inference_mode(), placement.autocast():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            model(x)
            sync()
            elapsed = time.perf_counter() - start
            if i >= warmup:
                times.append(elapsed)
    return times


def measure_model(
    name: str,
    *,
    timing: bool = True,
    latency_repeats: int = DEFAULT_LATENCY_REPEATS,
    throughput_repeats: int = DEFAULT_THROUGHPUT_REPEATS,
    warmup: int = DEFAULT_WARMUP,
    channels_last: bool = False,
    seed: int = 0,
    placement: Placement | None = None,
) -> ModelCost:
    """Parameters, FLOPs and (if ``timing``) batch-1 latency and batch-256 throughput of ``name``.

    Uses the current ``torch.get_num_threads()``; inputs are seeded random
    normal float32 tensors; ``placement`` is the device and precision (default: CPU float32).
    """
    import torch

    from fer_models.models import create_model

    torch.manual_seed(seed)
    model = create_model(name).eval()
    params = count_params(model)
    flops = count_flops(model)
    latency_ms = throughput = None
    if timing:
        from fer_models.device import resolve

        placement = placement or resolve("cpu", "none")
        dev = placement.device
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(dev, memory_format=memory_format)
        gen = torch.Generator().manual_seed(seed)
        x1 = torch.randn(LATENCY_BATCH, *INPUT_SHAPE, generator=gen).to(dev, memory_format=memory_format)
        xb = torch.randn(THROUGHPUT_BATCH, *INPUT_SHAPE, generator=gen).to(dev, memory_format=memory_format)
        latency_ms = 1e3 * statistics.median(time_forward(model, x1, latency_repeats, warmup, placement))
        t_batch = statistics.median(time_forward(model, xb, throughput_repeats, min(warmup, 1), placement))
        throughput = THROUGHPUT_BATCH / t_batch
    return ModelCost(name, params, flops, flops // FLOPS_PER_MAC, latency_ms, throughput)


def _paper_cell(name: str) -> str:
    ref = PAPER_REFERENCE.get(name)
    if ref is None:
        return ""
    params, flops = ref
    cell = f"{params / 1e6:.2f}M"
    return cell + (f" / {flops / 1e6:.1f}M" if flops is not None else "")


def format_table(rows: Sequence[ModelCost]) -> str:
    """Markdown table of ``rows``."""
    header = (
        "| model | params | MFLOPs (FlopCounter, 2/MAC) | MMACs | latency b1 (ms) "
        "| throughput b256 (img/s) | paper params / FLOPs |"
    )
    lines = [header, "|---|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        lat = f"{r.latency_ms:.2f}" if r.latency_ms is not None else "-"
        thr = f"{r.throughput_ips:,.0f}" if r.throughput_ips is not None else "-"
        lines.append(
            f"| {r.name} | {r.params:,} | {r.flops / 1e6:,.1f} | {r.macs / 1e6:,.1f} "
            f"| {lat} | {thr} | {_paper_cell(r.name)} |"
        )
    return "\n".join(lines)


def machine_description(threads: int | None = None) -> str:
    """CPU model, logical CPU count, torch version and intra-op threads (``threads`` if given: the
    number the work described ran with, else this process's)."""
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    n = threads or torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {n} intra-op thread{'s' * (n != 1)}"


def render_section(
    rows: Sequence[ModelCost],
    command: str,
    *,
    latency_repeats: int,
    throughput_repeats: int,
    warmup: int,
    channels_last: bool,
    note: str | None = None,
    precision: str = "float32",
) -> str:
    """The ``## Model cost`` section of docs/results.md (ends with a newline).

    ``note``, if given, is added as a paragraph under the machine line.
    """
    layout = "channels_last" if channels_last else "NCHW"
    note_lines = [note, ""] if note else []
    return "\n".join(
        [
            SECTION_HEADING,
            "",
            f"Command: `{command}`",
            "",
            f"Machine: {machine_description()}.",
            "",
            *note_lines,
            "- params: trainable parameters (BatchNorm running statistics excluded), 7 classes, "
            "1x48x48 input.",
            "- FLOPs: `torch.utils.flop_counter.FlopCounterMode` on one image; it counts a "
            "multiply-add as 2 FLOPs and counts only convolutions and matrix products "
            "(not BatchNorm, activations, pooling, softmax, attention gate products). "
            "MMACs = MFLOPs / 2.",
            f"- latency: batch {LATENCY_BATCH}, median of {latency_repeats} runs after {warmup} "
            f"warm-up runs; throughput: batch {THROUGHPUT_BATCH}, images/s from the median of "
            f"{throughput_repeats} runs after {min(warmup, 1)} warm-up run; eval mode, "
            f"`torch.inference_mode()`, {precision}, {layout}.",
            "- paper: the sizes the paper prints (its \"FLOPs\" match multiply-adds: compare with "
            "the MMACs column); its ResNet-18 (11.69M) is the ImageNet model with RGB input and "
            "1000 classes; see docs/models.md for the `_paper` widths.",
            "",
            format_table(rows),
            "",
        ]
    )


def replace_section(text: str, section: str, heading: str = SECTION_HEADING) -> str:
    """``text`` with the section starting at line ``heading`` (up to the next ``## `` heading)
    replaced by ``section``; appended at the end if absent."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if not section.endswith("\n"):
        section += "\n"
    if start is None:
        sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return text + sep + section
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
    )
    tail = lines[end:]
    return "".join(lines[:start]) + section + ("\n" if tail else "") + "".join(tail)


def check_section_file(path: str | os.PathLike, option: str = "--write") -> None:
    """Before the measurements: ``path`` can take a section (:func:`write_section`): a markdown file (``.md``),
    absent or a regular file of UTF-8 text (never a symlink, FIFO or folder).

    Raises:
        ValueError: naming ``option``, the file and the problem.
    """
    from maskgen.paths import check_write_target

    path = Path(path)
    if path.suffix.lower() != ".md":
        raise ValueError(f"{option} {path}: a section goes into a markdown file (.md)")
    check_write_target(path, option)
    if path.exists():
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{option} {path}: not UTF-8 text, so not a markdown file a section can go into") from None


def write_section(path: Path, section: str, heading: str = SECTION_HEADING) -> None:
    """Replace (or append) ``heading``'s section in the markdown file ``path``, atomically."""
    from maskgen.io import atomic_write

    path = Path(path)
    check_section_file(path)
    text = path.read_text(encoding="utf-8") if path.exists() else "# Results\n\n"
    with atomic_write(path) as tmp:
        tmp.write_text(replace_section(text, section, heading), encoding="utf-8")