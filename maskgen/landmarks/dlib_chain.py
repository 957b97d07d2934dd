"""The dlib landmark source: 68-point landmarks that never silently miss.

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

from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import cv2
import numpy as np

from maskgen._resources import CNN_FACE_DETECTOR, SHAPE_PREDICTOR_68, dlib_model_path
from maskgen.imageops import to_gray
from maskgen.landmarks.base import Landmarks
from maskgen.landmarks.prior import LandmarkPrior, crop_features, frame_features, load_prior
from maskgen.points import box_iou, fit_box_to_points, procrustes_distance

__all__ = ["LandmarkDetector"]

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
#: face evidence in crop mode: the best HOG score of a plausibly placed window, searched down to
#: this score (rows whose best window scores lower, or blank crops, get this value). It does not
#: change which landmarks a row gets; it is recorded per row (sidecar ``face_evidence``) so that
#: non-faces can be filtered (docs/results.md, "Face evidence").
EVIDENCE_FLOOR = -1.5
#: face evidence in photo mode: a HOG detection scoring below this must be confirmed by the CNN,
#: run on a CONFIRM_SIDE x CONFIRM_SIDE crop of CONFIRM_CONTEXT x the box around it (any MMOD
#: detection there confirms). Measured (docs/results.md, "Face evidence"): the mission patch on
#: scikit-image's astronaut (HOG 0.057) is not confirmed; 97 of 100 upscaled LFW faces still are.
PHOTO_CONFIRM_BELOW = 0.3
CONFIRM_SIDE = 160
CONFIRM_CONTEXT = 2.0


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
        arr = to_gray(arr)
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected (H, W) or (H, W, 3) image, got shape {arr.shape}")
    if min(arr.shape) < 8:
        raise ValueError(f"{what}: image too small ({arr.shape[1]}x{arr.shape[0]}), need at least 8x8")
    return np.ascontiguousarray(arr)


class LandmarkDetector:
    """The dlib landmark source: HOG / prior box / CNN crop chain and photo detection.

    Holds the dlib models (loaded lazily on first use, never at import or construction)
    and the crop prior. Implements :class:`maskgen.landmarks.base.LandmarkSource`.
    """

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

    def _hog_windows(self, gray: np.ndarray, canvas: _Canvas, threshold: float
                     ) -> list[tuple[tuple[float, float, float, float], float]]:
        """Plausibly placed HOG windows (canvas box, score) scoring at least ``threshold``, best first.

        dlib's non-maximum suppression keeps windows in score order, so the windows above a
        higher threshold are the same whichever lower threshold the scan used.
        """
        rects, scores, _ = self.hog.run(canvas.image, 0, threshold)
        windows = []
        for rect, conf in sorted(zip(rects, scores), key=lambda rs: -rs[1]):
            box_big = (rect.left(), rect.top(), rect.right(), rect.bottom())
            if self._box_plausible(canvas.box_to_input(box_big), gray.shape[1], gray.shape[0]):
                windows.append((box_big, float(conf)))
        return windows

    def _hog_result(self, gray: np.ndarray, canvas: _Canvas,
                    window: tuple[tuple[float, float, float, float], float] | None) -> Landmarks | None:
        if window is None:
            return None
        box_big, conf = window
        return self._crop_result(canvas, box_big, self._predict(canvas.image, box_big), "hog", gray.shape, conf)

    def crop_hog(self, gray: np.ndarray, canvas: _Canvas | None = None,
                 threshold: float = CROP_HOG_THRESHOLD) -> Landmarks | None:
        """HOG stage for a crop: best detection whose box is plausible, or None."""
        canvas = canvas or self.crop_canvas(gray)
        windows = self._hog_windows(gray, canvas, threshold)
        return self._hog_result(gray, canvas, windows[0] if windows else None)

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

    def in_box(self, image: np.ndarray, box: tuple[float, float, float, float], source: str = "box") -> Landmarks:
        """The shape predictor in a given face box (left, top, right, bottom; input pixels).

        Crops (longer side at most CROP_TARGET_SIZE) use the same upscaled canvas as
        :meth:`for_crop`; bigger images are predicted on directly. ``accepted`` is the
        plausibility test of the shape (Procrustes score).
        """
        gray = _to_gray_uint8(image, "in_box")
        if max(gray.shape) <= CROP_TARGET_SIZE:
            canvas = self.crop_canvas(gray)
            box_big = canvas.box_from_input(box)
            result = self._crop_result(canvas, box_big, self._predict(canvas.image, box_big), source, gray.shape)
            return replace(result, accepted=result.score <= self.prior.max_score)
        points = self._predict(gray, box).astype(np.float32)
        score = self.score(points)
        return Landmarks(points=points, source=source, score=score, accepted=score <= self.prior.max_score,
                         box=tuple(float(v) for v in box))  # type: ignore[arg-type]

    def for_crop(self, gray: np.ndarray, key: int | str | None = None) -> Landmarks:
        """Landmarks for an aligned face crop ((H, W) uint8, e.g. a (48, 48) FER2013 row).

        Tries HOG, then the (regressed) prior box, then the CNN; returns the first
        accepted shape, else the lowest-score one with ``accepted=False``.
        Never raises for a valid image. ``key`` (the row) is not used by this source.
        """
        gray = _to_gray_uint8(gray, "for_crop")
        canvas = self.crop_canvas(gray)
        if float(gray.std()) < MIN_CROP_CONTRAST:  # blank: report the prior shape, not accepted
            return replace(self.crop_prior(gray, canvas), accepted=False, evidence=EVIDENCE_FLOOR)
        tried: list[Landmarks] = []
        # one HOG scan serves both: the evidence (best window down to EVIDENCE_FLOOR) and the HOG stage
        windows = self._hog_windows(gray, canvas, EVIDENCE_FLOOR)
        evidence = windows[0][1] if windows else EVIDENCE_FLOOR
        hog = self._hog_result(gray, canvas, next((w for w in windows if w[1] >= CROP_HOG_THRESHOLD), None))
        stages = (lambda: hog, lambda: self.crop_prior(gray, canvas), lambda: self.crop_cnn(gray, canvas))
        for stage in stages:  # HOG, then the prior box, then the CNN: the first accepted shape wins
            lm = stage()
            if lm is None:
                continue
            if lm.accepted:
                return replace(lm, evidence=evidence)
            tried.append(lm)
        return replace(min(tried, key=lambda lm: lm.score), evidence=evidence)

    # ------------------------------------------------------------ photo mode
    def _cnn_confirms(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> bool:
        """Does the CNN find a face in a crop around ``box`` (second-detector face evidence)?"""
        l, t, r, b = box
        cx, cy = (l + r) / 2, (t + b) / 2
        side = CONFIRM_CONTEXT * max(r - l, b - t)
        f = CONFIRM_SIDE / side
        affine = np.array([[f, 0.0, (side / 2 - cx) * f], [0.0, f, (side / 2 - cy) * f]], np.float32)
        crop = cv2.warpAffine(gray, affine, (CONFIRM_SIDE, CONFIRM_SIDE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        return len(self.cnn(crop, 0)) > 0

    def detect_faces(self, image: np.ndarray, key: int | str | None = None) -> list[Landmarks]:
        """All faces in a photo ((H, W) or (H, W, 3) uint8 RGB), left to right; [] if none.

        Small images are upsampled; HOG first, the CNN only when HOG finds nothing
        (and the image is not huge). Each shape must pass the Procrustes test, and a weak HOG
        detection (below PHOTO_CONFIRM_BELOW) must be confirmed by the CNN around it;
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
            if any(box_iou(box, f.box) > DUPLICATE_IOU for f in faces):
                continue
            points = self._predict(gray, box).astype(np.float32)
            score = self.score(points)
            if score > self.prior.max_score:
                continue
            if source == "hog" and conf < PHOTO_CONFIRM_BELOW and not self._cnn_confirms(gray, box):
                continue
            faces.append(Landmarks(points=points, source=source, score=score, accepted=True,
                                   box=tuple(float(v) for v in box), confidence=conf))  # type: ignore[arg-type]
        return sorted(faces, key=lambda f: f.box[0])
