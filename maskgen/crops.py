"""Faces in photos cut out as FER2013 would have them: 48x48 gray, aligned to FER2013's mean face.

FER2013's faces were registered so a face sits in the same place in every 48x48 crop. The
crop prior (:mod:`maskgen.landmarks.prior`, fitted on FER2013 Training rows) knows where: its
box (fractions of the crop) and mean shape (68 points in box units) give the mean landmarks of
a FER2013 face in crop pixels, :func:`fer_template`. :func:`fer_crop` maps a face's 68 points
onto that template with the least-squares similarity transform (rotation, scale, shift) and
resamples the photo there, so a photo's face looks to a model like a FER2013 row.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from maskgen.dataset import SIDE
from maskgen.imageops import to_gray
from maskgen.landmarks.base import Landmarks
from maskgen.landmarks.prior import load_prior
from maskgen.points import N_POINTS

__all__ = ["FaceCrop", "face_crops", "fer_crop", "fer_template", "similarity_to"]


@lru_cache(maxsize=4)
def fer_template(size: int = SIDE) -> np.ndarray:
    """(68, 2) float64 mean landmarks (x, y) of a FER2013 face in a ``size`` x ``size`` crop."""
    prior = load_prior()
    left, top, right, bottom = prior.box
    shape = prior.mean_shape
    x = size * (left + shape[:, 0] * (right - left))
    y = size * (top + shape[:, 1] * (bottom - top))
    return np.stack([x, y], axis=1)


def similarity_to(points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(2, 3) float64 similarity transform (Umeyama, no reflection) mapping ``points`` onto ``target``."""
    p = np.asarray(points, np.float64)
    t = np.asarray(target, np.float64)
    if p.shape != t.shape or p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 2:
        raise ValueError(f"points and target must be matching (k, 2) arrays, k >= 2; got {p.shape}, {t.shape}")
    pm, tm = p.mean(0), t.mean(0)
    pc, tc = p - pm, t - tm
    var = (pc ** 2).sum()
    if var <= 0:
        raise ValueError("points are all at one place")
    cov = tc.T @ pc / p.shape[0]
    u, s, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag([1.0, d]) @ vt
    scale = (s[0] + d * s[1]) / (var / p.shape[0])
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = tm - m[:, :2] @ pm
    return m


def fer_crop(image: np.ndarray, points: np.ndarray, size: int = SIDE) -> np.ndarray:
    """(size, size) uint8 gray face: ``image`` resampled so ``points`` land on :func:`fer_template`.

    Args:
        image: (H, W) gray or (H, W, 3) RGB uint8 photo.
        points: (68, 2) landmarks (x, y) of one face in ``image``.

    Downscaling is anti-aliased: a photo much larger than the crop is first shrunk with area
    interpolation to about twice the crop's scale, then warped bilinearly.
    """
    pts = np.asarray(points, np.float64)
    if pts.shape != (N_POINTS, 2):
        raise ValueError(f"points must be ({N_POINTS}, 2), got {pts.shape}")
    gray = to_gray(image)
    m = similarity_to(pts, fer_template(size))
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    if scale < 0.5:  # shrink first (area average), then warp: no aliasing from a large photo
        pre = 2.0 * scale
        h, w = gray.shape
        small = cv2.resize(gray, (max(1, round(w * pre)), max(1, round(h * pre))), interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / w, small.shape[0] / h
        m = m @ np.array([[1 / sx, 0, 0], [0, 1 / sy, 0], [0, 0, 1]])
        gray = small
    return cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class FaceCrop:
    """One face of a photo: its FER2013-style crop, box (left, top, right, bottom) and landmarks."""

    crop: np.ndarray
    box: tuple[float, float, float, float]
    points: np.ndarray
    confidence: float


def face_crops(image: np.ndarray, faces: list[Landmarks] | None = None, size: int = SIDE) -> list[FaceCrop]:
    """Every face maskgen's photo detector finds in ``image`` (or the given ``faces``), cropped as FER2013."""
    if faces is None:
        from maskgen.landmarks import detect_faces

        faces = detect_faces(image)
    return [FaceCrop(fer_crop(image, f.points, size), tuple(float(v) for v in f.box), f.points, f.confidence)
            for f in faces]
