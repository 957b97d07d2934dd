"""68-point facial landmarks that never silently miss.

Two entry points:

* :func:`landmarks_for_crop` for aligned face crops such as FER2013 rows
  ((48, 48) uint8). A chain of methods is tried, each result tagged with its
  ``source``:

  1. ``"hog"``   dlib's HOG detector on an upscaled, edge-padded copy of the crop,
     then the 68-point shape predictor in the detected box;
  2. ``"prior"`` the shape predictor in a *prior box* learned from the rows where
     HOG succeeds (FER2013 faces are roughly centred). A fixed median box is not
     enough (faces vary in size and offset), so the box is predicted from the
     crop's appearance by a small cascade of linear regressors on HOG-like
     features (:func:`crop_features`), fit by ``benchmarks/landmarks.py
     --fit-prior`` on the Training rows and shipped as ``landmark_prior.json``.
     The predictor runs once in that box. Re-fitting the box to the predicted
     points and predicting again ("refine") rescues a *fixed* box, but for the
     regressed box it was no better against HOG references and slightly worse
     against CNN landmarks on rows HOG misses, at 2-3x the cost (docs/results.md
     ``## Landmarks``), so it runs only when the prior has no regressor;
  3. ``"cnn"``   dlib's CNN (MMOD) face detector. It is 50-100x slower than the
     rest, so it runs only when neither HOG nor the prior fit gave a plausible
     shape (measured order; see docs/results.md ``## Landmarks``).

  Every shape gets a plausibility ``score`` (Procrustes distance to the mean
  face shape; lower is better) and, for crops, a check that its box is where
  aligned faces are. The first plausible shape wins; when none is plausible the
  best one is returned with ``accepted=False`` so the caller can record it.

* :func:`detect_faces` for any photo (gray or RGB, several faces). Faces come
  only from a detector (HOG, or the CNN when HOG finds none), and each shape
  must be plausible: a flat or noise image gives ``[]``.

Coordinates are always (x, y) in pixels of the *input* image, pixel centres at
integer positions. Models are loaded lazily, once per process.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskgen._resources import CNN_FACE_DETECTOR, SHAPE_PREDICTOR_68, dlib_model_path

__all__ = [
    "LANDMARK_GROUPS",
    "N_POINTS",
    "Landmarks",
    "LandmarkDetector",
    "LandmarkPrior",
    "get_detector",
    "detect_faces",
    "landmarks_for_crop",
    "procrustes_distance",
    "crop_features",
    "frame_features",
    "fit_box_to_points",
    "load_prior",
    "PRIOR_PATH",
]

N_POINTS = 68

#: Named groups of the dlib / iBUG 68-point convention, defined once.
#: "right"/"left" are the subject's: ``right_eye`` (36-41) is on the image's left.
LANDMARK_GROUPS: dict[str, np.ndarray] = {
    "jaw": np.arange(0, 17),
    "right_eyebrow": np.arange(17, 22),
    "left_eyebrow": np.arange(22, 27),
    "nose_bridge": np.arange(27, 31),
    "nose_tip": np.arange(31, 36),
    "right_eye": np.arange(36, 42),
    "left_eye": np.arange(42, 48),
    # outer upper lip then inner upper lip (as face_recognition's api.py)
    "top_lip": np.array([48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60]),
    # outer lower lip then inner lower lip (as face_recognition's api.py)
    "bottom_lip": np.array([54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64]),
    # convenience unions
    "nose": np.arange(27, 36),
    "eyes": np.arange(36, 48),
    "mouth": np.arange(48, 68),
}
for _idx in LANDMARK_GROUPS.values():
    _idx.setflags(write=False)

#: index of the nose tip (bottom of the nose bridge) and of the chin
NOSE_TIP_POINT = 30
CHIN_POINT = 8

# ---------------------------------------------------------------- crop mode
#: crops are resized so that their longer side is this many pixels before HOG
#: (48 -> 96, i.e. 2x: dlib's HOG window is 80x80 pixels)
CROP_TARGET_SIZE = 96
#: edge padding (replicated border) added around the crop before upscaling,
#: in input pixels per 48 pixels of crop
CROP_PAD_PER_48 = 2
#: HOG decision threshold for crops; below dlib's default 0 because the box is
#: checked against the prior and the shape must pass the plausibility test
CROP_HOG_THRESHOLD = -0.5
#: a crop whose gray levels have a smaller standard deviation than this is blank:
#: no stage may accept landmarks on it (HOG never fires there; the prior would
#: happily draw a face shape on anything)
MIN_CROP_CONTRAST = 3.0
#: refinement of a *fixed* prior box (no regressor): at most this many re-fits of the box to
#: the predicted points, stop when the box moves less than REFINE_TOL (fraction of its size).
#: A regressed box is not refined (see the module docstring).
REFINE_MAX_ITER = 4
REFINE_TOL = 0.01
#: the box-regressor stages after the first look at a frame this many times the
#: current box size, centred on it, resized to FEATURE_SIZE
CASCADE_FRAME = 1.5

# --------------------------------------------------------------- photo mode
#: photos whose longer side is below these sizes are upsampled by dlib (x2 per step)
PHOTO_UPSAMPLE_BELOW = (200, 600)
#: HOG decision threshold in photo mode (dlib's default)
PHOTO_HOG_THRESHOLD = 0.0
#: the CNN runs on photos only when HOG finds nothing and the (upsampled) image has
#: at most this many pixels (it costs ~1 s per megapixel on one core)
PHOTO_CNN_MAX_PIXELS = 1_200_000
#: minimum MMOD confidence for a CNN face
CNN_CONFIDENCE = 0.3
#: two detections whose boxes overlap more than this (IoU) are the same face
DUPLICATE_IOU = 0.4

#: the learned prior (box, mean shape, thresholds); produced by
#: ``python benchmarks/landmarks.py DATA --fit-prior`` (see docs/results.md)
PRIOR_PATH = Path(__file__).with_name("landmark_prior.json")


@dataclass(frozen=True)
class Landmarks:
    """68 facial landmarks of one face.

    ``points`` is (68, 2) float32 in (x, y) order, pixel coordinates of the input
    image. ``box`` is (left, top, right, bottom) in the same coordinates.
    ``score`` is the Procrustes distance to the mean face shape (lower = better),
    ``accepted`` whether the shape passed the plausibility checks.
    """

    points: np.ndarray
    source: str
    score: float
    accepted: bool
    box: tuple[float, float, float, float]
    #: detector confidence (HOG / CNN score) where a detector produced the box, else nan
    confidence: float = field(default=float("nan"), compare=False)

    def group(self, name: str) -> np.ndarray:
        """(k, 2) float32 points of a named group (see :data:`LANDMARK_GROUPS`)."""
        try:
            idx = LANDMARK_GROUPS[name]
        except KeyError:
            raise ValueError(f"unknown landmark group {name!r}; valid: {sorted(LANDMARK_GROUPS)}") from None
        return self.points[idx]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no points) for per-row sidecars."""
        return {
            "landmark_source": self.source,
            "landmark_score": round(float(self.score), 5),
            "landmark_accepted": bool(self.accepted),
        }


# -------------------------------------------------------- crop box features
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


# ------------------------------------------------------------------ geometry
def procrustes_distance(points: np.ndarray, reference: np.ndarray) -> float:
    """Full Procrustes distance (translation, scale, rotation removed; no reflection) in [0, 1].

    ``points`` and ``reference`` are (n, 2) (x, y) arrays. With the shapes as centred
    complex vectors a, b: sqrt(1 - |<a, b>|^2 / (|a|^2 |b|^2)); 0 = same shape.
    """
    p = np.asarray(points, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    a = p[:, 0] + 1j * p[:, 1]
    b = r[:, 0] + 1j * r[:, 1]
    a = a - a.mean()
    b = b - b.mean()
    na, nb = float(np.vdot(a, a).real), float(np.vdot(b, b).real)
    if na < 1e-12 or nb < 1e-12:
        return 1.0
    c = abs(np.vdot(a, b)) ** 2 / (na * nb)
    return float(np.sqrt(max(0.0, 1.0 - c)))


def fit_box_to_points(points: np.ndarray, mean_shape: np.ndarray) -> tuple[float, float, float, float]:
    """Square box (left, top, right, bottom) that maps ``mean_shape`` best onto ``points``.

    ``mean_shape`` is (68, 2) in box-normalised coordinates ((0, 0) = top-left,
    (1, 1) = bottom-right of the face box); least squares over scale and
    translation (no rotation: boxes are axis-aligned).
    """
    p = np.asarray(points, dtype=np.float64)
    m = np.asarray(mean_shape, dtype=np.float64)
    mc, pc = m.mean(axis=0), p.mean(axis=0)
    dm = m - mc
    scale = float((dm * (p - pc)).sum() / (dm * dm).sum())
    left, top = pc - scale * mc
    return (float(left), float(top), float(left + scale), float(top + scale))


def _box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# --------------------------------------------------------------------- prior
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


# ------------------------------------------------------------------ detector
@dataclass
class _Canvas:
    """An upscaled, edge-padded copy of a crop and the map back to input coords."""

    image: np.ndarray  # (H', W') uint8
    scale: float
    pad: int

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        return ((xy + 0.5) / self.scale - 0.5 - self.pad).astype(np.float32)

    def box_to_input(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        l, t, r, b = box
        s, p = self.scale, self.pad
        return ((l + 0.5) / s - 0.5 - p, (t + 0.5) / s - 0.5 - p, (r + 0.5) / s - 0.5 - p, (b + 0.5) / s - 0.5 - p)

    def box_from_input(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        l, t, r, b = box
        s, p = self.scale, self.pad
        return ((l + p + 0.5) * s - 0.5, (t + p + 0.5) * s - 0.5, (r + p + 0.5) * s - 0.5, (b + p + 0.5) * s - 0.5)


def _to_gray_uint8(image: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"{what}: expected a uint8 image, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = cv2.cvtColor(np.ascontiguousarray(arr[:, :, :3]), cv2.COLOR_RGB2GRAY)
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected (H, W) or (H, W, 3) image, got shape {arr.shape}")
    if min(arr.shape) < 8:
        raise ValueError(f"{what}: image too small ({arr.shape[1]}x{arr.shape[0]}), need at least 8x8")
    return np.ascontiguousarray(arr)


class LandmarkDetector:
    """Holds the dlib models (loaded lazily on first use) and the crop prior."""

    def __init__(self, prior: LandmarkPrior | None = None) -> None:
        self._prior = prior

    # lazily loaded members (never at import / construction time)
    @cached_property
    def prior(self) -> LandmarkPrior:
        return self._prior if self._prior is not None else load_prior()

    @cached_property
    def hog(self) -> Any:
        import dlib

        return dlib.get_frontal_face_detector()

    @cached_property
    def predictor(self) -> Any:
        import dlib

        return dlib.shape_predictor(str(dlib_model_path(SHAPE_PREDICTOR_68)))

    @cached_property
    def cnn(self) -> Any:
        import dlib

        return dlib.cnn_face_detection_model_v1(str(dlib_model_path(CNN_FACE_DETECTOR)))

    def __getstate__(self) -> dict[str, Any]:  # dlib models don't pickle; reload in the child
        return {"_prior": self._prior}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._prior = state["_prior"]

    # ---------------------------------------------------------------- shared
    def _predict(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """Shape predictor in ``box`` (coords of ``image``) -> (68, 2) float64 points."""
        import dlib

        l, t, r, b = (int(round(v)) for v in box)
        shape = self.predictor(image, dlib.rectangle(l, t, r, b))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def score(self, points: np.ndarray) -> float:
        """Procrustes distance of (68, 2) points to the prior's mean shape (lower = better)."""
        return procrustes_distance(points, self.prior.mean_shape)

    def _box_plausible(self, box: tuple[float, float, float, float], width: int, height: int) -> bool:
        """Is a face box (input coords) where aligned crops have their face?"""
        pl, pt, pr, pb = self.prior.box
        pl, pr = pl * width, pr * width
        pt, pb = pt * height, pb * height
        psize = ((pr - pl) + (pb - pt)) / 2
        size = ((box[2] - box[0]) + (box[3] - box[1])) / 2
        lo, hi = self.prior.size_range
        if not (lo * psize <= size <= hi * psize):
            return False
        dx = (box[0] + box[2]) / 2 - (pl + pr) / 2
        dy = (box[1] + box[3]) / 2 - (pt + pb) / 2
        return bool(np.hypot(dx, dy) <= self.prior.max_center_offset * psize)

    # ------------------------------------------------------------- crop mode
    def crop_canvas(self, gray: np.ndarray) -> _Canvas:
        """Upscaled, edge-padded copy of a crop used by every crop-mode stage."""
        h, w = gray.shape
        pad = max(1, int(round(CROP_PAD_PER_48 * max(h, w) / 48)))
        scale = CROP_TARGET_SIZE / max(h, w)
        padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        big = cv2.resize(padded, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        return _Canvas(image=big, scale=scale, pad=pad)

    def _crop_result(
        self, canvas: _Canvas, box_big: tuple[float, float, float, float], points_big: np.ndarray, source: str,
        shape: tuple[int, int], confidence: float = float("nan"),
    ) -> Landmarks:
        points = canvas.to_input(points_big)
        box = canvas.box_to_input(box_big)
        score = self.score(points)
        ok = score <= self.prior.max_score and self._box_plausible(
            fit_box_to_points(points, self.prior.mean_shape), shape[1], shape[0]
        )
        return Landmarks(points=points, source=source, score=score, accepted=bool(ok), box=box, confidence=confidence)

    def crop_hog(self, gray: np.ndarray, canvas: _Canvas | None = None,
                 threshold: float = CROP_HOG_THRESHOLD) -> Landmarks | None:
        """HOG stage for a crop: best detection whose box is plausible, or None."""
        canvas = canvas or self.crop_canvas(gray)
        rects, scores, _ = self.hog.run(canvas.image, 0, threshold)
        best = None
        for rect, conf in sorted(zip(rects, scores), key=lambda rs: -rs[1]):
            box_big = (rect.left(), rect.top(), rect.right(), rect.bottom())
            if not self._box_plausible(canvas.box_to_input(box_big), gray.shape[1], gray.shape[0]):
                continue
            best = self._crop_result(canvas, box_big, self._predict(canvas.image, box_big), "hog", gray.shape, conf)
            break
        return best

    def regress_box(self, gray: np.ndarray, stages: int | None = None) -> tuple[float, float, float, float]:
        """Face box (left, top, right, bottom) of a crop predicted from its appearance.

        Runs the prior's cascade of linear regressors (see :class:`LandmarkPrior`) on
        :func:`crop_features`; without a cascade, the fixed prior box.
        """
        h, w = gray.shape
        cascade = self.prior.cascade if stages is None else self.prior.cascade[:stages]
        if not cascade:
            pl, pt, pr, pb = self.prior.box
            return (pl * w, pt * h, pr * w, pb * h)
        coef, icpt = cascade[0]
        fx, fy, fs = crop_features(gray) @ coef + icpt
        cx, cy, size = fx * w, fy * h, float(np.exp(fs)) * w
        for coef, icpt in cascade[1:]:
            dx, dy, ds = frame_features(gray, (cx, cy, size)) @ coef + icpt
            cx, cy, size = cx + dx * size, cy + dy * size, size * float(np.exp(ds))
        return (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)

    def crop_prior(self, gray: np.ndarray, canvas: _Canvas | None = None, *,
                   regress: bool = True, max_iter: int | None = None) -> Landmarks:
        """Prior-box stage: predictor in the regressed (or fixed) prior box.

        ``regress=False`` (or a prior without a regressor) uses the fixed median box.
        ``max_iter`` > 0 re-fits the box to the predicted points and predicts again, until
        the box stops moving; None means REFINE_MAX_ITER for a fixed box and 0 for a
        regressed one.
        """
        canvas = canvas or self.crop_canvas(gray)
        regressed = regress and bool(self.prior.cascade)
        if max_iter is None:
            max_iter = 0 if regressed else REFINE_MAX_ITER
        box = self.regress_box(gray) if regressed else self.regress_box(gray, stages=0)
        box_big = canvas.box_from_input(box)
        pts_big = self._predict(canvas.image, box_big)
        for _ in range(max_iter):
            new_box = fit_box_to_points(canvas.to_input(pts_big), self.prior.mean_shape)
            size = new_box[2] - new_box[0]
            moved = max(abs(a - b) for a, b in zip(new_box, box)) / max(size, 1e-6)
            box = new_box
            box_big = canvas.box_from_input(box)
            pts_big = self._predict(canvas.image, box_big)
            if moved < REFINE_TOL:
                break
        return self._crop_result(canvas, box_big, pts_big, "prior", gray.shape)

    def crop_cnn(self, gray: np.ndarray, canvas: _Canvas | None = None) -> Landmarks | None:
        """CNN (MMOD) stage for a crop: best plausible detection, or None. Slow (~30-80 ms)."""
        canvas = canvas or self.crop_canvas(gray)
        best = None
        for det in sorted(self.cnn(canvas.image, 0), key=lambda d: -d.confidence):
            r = det.rect
            box_big = (r.left(), r.top(), r.right(), r.bottom())
            if not self._box_plausible(canvas.box_to_input(box_big), gray.shape[1], gray.shape[0]):
                continue
            best = self._crop_result(canvas, box_big, self._predict(canvas.image, box_big), "cnn", gray.shape,
                                     float(det.confidence))
            break
        return best

    def for_crop(self, gray: np.ndarray) -> Landmarks:
        """Landmarks for an aligned face crop ((H, W) uint8, e.g. a (48, 48) FER2013 row).

        Tries HOG, then the (regressed) prior box, then the CNN; returns the first
        accepted shape, else the lowest-score one with ``accepted=False``.
        Never raises for a valid image.
        """
        gray = _to_gray_uint8(gray, "for_crop")
        canvas = self.crop_canvas(gray)
        if float(gray.std()) < MIN_CROP_CONTRAST:  # blank: report the prior shape, not accepted
            return replace(self.crop_prior(gray, canvas), accepted=False)
        tried: list[Landmarks] = []
        for stage in (self.crop_hog, self.crop_prior, self.crop_cnn):
            lm = stage(gray, canvas)
            if lm is None:
                continue
            if lm.accepted:
                return lm
            tried.append(lm)
        return min(tried, key=lambda lm: lm.score)

    # ------------------------------------------------------------ photo mode
    def detect_faces(self, image: np.ndarray) -> list[Landmarks]:
        """All faces in a photo ((H, W) or (H, W, 3) uint8 RGB), left to right; [] if none.

        Small images are upsampled; HOG first, the CNN only when HOG finds nothing
        (and the image is not huge). Each shape must pass the Procrustes test;
        nothing is ever invented without a detection.
        """
        gray = _to_gray_uint8(image, "detect_faces")
        longest = max(gray.shape)
        upsample = sum(longest < limit for limit in PHOTO_UPSAMPLE_BELOW)
        rects, scores, _ = self.hog.run(gray, upsample, PHOTO_HOG_THRESHOLD)
        found: list[tuple[tuple[float, float, float, float], float, str]] = [
            ((r.left(), r.top(), r.right(), r.bottom()), float(s), "hog") for r, s in zip(rects, scores)
        ]
        if not found:
            cnn_upsample = upsample
            while cnn_upsample > 0 and gray.size * 4**cnn_upsample > PHOTO_CNN_MAX_PIXELS:
                cnn_upsample -= 1
            if gray.size * 4**cnn_upsample <= PHOTO_CNN_MAX_PIXELS:
                for det in self.cnn(gray, cnn_upsample):
                    if det.confidence >= CNN_CONFIDENCE:
                        r = det.rect
                        found.append(((r.left(), r.top(), r.right(), r.bottom()), float(det.confidence), "cnn"))
        faces: list[Landmarks] = []
        for box, conf, source in sorted(found, key=lambda f: -f[1]):
            if any(_box_iou(box, f.box) > DUPLICATE_IOU for f in faces):
                continue
            points = self._predict(gray, box).astype(np.float32)
            score = self.score(points)
            if score > self.prior.max_score:
                continue
            faces.append(Landmarks(points=points, source=source, score=score, accepted=True,
                                   box=tuple(float(v) for v in box), confidence=conf))  # type: ignore[arg-type]
        return sorted(faces, key=lambda f: f.box[0])


_DETECTOR: LandmarkDetector | None = None


def get_detector() -> LandmarkDetector:
    """Process-wide detector (one per worker process); models load on first use."""
    global _DETECTOR
    if _DETECTOR is None:
        _DETECTOR = LandmarkDetector()
    return _DETECTOR


def detect_faces(image: np.ndarray) -> list[Landmarks]:
    """All faces in a photo; see :meth:`LandmarkDetector.detect_faces`."""
    return get_detector().detect_faces(image)


def landmarks_for_crop(gray: np.ndarray) -> Landmarks:
    """Landmarks for an aligned crop; see :meth:`LandmarkDetector.for_crop`."""
    return get_detector().for_crop(gray)
