"""Does a rendered mask sit where it should? (nose tip / mouth / chin covered, eyes free)

:func:`qa_check` samples the mask coverage ``alpha`` (bilinear, 0 outside the
image) at landmark points and applies per-fit rules:

* ``"correct"``:      nose tip and mouth covered, eyes visible;
* ``"nose_exposed"``: nose tip visible, mouth covered, eyes visible;
* ``"chin_only"``:    mouth visible, chin covered, eyes visible.

A point counts as covered when alpha there is at least :data:`COVERED_ALPHA`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from maskgen.landmarks import CHIN_POINT, LANDMARK_GROUPS, N_POINTS, NOSE_TIP_POINT

__all__ = ["FITS", "QAResult", "qa_check", "sample_alpha", "COVERED_ALPHA"]

FITS = ("correct", "nose_exposed", "chin_only")

#: alpha at or above this value means "covered by the mask"
COVERED_ALPHA = 0.5
#: a group counts as covered when at least this fraction of its sample points is covered
MOUTH_COVERED_FRACTION = 0.9
CHIN_COVERED_FRACTION = 0.6
#: the eyes count as visible when at most this fraction of the 12 eye points is covered
EYES_MAX_COVERED_FRACTION = 0.0
#: jaw points around the chin, sampled slightly inside the face (moved this fraction
#: of the way towards the lower-lip centre) because the jaw line is the mask's edge
CHIN_JAW_POINTS = np.array([6, 7, CHIN_POINT, 9, 10])
LOWER_LIP_CENTER = 57
CHIN_INSET = 0.2


@dataclass(frozen=True)
class QAResult:
    """Outcome of :func:`qa_check`; ``passed`` applies the rules of the requested fit."""

    passed: bool
    nose_covered: bool
    mouth_covered: bool
    eyes_visible: bool
    chin_covered: bool

    def to_dict(self) -> dict[str, bool]:
        """JSON-able dict of the five flags (keys prefixed ``qa_`` for sidecars)."""
        return {f"qa_{k}": bool(v) for k, v in asdict(self).items()}


def sample_alpha(alpha: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``alpha`` (H, W) at (n, 2) (x, y) points; 0 outside the image."""
    h, w = alpha.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.float64)
    padded[1:-1, 1:-1] = alpha
    x = np.clip(np.asarray(xy[:, 0], dtype=np.float64) + 1, 0, w + 1)
    y = np.clip(np.asarray(xy[:, 1], dtype=np.float64) + 1, 0, h + 1)
    x0 = np.minimum(np.floor(x).astype(int), w)
    y0 = np.minimum(np.floor(y).astype(int), h)
    fx, fy = x - x0, y - y0
    top = padded[y0, x0] * (1 - fx) + padded[y0, x0 + 1] * fx
    bottom = padded[y0 + 1, x0] * (1 - fx) + padded[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def qa_check(points: np.ndarray, alpha: np.ndarray, fit: str = "correct") -> QAResult:
    """Check a rendered mask against the landmarks.

    points: (68, 2) float (x, y) pixel coordinates; alpha: (H, W) float in [0, 1],
    the mask coverage; fit: one of :data:`FITS`.
    """
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}; valid: {FITS}")
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (N_POINTS, 2):
        raise ValueError(f"points must be ({N_POINTS}, 2) (x, y), got {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("points contain NaN or inf")
    a = np.asarray(alpha)
    if a.ndim != 2:
        raise ValueError(f"alpha must be (H, W), got shape {a.shape}")
    covered = sample_alpha(a, pts) >= COVERED_ALPHA

    nose_covered = bool(covered[NOSE_TIP_POINT])
    mouth_covered = bool(covered[LANDMARK_GROUPS["mouth"]].mean() >= MOUTH_COVERED_FRACTION)
    eyes_visible = bool(covered[LANDMARK_GROUPS["eyes"]].mean() <= EYES_MAX_COVERED_FRACTION)
    chin_xy = pts[CHIN_JAW_POINTS] + CHIN_INSET * (pts[LOWER_LIP_CENTER] - pts[CHIN_JAW_POINTS])
    chin_covered = bool((sample_alpha(a, chin_xy) >= COVERED_ALPHA).mean() >= CHIN_COVERED_FRACTION)

    if fit == "correct":
        passed = nose_covered and mouth_covered and eyes_visible
    elif fit == "nose_exposed":
        passed = (not nose_covered) and mouth_covered and eyes_visible
    else:  # chin_only
        passed = (not mouth_covered) and chin_covered and eyes_visible
    return QAResult(passed=passed, nose_covered=nose_covered, mouth_covered=mouth_covered,
                    eyes_visible=eyes_visible, chin_covered=chin_covered)
