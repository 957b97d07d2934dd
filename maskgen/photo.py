"""Mask faces in ordinary photos and folders of photos (``maskgen mask-image``).

Every face the detector finds (:func:`maskgen.landmarks.detect_faces`) gets its own mask;
photos where no face is found are reported, never silently skipped.  Face ``k`` of a
photo uses ``numpy.random.default_rng([seed, key, k])`` with ``key`` = CRC32 of the file
name, so results do not depend on the order in which files are processed.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import cv2
import numpy as np

from maskgen.dataset import atomic_write
from maskgen.masks import MaskParams, sample_params
from maskgen.qa import QAResult, qa_check
from maskgen.render import apply_mask

__all__ = ["IMAGE_SUFFIXES", "FaceResult", "PhotoResult", "PhotoReport", "mask_photo", "mask_files",
           "read_image", "write_image", "expand_paths"]

#: file types read from folders
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class FaceResult:
    """One masked face: its landmarks ((68, 2) float32 (x, y)), box, parameters and QA."""

    points: np.ndarray
    box: tuple[float, float, float, float]
    params: MaskParams
    qa: QAResult

    def to_dict(self) -> dict[str, Any]:
        return {"box": [round(v, 1) for v in self.box], **self.params.to_dict(), **self.qa.to_dict()}


@dataclass
class PhotoResult:
    """A masked photo: image (same shape/dtype as the input), alpha (H, W) float32 (union of masks), faces."""

    image: np.ndarray
    alpha: np.ndarray
    faces: list[FaceResult]


@dataclass
class PhotoReport:
    """What :func:`mask_files` did: outputs written, files with no face, unreadable files (path, reason)."""

    written: list[Path] = field(default_factory=list)
    faces: dict[str, int] = field(default_factory=dict)
    no_face: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def mask_photo(image: np.ndarray, *, seed: int = 0, key: int = 0, masks: Sequence[str] | None = None,
               fit_probs: Mapping[str, float] | None = None, color: bool = True,
               detector: Any = None) -> PhotoResult:
    """Mask every detected face in ``image`` ((H, W) or (H, W, 3) uint8 RGB).

    ``color``: colour masks on colour photos (gray photos always get gray tones).  ``detector``:
    a :class:`maskgen.landmarks.LandmarkDetector` (default: the process-wide one).
    """
    if detector is None:
        from maskgen.landmarks import get_detector
        detector = get_detector()
    img = np.asarray(image)
    if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f"image must be (H, W) or (H, W, 3) uint8, got {img.shape} {img.dtype}")
    out = img.copy()
    alpha = np.zeros(img.shape[:2], np.float32)
    faces: list[FaceResult] = []
    for k, marks in enumerate(detector.detect_faces(img)):
        rng = np.random.default_rng([int(seed), int(key), k])
        params = sample_params(rng, marks.points, masks=masks, fit_probs=fit_probs, color=color and img.ndim == 3)
        out, a = apply_mask(out, marks.points, params)
        alpha = np.maximum(alpha, a)
        faces.append(FaceResult(points=marks.points, box=tuple(float(v) for v in marks.box), params=params,
                                qa=qa_check(marks.points, a, params.fit)))
    return PhotoResult(image=out, alpha=alpha, faces=faces)


def read_image(path: str | Path) -> np.ndarray:
    """Read a photo as (H, W) uint8 (gray files) or (H, W, 3) uint8 RGB; ValueError if unreadable."""
    im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if im is None:
        raise ValueError(f"cannot read image {path}")
    if im.dtype == np.uint16:
        im = (im // 257).astype(np.uint8)
    if im.dtype != np.uint8:
        raise ValueError(f"{path}: unsupported pixel type {im.dtype}")
    if im.ndim == 2:
        return im
    if im.shape[2] == 4:
        return cv2.cvtColor(im, cv2.COLOR_BGRA2RGB)
    if im.shape[2] == 1:
        return im[..., 0]
    return cv2.cvtColor(im, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write (H, W) or (H, W, 3) RGB uint8 atomically; format from the suffix."""
    path = Path(path)
    bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(path.suffix or ".png", bgr)
    if not ok:
        raise ValueError(f"cannot encode {path}")
    with atomic_write(path) as tmp:
        tmp.write_bytes(data.tobytes())
    return path


def expand_paths(paths: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """Files and folders -> sorted (file, name relative to its folder or the bare name) pairs."""
    out: list[tuple[Path, Path]] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            out.extend((f, f.relative_to(p)) for f in files)
        elif p.is_file():
            out.append((p, Path(p.name)))
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return out


def mask_files(paths: Iterable[str | Path], outdir: str | Path, *, seed: int = 0,
               masks: Sequence[str] | None = None, fit_probs: Mapping[str, float] | None = None,
               color: bool = True, detector: Any = None) -> PhotoReport:
    """Mask every face in the given photos / folders; write results under ``outdir`` (same relative names).

    Photos without a detected face are listed in ``report.no_face`` and not written; unreadable files
    go to ``report.failed``.
    """
    outdir = Path(outdir)
    report = PhotoReport()
    for src, rel in expand_paths(paths):
        try:
            image = read_image(src)
        except ValueError as exc:
            report.failed.append((src, str(exc)))
            continue
        result = mask_photo(image, seed=seed, key=zlib.crc32(str(rel).encode("utf-8")), masks=masks,
                            fit_probs=fit_probs, color=color, detector=detector)
        report.faces[str(src)] = len(result.faces)
        if not result.faces:
            report.no_face.append(src)
            continue
        report.written.append(write_image(outdir / rel, result.image))
    return report
