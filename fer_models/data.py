"""FER2013-format CSV -> uint8 tensors in memory, train/val/test splits, batched augmentation.

The CSV is read once (``maskgen.dataset.read_fer_csv``, plain or gzip) into a
(N, 1, 48, 48) uint8 tensor; batches are indexed out of it, converted to float
and augmented on the whole batch at once (one ``affine_grid`` + ``grid_sample``
call), so there is no per-image Python work in the training loop.

Splits (``SPLITS``):

- ``usage``: FER2013's own ``Usage`` column: train on ``Training``, select on
  ``PublicTest``, report on ``PrivateTest`` (``USAGE_SPLIT``).
- ``paper``: a seeded random 80/10/10 split of the rows.
- ``grouped``: a seeded 80/10/10 split of the *groups* named by the ``source``
  column (MFER2013), so that no face is in two subsets.

The splits are computed by :mod:`maskgen.splits` (the same code the MFER2013 leakage
audit uses).

Each split is a dict ``{"train", "val", "test"} -> int64 row indices``
(increasing); ``subset="all"`` means every row.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from maskgen.dataset import EMOTIONS, SIDE, read_fer_csv
from maskgen.splits import SPLIT_KINDS

#: Names accepted by :func:`split_indices` (defined once, in maskgen.splits).
SPLITS = SPLIT_KINDS
#: Subsets of a split; "all" is every row of the file.
SUBSETS = ("train", "val", "test", "all")
#: ``usage`` split: subset -> FER2013 ``Usage`` value.
USAGE_SPLIT: Mapping[str, str] = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
#: Column naming the source image of each row (MFER2013), used by the ``grouped`` split.
GROUP_COLUMN = "source"
#: Pixel scaling: x / 255 * SCALE + OFFSET maps 0..255 to [-1, 1] (as the Keras reference).
PIXEL_SCALE = 2.0 / 255.0
PIXEL_OFFSET = -1.0


@dataclass
class FerTensors:
    """A FER2013-format file in memory.

    Attributes:
        images: (N, 1, 48, 48) uint8 tensor.
        labels: (N,) int64 tensor, 0..6.
        usage: (N,) object array of str or None (no ``Usage`` column).
        groups: (N,) object array of str from the ``source`` column, or None.
        path: the file read.
    """

    images: torch.Tensor
    labels: torch.Tensor
    usage: np.ndarray | None
    groups: np.ndarray | None
    path: Path

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (n, 1, 48, 48) uint8, labels (n,) int64) for int64 row indices ``rows``."""
        idx = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        return self.images[idx], self.labels[idx]


#: class-folder names accepted for each FER2013 label (FER+ / common image-folder spellings)
CLASS_ALIASES: Mapping[str, int] = {
    **{name: i for i, name in enumerate(EMOTIONS)},
    "anger": 0, "disgusted": 1, "fearful": 2, "happiness": 3, "sadness": 4, "surprised": 5,
}
#: split-folder names -> FER2013 ``Usage``
SPLIT_ALIASES: Mapping[str, str] = {
    "train": "Training", "training": "Training", "val": "PublicTest", "valid": "PublicTest",
    "validation": "PublicTest", "publictest": "PublicTest", "test": "PrivateTest", "privatetest": "PrivateTest",
}


def load_image_folder(path: str | os.PathLike) -> FerTensors:
    """Read an image-folder dataset (``split/class/*.png|jpg``, as ``maskgen build-smfer DIR`` writes it).

    Pictures are converted to gray (luma) and resized to 48x48 (area interpolation) where needed;
    class folders name the FER2013 label (:data:`CLASS_ALIASES`, case-insensitive), split folders
    the ``Usage`` (:data:`SPLIT_ALIASES`; none: no ``Usage``). Rows are in sorted path order.

    Raises:
        ValueError: no pictures, an unknown class or split folder, or an unreadable picture.
    """
    import cv2

    from maskgen.folders import MFER_INDEX_NAME, scan_folder
    from maskgen.imageops import to_gray
    from maskgen.io import read_image

    root = Path(path)
    items = scan_folder(root)
    if not items:
        raise ValueError(f"{root}: no pictures")
    images = np.empty((len(items), SIDE, SIDE), np.uint8)
    labels = np.empty(len(items), np.int64)
    usage = []
    for k, item in enumerate(items):
        label = CLASS_ALIASES.get(item.label.lower())
        if label is None:
            raise ValueError(f"{root / item.path}: class folder {item.label!r} is not an expression; "
                             f"expected one of {', '.join(EMOTIONS)}")
        split = SPLIT_ALIASES.get(item.split.lower()) if item.split else None
        if item.split and split is None:
            raise ValueError(f"{root / item.path}: split folder {item.split!r} is not one of "
                             f"{', '.join(sorted(set(SPLIT_ALIASES)))}")
        gray = to_gray(read_image(root / item.path))
        if gray.shape != (SIDE, SIDE):
            gray = cv2.resize(gray, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
        images[k], labels[k] = gray, label
        usage.append(split)
    has_usage = any(u is not None for u in usage)
    groups = None
    index_path = root / MFER_INDEX_NAME
    if index_path.is_file():  # an MFER-style folder: a picture and its masked twin share a source
        import csv

        with open(index_path, newline="", encoding="utf-8") as fh:
            source = {r["path"]: r["source"] for r in csv.DictReader(fh)}
        names = [source.get(item.path, item.path) for item in items]
        ids = {name: str(k) for k, name in enumerate(sorted(set(names)))}  # splits take integer group ids
        groups = np.array([ids[name] for name in names], dtype=object)
    return FerTensors(images=torch.from_numpy(images).unsqueeze(1), labels=torch.from_numpy(labels),
                      usage=np.array(usage, dtype=object) if has_usage else None, groups=groups, path=root)


def folder_inputs(role: str, path: str | os.PathLike | None) -> list[tuple[str, str]]:
    """(role, picture) of every picture an image folder ``path`` is read from, for the output checks (a picture
    may be a symlink to a file outside the folder: an output must not replace it); [] for a file or None."""
    from maskgen.folders import scan_folder

    if path is None or not Path(path).is_dir():
        return []
    return [(f"{role} picture", str(Path(path) / item.path)) for item in scan_folder(path)]


def load_dataset(path: str | os.PathLike) -> FerTensors:
    """A FER2013-format CSV (:func:`load_fer_tensors`) or an image folder (:func:`load_image_folder`)."""
    return load_image_folder(path) if Path(path).is_dir() else load_fer_tensors(path)


def load_fer_tensors(path: str | os.PathLike) -> FerTensors:
    """Read and validate a FER2013-format CSV (``.csv`` or ``.csv.gz``) into tensors."""
    table = read_fer_csv(path)
    images = torch.from_numpy(np.ascontiguousarray(table.images)).unsqueeze(1)
    labels = torch.from_numpy(table.emotion.astype(np.int64))
    groups = np.array(table.extra[GROUP_COLUMN], dtype=object) if GROUP_COLUMN in table.extra else None
    return FerTensors(images=images, labels=labels, usage=table.usage, groups=groups, path=Path(path))


def split_indices(data: FerTensors, split: str = "usage", seed: int = 0) -> dict[str, np.ndarray]:
    """Row indices of each subset: ``{"train", "val", "test", "all"} -> (n,) int64``, increasing.

    The split itself is :func:`maskgen.splits.make_split` (shared with the MFER2013 leakage
    audit, so training and audit see the same rows); ``seed`` only affects the random
    ``paper`` and ``grouped`` splits. Without a ``source`` column, ``grouped`` treats each
    row as its own group.

    Raises:
        ValueError: unknown split, no ``Usage`` column for ``usage``, or an empty subset.
    """
    from maskgen.splits import make_split

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    n = len(data)
    columns = {"rows": np.arange(n), "usage": data.usage, GROUP_COLUMN: data.groups}
    try:
        out = make_split(split, columns, seed)
    except ValueError as exc:
        raise ValueError(f"{data.path}: {exc}") from None
    empty = [name for name, rows in out.items() if rows.size == 0]
    if empty:
        what = [f"{name} ({USAGE_SPLIT[name]})" for name in empty] if split == "usage" else empty
        raise ValueError(f"{data.path}: split {split!r} has no rows for {', '.join(what)}")
    out["all"] = np.arange(n, dtype=np.int64)
    return out


# ---------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentConfig:
    """Geometric augmentation: random rotation, translation, zoom and horizontal flip.

    No defaults here: the values come from the recipe (``TrainConfig.augment_config()``,
    :mod:`fer_models.config`).

    Attributes:
        rotation_deg: rotation drawn uniformly from [-rotation_deg, +rotation_deg] degrees.
        translate: shift in x and y, each uniform in [-translate, +translate] of the image size.
        scale: zoom factor uniform in [1 - scale, 1 + scale].
        hflip: flip left-right with probability 1/2.
    Gaps are filled by repeating the border pixels (``grid_sample(padding_mode="border")``).
    """

    rotation_deg: float
    translate: float
    scale: float
    hflip: bool


def sample_affine(n: int, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) float32 ``affine_grid`` matrices: output (x, y) -> input (x, y), in [-1, 1] units.

    The forward map is input -> flip -> scale * rotate -> + shift; the matrix is its inverse,
    as ``affine_grid`` expects. Draws 5 uniforms per image from ``generator``.
    """
    u = torch.rand(n, 5, generator=generator, dtype=torch.float64, device=generator.device)
    angle = torch.deg2rad((2 * u[:, 0] - 1) * config.rotation_deg)
    shift = (2 * u[:, 1:3] - 1) * config.translate * 2.0  # fraction of size -> [-1, 1] units
    zoom = 1.0 + (2 * u[:, 3] - 1) * config.scale
    flip = torch.where((u[:, 4] < 0.5) & config.hflip, -1.0, 1.0).to(u)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # inverse of zoom * R(angle): R(-angle) / zoom
    inv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2) / zoom[:, None, None]
    inv[:, 0, :] *= flip[:, None]  # flipping x of the input point is the last inverse step
    offset = -(inv @ shift.unsqueeze(-1))
    return torch.cat([inv, offset], dim=2).to(torch.float32)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) 0..255 -> float32 in [-1, 1], same shape."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return images.to(torch.float32).mul_(PIXEL_SCALE).add_(PIXEL_OFFSET)


def augment_batch(
    images: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Randomly rotate/shift/zoom/flip a whole batch at once (bilinear, border pixels repeated).

    Args:
        images: (N, C, H, W) float tensor.
        generator: the only source of randomness (same state -> same output).
    Returns:
        (N, C, H, W) tensor of the same dtype.
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"expected a float (N, C, H, W) batch, got {tuple(images.shape)} {images.dtype}")
    theta = sample_affine(images.shape[0], config, generator).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_erase(images: torch.Tensor, prob: float, generator: torch.Generator,
                 area: tuple[float, float] = (0.02, 0.25), log_ratio: float = 1.2) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017), a whole batch at once.

    With probability ``prob`` per image, a rectangle of ``area`` (fraction of the image) and
    aspect ratio ``exp(U(-log_ratio, log_ratio))`` at a uniform position is filled with
    N(0, 1) noise (the pixel scale is [-1, 1]). Draws 5 uniforms per image and one noise
    image per image from ``generator``, whether or not ``prob`` erases it.

    Args:
        images: (N, C, H, W) float tensor (not changed).
    Returns:
        a new tensor of the same shape and dtype.
    """
    n, _, h, w = images.shape
    u = torch.rand(n, 5, generator=generator, device=generator.device)
    frac = area[0] + (area[1] - area[0]) * u[:, 0]
    ratio = torch.exp((2 * u[:, 1] - 1) * log_ratio)
    eh = torch.sqrt(frac * h * w * ratio).clamp(1, h)
    ew = torch.sqrt(frac * h * w / ratio).clamp(1, w)
    top = (h - eh) * u[:, 2]
    left = (w - ew) * u[:, 3]
    on = (u[:, 4] < prob)[:, None, None, None]
    rows = torch.arange(h, device=images.device, dtype=u.dtype)[None, None, :, None]
    cols = torch.arange(w, device=images.device, dtype=u.dtype)[None, None, None, :]
    inside = ((rows >= top[:, None, None, None]) & (rows < (top + eh)[:, None, None, None])
              & (cols >= left[:, None, None, None]) & (cols < (left + ew)[:, None, None, None]))
    noise = torch.randn(images.shape, generator=generator, device=generator.device, dtype=images.dtype)
    return torch.where(on & inside, noise, images)


def class_weights(labels: torch.Tensor, num_classes: int = len(EMOTIONS)) -> torch.Tensor:
    """(num_classes,) float32 'balanced' weights n / (k * count_c); 0 for absent classes."""
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    present = counts > 0
    weights = torch.zeros(num_classes, dtype=torch.float64)
    weights[present] = labels.numel() / (int(present.sum()) * counts[present])
    return weights.to(torch.float32)


__all__ = [
    "SIDE", "SPLITS", "SUBSETS", "USAGE_SPLIT", "AugmentConfig", "FerTensors", "augment_batch",
    "class_weights", "folder_inputs", "load_dataset", "load_fer_tensors", "load_image_folder", "random_erase", "sample_affine", "split_indices", "to_float",
]
