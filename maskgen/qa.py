"""Does a rendered mask sit where it should? (nose tip / mouth / chin covered, eyes free)

:func:`qa_check` samples the mask coverage ``alpha`` (bilinear, 0 outside the
image) at landmark points and applies the fit's rule (defined with the fit, in
:data:`maskgen.fits.FIT_RULES`):

* ``"correct"``:      nose tip and mouth covered, eyes visible;
* ``"nose_exposed"``: nose tip visible, mouth covered, eyes visible;
* ``"chin_only"``:    mouth visible, chin covered, eyes visible.

A point counts as covered when alpha there is at least :data:`COVERED_ALPHA`.
Only points inside the image are judged: FER2013 crops often cut the chin or an open
mouth at the border, and a mask cannot be seen to cover what is outside the picture. A
group with no point inside the image fails its "covered" test (it cannot be verified);
``out_of_frame`` counts the skipped points.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from maskgen.fits import QAFlags, get_fit
from maskgen.points import CHIN_JAW, LANDMARK_GROUPS, LOWER_LIP_BOTTOM, NOSE_TIP, check_points

__all__ = ["QAResult", "qa_check", "sample_alpha", "COVERED_ALPHA"]

#: alpha at or above this value means "covered by the mask"
COVERED_ALPHA = 0.5
#: a group counts as covered when at least this fraction of its sample points is covered
MOUTH_COVERED_FRACTION = 0.9
CHIN_COVERED_FRACTION = 0.6
#: the eyes count as visible when at most this fraction of the 12 eye points is covered
EYES_MAX_COVERED_FRACTION = 0.0
#: the jaw points around the chin are sampled slightly inside the face (moved this fraction
#: of the way towards the lower-lip centre) because the jaw line is the mask's edge
CHIN_INSET = 0.2


@dataclass(frozen=True)
class QAResult:
    """Outcome of :func:`qa_check`; ``passed`` applies the rules of the requested fit."""

    passed: bool
    nose_covered: bool
    mouth_covered: bool
    eyes_visible: bool
    chin_covered: bool
    out_of_frame: int = 0

    def to_dict(self) -> dict[str, bool | int]:
        """JSON-able dict of the flags and the out-of-frame count (keys prefixed ``qa_``)."""
        return {f"qa_{k}": (v if isinstance(v, int) and not isinstance(v, bool) else bool(v))
                for k, v in asdict(self).items()}


def _in_frame(xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(n,) bool: the (x, y) point lies inside an image of ``shape`` (pixel centres at integers)."""
    h, w = shape
    return (xy[:, 0] >= -0.5) & (xy[:, 0] <= w - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] <= h - 0.5)


def _covered_fraction(covered: np.ndarray, inside: np.ndarray) -> float:
    """Fraction of the in-frame points that are covered; NaN when none is in frame."""
    return float(covered[inside].mean()) if inside.any() else float("nan")


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
    the mask coverage; fit: one of :data:`maskgen.fits.FITS` (its rule decides ``passed``).
    """
    rule = get_fit(fit)
    pts = check_points(points)
    a = np.asarray(alpha)
    if a.ndim != 2:
        raise ValueError(f"alpha must be (H, W), got shape {a.shape}")
    covered = sample_alpha(a, pts) >= COVERED_ALPHA
    inside = _in_frame(pts, a.shape)
    chin_xy = pts[CHIN_JAW] + CHIN_INSET * (pts[LOWER_LIP_BOTTOM] - pts[CHIN_JAW])
    chin_inside = _in_frame(chin_xy, a.shape)
    chin_cov = sample_alpha(a, chin_xy) >= COVERED_ALPHA
    mouth, eyes = LANDMARK_GROUPS["mouth"], LANDMARK_GROUPS["eyes"]

    # NaN (no point in frame) compares False: an unverifiable "covered" test fails
    nose_covered = bool(inside[NOSE_TIP] and covered[NOSE_TIP])
    mouth_covered = bool(_covered_fraction(covered[mouth], inside[mouth]) >= MOUTH_COVERED_FRACTION)
    eyes_visible = not _covered_fraction(covered[eyes], inside[eyes]) > EYES_MAX_COVERED_FRACTION
    chin_covered = bool(_covered_fraction(chin_cov, chin_inside) >= CHIN_COVERED_FRACTION)
    sampled = np.concatenate(([NOSE_TIP], mouth, eyes))
    out_of_frame = int((~inside[sampled]).sum() + (~chin_inside).sum())

    passed = bool(rule.passes(QAFlags(nose_covered, mouth_covered, eyes_visible, chin_covered)))
    return QAResult(passed=passed, nose_covered=nose_covered, mouth_covered=mouth_covered,
                    eyes_visible=eyes_visible, chin_covered=chin_covered, out_of_frame=out_of_frame)
