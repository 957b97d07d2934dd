"""The learned crop prior: where aligned faces sit, their mean shape, and the box regressor.

Fitted by ``python benchmarks/landmarks.py DATA --fit-prior`` on FER2013 Training rows and
shipped as ``maskgen/landmark_prior.json``. :func:`crop_features` / :func:`frame_features`
are the regressor's appearance features.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskgen.points import N_POINTS

__all__ = ["CASCADE_FRAME", "PRIOR_PATH", "LandmarkPrior", "crop_features", "frame_features", "load_prior"]

#: the box-regressor stages after the first look at a frame this many times the
#: current box size, centred on it, resized to FEATURE_SIZE
CASCADE_FRAME = 1.5
#: the learned prior (box, mean shape, thresholds); produced by
#: ``python benchmarks/landmarks.py DATA --fit-prior`` (see docs/results.md)
PRIOR_PATH = Path(__file__).resolve().parent.parent / "landmark_prior.json"

#: crops are resized to this size before computing the box-regressor features
FEATURE_SIZE = 48
#: gradient-histogram cell size (pixels) and number of orientation bins
FEATURE_CELL = 6
FEATURE_BINS = 9
#: side of the downsampled intensity image appended to the histograms
FEATURE_THUMB = 12
#: damping constant of the per-cell histogram normalisation
FEATURE_NORM_EPS = 10.0


def crop_features(gray: np.ndarray) -> np.ndarray:
    """Appearance features of a crop for the prior-box regressor, (d,) float32.

    A HOG-like descriptor: per FEATURE_CELL x FEATURE_CELL cell a histogram of
    gradient orientations (FEATURE_BINS bins over 0-180 degrees, magnitude
    weighted, linear bin interpolation, normalised per cell), followed by a
    FEATURE_THUMB x FEATURE_THUMB thumbnail scaled to [0, 1].
    """
    g = np.asarray(gray, dtype=np.float32)
    if g.shape != (FEATURE_SIZE, FEATURE_SIZE):
        g = cv2.resize(g, (FEATURE_SIZE, FEATURE_SIZE), interpolation=cv2.INTER_AREA)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=1)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=1)
    mag = np.sqrt(gx * gx + gy * gy)
    ang = (np.arctan2(gy, gx) % np.pi) * (FEATURE_BINS / np.pi)
    lo = np.floor(ang)
    w_hi = ang - lo
    b_lo = lo.astype(np.intp) % FEATURE_BINS
    b_hi = (b_lo + 1) % FEATURE_BINS
    n = FEATURE_SIZE // FEATURE_CELL
    cell = (np.arange(FEATURE_SIZE) // FEATURE_CELL)
    cell_idx = (cell[:, None] * n + cell[None, :]) * FEATURE_BINS
    hist = np.bincount((cell_idx + b_lo).ravel(), weights=(mag * (1 - w_hi)).ravel(), minlength=n * n * FEATURE_BINS)
    hist += np.bincount((cell_idx + b_hi).ravel(), weights=(mag * w_hi).ravel(), minlength=n * n * FEATURE_BINS)
    hist = hist.reshape(n * n, FEATURE_BINS)
    hist /= np.linalg.norm(hist, axis=1, keepdims=True) + FEATURE_NORM_EPS
    thumb = cv2.resize(g, (FEATURE_THUMB, FEATURE_THUMB), interpolation=cv2.INTER_AREA) / 255.0
    return np.concatenate([hist.ravel(), thumb.ravel()]).astype(np.float32)


def frame_features(gray: np.ndarray, center_size: tuple[float, float, float]) -> np.ndarray:
    """:func:`crop_features` of the square frame CASCADE_FRAME x size around a box centre.

    center_size is (cx, cy, size) in pixels of ``gray`` ((H, W) uint8); pixels outside
    the crop are filled by replicating its border.
    """
    cx, cy, size = center_size
    side = CASCADE_FRAME * size
    f = FEATURE_SIZE / side
    affine = np.array([[f, 0.0, (side / 2 - cx + 0.5) * f - 0.5],
                       [0.0, f, (side / 2 - cy + 0.5) * f - 0.5]], dtype=np.float32)
    frame = cv2.warpAffine(gray, affine, (FEATURE_SIZE, FEATURE_SIZE), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    return crop_features(frame)


@dataclass(frozen=True)
class LandmarkPrior:
    """What the crop fallback and the plausibility checks know about aligned faces.

    box:        (left, top, right, bottom) of the typical face box as fractions of
                the crop's width / height
    mean_shape: (68, 2) mean landmarks in box-normalised coordinates
    max_score:  Procrustes distance above which a shape is implausible
    max_center_offset: largest allowed distance of a crop's box centre from the
                prior box centre, as a fraction of the prior box size
    size_range: allowed (min, max) box size as a fraction of the prior box size
    """

    box: tuple[float, float, float, float]
    mean_shape: np.ndarray
    max_score: float
    max_center_offset: float
    size_range: tuple[float, float]
    #: box regressor: list of stages (coef (d, 3), intercept (3,)); stage 0 maps the
    #: features of the whole crop to (cx / W, cy / H, log(size / W)); stage k >= 1 maps
    #: the features of the CASCADE_FRAME frame around the current box to a correction
    #: (dcx / size, dcy / size, dlog size). Empty: use the fixed prior box.
    cascade: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "box": [round(v, 6) for v in self.box],
            "max_score": round(self.max_score, 6),
            "max_center_offset": round(self.max_center_offset, 6),
            "size_range": [round(v, 6) for v in self.size_range],
            "mean_shape": np.round(self.mean_shape, 5).tolist(),
            "cascade": [
                {"coef": [[float(f"{v:.5g}") for v in row] for row in coef.T], "intercept": [float(v) for v in icpt]}
                for coef, icpt in self.cascade
            ],
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LandmarkPrior:
        shape = np.asarray(data["mean_shape"], dtype=np.float64)
        if shape.shape != (N_POINTS, 2):
            raise ValueError(f"prior mean_shape must be ({N_POINTS}, 2), got {shape.shape}")
        box = tuple(float(v) for v in data["box"])
        if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
            raise ValueError(f"prior box must be (left, top, right, bottom) with left<right, top<bottom: {box}")
        return cls(
            box=box,  # type: ignore[arg-type]
            mean_shape=shape,
            max_score=float(data["max_score"]),
            max_center_offset=float(data["max_center_offset"]),
            size_range=(float(data["size_range"][0]), float(data["size_range"][1])),
            cascade=tuple(
                (np.asarray(st["coef"], dtype=np.float32).T.copy(), np.asarray(st["intercept"], dtype=np.float32))
                for st in data.get("cascade", [])
            ),
            meta=dict(data.get("meta", {})),
        )


def load_prior(path: str | Path = PRIOR_PATH) -> LandmarkPrior:
    """Read a :class:`LandmarkPrior` from JSON (default: the one shipped with maskgen)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"landmark prior {path} missing; create it with `python benchmarks/landmarks.py DATA --fit-prior`"
        ) from None
    return LandmarkPrior.from_json(data)
