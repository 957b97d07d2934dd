"""Masked faces with their unmasked twins: the pairs only a generator can give, and what training does with them.

An SMFER2013 file (``maskgen build-smfer``) has the rows of the FER2013 file it was built from,
in order, each face masked. Read together (``fer-models train --data SMFER.csv --twin FER.csv``)
every training face comes as

- its masked copy and its unmasked twin (same row, same label, same ``Usage``);
- its **mask region**: the pixels the generator changed (:func:`mask_region`: the twins differ by
  more than :data:`REGION_DIFF` grey levels, closed over small holes where the mask's tone
  happened to match the skin), a (N, 1, 48, 48) uint8 0/1 map;
- its **mask top**: the first row of the image the mask covers (:func:`mask_top`), the line
  below which an eyes-only input is blanked.

The training options that use them (each a :class:`fer_models.config.TrainConfig` field, all
applied on the device inside the engine's one step, see :func:`twin_batch`):

- ``mask_prob``: each training image is the masked copy with this probability, else the twin;
- ``refill``: with this probability a masked copy's mask region is refilled (flat tone plus noise
  of random strength, or another face's pixels), so the mask's look carries no signal;
- ``eyes_only``: every input, in training and evaluation, is blanked below the mask top;
- ``distill``: a teacher model sees the unmasked twin (same geometry), the student learns its
  soft targets on what it is shown (:func:`distill_loss`);
- ``cam_penalty``: a term on the share of the class-activation map inside the mask region of
  masked inputs (:func:`cam_share`), the differentiable form of the Grad-CAM share that
  ``benchmarks/attention_share.py`` measures. A share has a loophole: a map with no positive
  mass anywhere (an empty Grad-CAM) costs nothing;
- ``mask_evidence``: a term on how much the mask region's evidence moves the prediction
  (:func:`mask_evidence`): the KL divergence between the class probabilities and those with the
  region's contribution to every logit taken out. It is zero only when the region adds the same
  to every class, whatever the sign, so emptying the map does not pay.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fer_models.data import FerTensors, load_dataset

#: Twins that differ by more than this many grey levels (0..255) are inside the mask region.
REGION_DIFF = 3
#: Closing radius (pixels) of the region: dilate then erode, filling holes where the mask matched the skin.
REGION_CLOSE = 2
#: Rows with at least this many region pixels count for the mask top.
TOP_MIN_PIXELS = 3


@dataclass
class Twins:
    """A masked file and its unmasked twin, row for row (all CPU tensors until moved).

    Attributes:
        masked: the masked file (labels, usage, groups as read).
        clean: (N, 1, 48, 48) uint8, the unmasked twins.
        region: (N, 1, 48, 48) uint8 0/1, the mask region of each row (all 0 where nothing was drawn).
        top: (N,) int64, each row's mask top (rows without a region: the median of the others).
    """

    masked: FerTensors
    clean: torch.Tensor
    region: torch.Tensor
    top: torch.Tensor


@dataclass
class TwinBatchSource:
    """What the engine's step needs of the twins, for the training rows, on the training device.

    Attributes:
        clean: (N, 1, 48, 48) uint8 unmasked twins of the engine's (masked) training images.
        region: (N, 1, 48, 48) uint8 0/1 mask regions; top: (N,) int64 mask tops.
        teacher: the distillation teacher (eval mode, frozen) or None.
    """

    clean: torch.Tensor
    region: torch.Tensor
    top: torch.Tensor
    teacher: nn.Module | None = None


def mask_region(masked: torch.Tensor, clean: torch.Tensor, diff: int = REGION_DIFF,
                close: int = REGION_CLOSE) -> torch.Tensor:
    """(N, 1, H, W) uint8 0/1: where ``masked`` and ``clean`` (uint8, same shape) differ, closed by ``close`` px."""
    if masked.shape != clean.shape or masked.dtype != torch.uint8 or clean.dtype != torch.uint8:
        raise ValueError(f"twins must be uint8 of one shape, got {tuple(masked.shape)} {masked.dtype} and "
                         f"{tuple(clean.shape)} {clean.dtype}")
    out = []
    for start in range(0, masked.shape[0], 4096):
        m, c = masked[start:start + 4096].to(torch.int16), clean[start:start + 4096].to(torch.int16)
        r = ((m - c).abs() > diff).float()
        if close > 0:
            k = 2 * close + 1
            r = F.max_pool2d(r, k, 1, close)  # dilate
            r = 1 - F.max_pool2d(1 - r, k, 1, close)  # erode (borders: the image edge does not erode)
        out.append(r.to(torch.uint8))
    return torch.cat(out) if out else masked.new_zeros(masked.shape)


def mask_top(region: torch.Tensor, min_pixels: int = TOP_MIN_PIXELS) -> torch.Tensor:
    """(N,) int64: the first image row with at least ``min_pixels`` region pixels; rows without one get the
    median top of the others (the image height if none has a region)."""
    n, _, h, _ = region.shape
    counts = region.to(torch.int32).sum(dim=(1, 3))  # (N, H)
    has = counts >= min_pixels
    first = torch.where(has.any(1), has.to(torch.int8).argmax(1), torch.full((n,), -1, dtype=torch.int64))
    found = first[first >= 0]
    fallback = int(found.median()) if found.numel() else h
    return torch.where(first >= 0, first, torch.full_like(first, fallback)).to(torch.int64)


def load_twins(masked_path: str | os.PathLike, clean_path: str | os.PathLike,
               masked: FerTensors | None = None) -> Twins:
    """Read a masked file and its unmasked twin, check that they are twins, compute regions and tops.

    Raises:
        ValueError: other row counts, labels or ``Usage`` values (not the same rows), or identical
            files (nothing masked).
    """
    masked = masked if masked is not None else load_dataset(masked_path)
    clean = load_dataset(clean_path)
    where = f"--twin {clean_path} is not the unmasked twin of --data {masked_path}"
    if len(masked) != len(clean):
        raise ValueError(f"{where}: {len(clean)} rows vs {len(masked)}")
    bad = torch.nonzero(masked.labels != clean.labels).flatten()
    if bad.numel():
        k = int(bad[0])
        raise ValueError(f"{where}: row {k} has label {int(clean.labels[k])} there and {int(masked.labels[k])} here "
                         f"({bad.numel()} rows differ)")
    if (masked.usage is None) != (clean.usage is None) or (
            masked.usage is not None and not np.array_equal(masked.usage, clean.usage)):
        raise ValueError(f"{where}: the Usage columns differ")
    region = mask_region(masked.images, clean.images)
    if not bool(region.any()):
        raise ValueError(f"{where}: every row is identical in both (nothing is masked)")
    return Twins(masked=masked, clean=clean.images, region=region, top=mask_top(region))


def blank_below(x: torch.Tensor, top: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """``x`` (N, C, H, W), float or uint8, with every row at or below ``top`` (N,) set to ``value`` (0 = mid
    grey in [-1, 1]; 128 for uint8 faces)."""
    rows = torch.arange(x.shape[-2], device=x.device)[None, None, :, None]
    return x.masked_fill(rows >= top.to(x.device)[:, None, None, None], value)


def refill_region(x: torch.Tensor, region: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Refill the mask region of each image with probability ``prob``: with 2/3 a flat tone U(-1, 1) plus
    N(0, s) noise, s ~ U(0, 0.5); with 1/3 the same pixels of another image of the batch (a random
    pairing). ``x`` float (N, C, H, W) in [-1, 1], ``region`` (N, 1, H, W) 0/1 float. Draws 4 uniforms
    per image, one noise image and one permutation from ``generator`` whatever ``prob`` is."""
    n = x.shape[0]
    u = torch.rand(n, 4, generator=generator, device=generator.device, dtype=x.dtype)[:, :, None, None, None]
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    perm = torch.rand(n, generator=generator, device=generator.device).argsort()
    flat = (2 * u[:, 0] - 1) + 0.5 * u[:, 1] * noise
    fill = torch.where(u[:, 2] < 1 / 3, x.index_select(0, perm), flat.clamp(-1, 1))
    on = (u[:, 3] < prob) & (region > 0.5)
    return torch.where(on, fill, x)


def twin_batch(masked: torch.Tensor, clean: torch.Tensor, region: torch.Tensor, top: torch.Tensor,
               mask_prob: float, refill: float, eyes_only: bool, generator: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(student input, teacher input, region of the student input) for one batch, before augmentation.

    ``masked`` / ``clean`` are float (N, 1, H, W), ``region`` 0/1 float; each image is the masked copy
    with probability ``mask_prob`` (its region kept) or its twin (region zeroed: nothing is drawn there).
    The teacher always gets the twin. Draws N uniforms, then :func:`refill_region`'s draws.
    """
    pick = torch.rand(masked.shape[0], generator=generator, device=generator.device)[:, None, None, None] < mask_prob
    masked = refill_region(masked, region, refill, generator) if refill > 0 else masked
    student = torch.where(pick, masked, clean)
    if eyes_only:
        student = blank_below(student, top)
    return student, clean, region * pick


def cam_share(features: torch.Tensor, head: nn.Conv2d, target: torch.Tensor, region: torch.Tensor
              ) -> torch.Tensor:
    """Mean share of the class-activation map inside ``region`` over the images that have a region.

    ``features``: the last block's output (N, C, h, w); ``head``: the conv to the classes, followed by
    global average pooling (Mini-Xception). For that head, Grad-CAM's channel weights are the head's
    weights summed over the kernel (up to border terms), so the map of class ``target`` (N,) is
    ``relu(sum_k w[target, k] * features_k)``. ``region`` (N, 1, H, W) is pooled to (h, w). Images
    without a region count 0 (the mean is over those with one); a 0-dim tensor, differentiable.
    """
    weights = head.weight.sum(dim=(2, 3)).to(features.dtype)  # (classes, C)
    cam = torch.relu(torch.einsum("nchw,nc->nhw", features, weights.index_select(0, target))).float()
    r = F.adaptive_avg_pool2d(region.float(), features.shape[-2:])[:, 0]
    inside = (cam * r).sum(dim=(1, 2))
    share = inside / (cam.sum(dim=(1, 2)) + 1e-6)
    has = (r.sum(dim=(1, 2)) > 0).float()
    return (share * has).sum() / has.sum().clamp(min=1.0)


def without_region(class_map: torch.Tensor, bias: torch.Tensor | None, region: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logits, and the logits with the mask region's part taken out; float32 (N, K) each, and the
    region pooled to the map (N, 1, h, w).

    ``class_map``: the class conv's output before global average pooling (N, K, h, w), so the logits
    are its spatial mean; ``bias`` (K,) its bias (or None), which is not evidence; ``region``
    (N, 1, H, W) is pooled to (h, w). The region's part of logit k is the mean over positions of
    ``(class_map_k - bias_k) * region``.
    """
    m = class_map.float()
    evidence = m - bias.float()[None, :, None, None] if bias is not None else m
    r = F.adaptive_avg_pool2d(region.float(), m.shape[-2:])
    logits = m.mean(dim=(2, 3))
    return logits, logits - (evidence * r).mean(dim=(2, 3)), r


def region_kl(logits: torch.Tensor, without: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per image (N,): ``p`` the softmax of ``logits``, ``q`` that of ``without``
    (:func:`without_region`'s two outputs)."""
    log_p, log_q = F.log_softmax(logits, 1), F.log_softmax(without, 1)
    return (log_p.exp() * (log_p - log_q)).sum(1)


def mask_evidence(class_map: torch.Tensor, bias: torch.Tensor | None, region: torch.Tensor) -> torch.Tensor:
    """Mean :func:`region_kl` over the images that have a region; a 0-dim tensor, differentiable.
    Arguments as :func:`without_region`; images without a region count 0.
    """
    logits, without, r = without_region(class_map, bias, region)
    kl = region_kl(logits, without)
    has = (r.sum(dim=(1, 2, 3)) > 0).float()
    return (kl * has).sum() / has.sum().clamp(min=1.0)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's soft-target loss: T^2 * KL(softmax(teacher / T) || softmax(student / T)), batch mean."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean",
                    log_target=True) * t * t


__all__ = ["REGION_DIFF", "TwinBatchSource", "Twins", "blank_below", "cam_share", "distill_loss", "load_twins", "mask_evidence", "mask_region",
           "mask_top", "refill_region", "region_kl", "twin_batch", "without_region"]
