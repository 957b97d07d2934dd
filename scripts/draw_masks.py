#!/usr/bin/env python
"""Draw maskgen's built-in mask templates (our own artwork) into ``assets/masks/``.

Run from the repository root::

    python scripts/draw_masks.py            # writes assets/masks/<name>.png + <name>.json

Every template is drawn in a canonical *face frame*: the symmetric mean shape of
dlib's 68 landmarks (``MEAN_SHAPE`` below, (x, y), unit = distance between the eye
centres, origin = midpoint of the eyes, y down).  Each template's anchors are the
mean-shape positions of a fixed set of landmarks, so at render time the picture is
warped piece-wise affinely from these anchors onto the detected landmarks.

The PNGs are RGBA.  For the tintable built-ins the RGB channels hold a *gray detail
layer* (1.0 = plain fabric, darker = pleats, seams, curvature shading) that the
renderer multiplies by the sampled colour; alpha is the coverage.  The drawing is
deterministic (fixed seed for the fabric grain), so re-running the script reproduces
the committed files.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from maskgen.cli_errors import run_script
from maskgen.io import atomic_write

#: output folder (repository's assets/masks)
OUT_DIR = Path(__file__).resolve().parent.parent / "assets" / "masks"

#: symmetric mean shape of the 68 dlib points in eye-distance units (computed once with dlib on
#: scikit-image's LFW subset + astronaut, Procrustes-normalised, median, then mirrored)
_RAW_MEAN_SHAPE = [
    [-1.093, 0.061], [-1.078, 0.339], [-1.046, 0.634], [-1.019, 0.914], [-0.936, 1.196], [-0.771, 1.445],
    [-0.571, 1.664], [-0.321, 1.834], [-0.011, 1.886], [0.305, 1.843], [0.572, 1.683], [0.802, 1.481],
    [0.998, 1.232], [1.104, 0.953], [1.151, 0.668], [1.176, 0.366], [1.197, 0.067], [-0.904, -0.186],
    [-0.782, -0.313], [-0.597, -0.359], [-0.398, -0.345], [-0.216, -0.272], [0.17, -0.278], [0.374, -0.35],
    [0.592, -0.371], [0.788, -0.309], [0.927, -0.18], [-0.014, -0.038], [-0.021, 0.153], [-0.033, 0.345],
    [-0.043, 0.554], [-0.247, 0.683], [-0.139, 0.736], [-0.023, 0.765], [0.102, 0.732], [0.213, 0.692],
    [-0.69, 0.005], [-0.571, -0.063], [-0.428, -0.06], [-0.301, 0.022], [-0.436, 0.048], [-0.576, 0.049],
    [0.294, 0.022], [0.425, -0.063], [0.571, -0.064], [0.695, 0.008], [0.579, 0.049], [0.435, 0.048],
    [-0.448, 1.075], [-0.309, 0.985], [-0.138, 0.945], [-0.018, 0.969], [0.107, 0.947], [0.274, 0.99],
    [0.438, 1.079], [0.288, 1.24], [0.118, 1.306], [-0.021, 1.318], [-0.149, 1.317], [-0.309, 1.232],
    [-0.384, 1.079], [-0.136, 1.039], [-0.019, 1.05], [0.105, 1.046], [0.376, 1.086], [0.11, 1.164],
    [-0.022, 1.183], [-0.141, 1.167],
]
#: mirror pairs of the 68-point convention (index -> its left/right mirror)
_MIRROR = (
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]
)


def mean_shape() -> np.ndarray:
    """(68, 2) float64 symmetric mean shape, (x, y) in eye-distance units."""
    raw = np.asarray(_RAW_MEAN_SHAPE, dtype=np.float64)
    mirrored = raw[_MIRROR] * np.array([-1.0, 1.0])
    return (raw + mirrored) / 2.0


MEAN_SHAPE = mean_shape()

#: template canvas: pixels per face unit, and the face-frame window it shows
PX_PER_UNIT = 150.0
FRAME_X = (-1.6, 1.6)
FRAME_Y = (-0.25, 2.35)
CANVAS_W = int(round((FRAME_X[1] - FRAME_X[0]) * PX_PER_UNIT))   # 480
CANVAS_H = int(round((FRAME_Y[1] - FRAME_Y[0]) * PX_PER_UNIT))   # 390
#: drawing supersampling factor (anti-aliased edges after area downsampling)
SS = 4
GRAIN_SEED = 20240601

#: anchors shared by the built-in templates: name -> landmark reference (see maskgen.masks)
ANCHOR_LANDMARKS: dict[str, object] = {
    **{f"jaw_{i}": f"jaw_{i}" for i in range(1, 16)},
    "nose_bridge": "nose_bridge_1",
    "nose_tip": "nose_bridge_3",
    "nose_bottom": "nose_tip_2",
    "mouth_right": "mouth_0",
    "mouth_left": "mouth_6",
    "upper_lip": "mouth_3",
    "lower_lip": "mouth_9",
    "cheek_right": {"jaw_2": 0.5, "nose_tip_0": 0.5},
    "cheek_left": {"jaw_14": 0.5, "nose_tip_4": 0.5},
}
_NAME_TO_INDEX = {
    **{f"jaw_{i}": i for i in range(17)},
    **{f"nose_bridge_{i}": 27 + i for i in range(4)},
    **{f"nose_tip_{i}": 31 + i for i in range(5)},
    **{f"mouth_{i}": 48 + i for i in range(20)},
}


def face_to_px(xy: np.ndarray | list | tuple) -> np.ndarray:
    """Face-frame units -> template pixel coordinates (x, y), float."""
    p = np.asarray(xy, dtype=np.float64)
    return np.stack([(p[..., 0] - FRAME_X[0]) * PX_PER_UNIT, (p[..., 1] - FRAME_Y[0]) * PX_PER_UNIT], axis=-1)


def anchor_positions() -> dict[str, list[float]]:
    """Template pixel position of every anchor (the mean-shape position of its landmark reference)."""
    out = {}
    for name, ref in ANCHOR_LANDMARKS.items():
        if isinstance(ref, dict):
            pt = sum(w * MEAN_SHAPE[_NAME_TO_INDEX[k]] for k, w in ref.items())
        else:
            pt = MEAN_SHAPE[_NAME_TO_INDEX[ref]]
        px = face_to_px(pt)
        out[name] = [round(float(px[0]), 2), round(float(px[1]), 2)]
    return out


class Canvas:
    """Supersampled gray detail layer + alpha, in face units."""

    def __init__(self) -> None:
        self.h, self.w = CANVAS_H * SS, CANVAS_W * SS
        self.alpha = np.zeros((self.h, self.w), np.float32)
        self.detail = np.ones((self.h, self.w), np.float32)
        ys, xs = np.mgrid[0:self.h, 0:self.w].astype(np.float32)
        self.fx = (xs + 0.5) / (SS * PX_PER_UNIT) + FRAME_X[0]   # face-frame x of every pixel
        self.fy = (ys + 0.5) / (SS * PX_PER_UNIT) + FRAME_Y[0]

    def pts(self, face_pts: np.ndarray) -> np.ndarray:
        """Face units -> int32 supersampled pixel polygon."""
        return np.round(face_to_px(face_pts) * SS).astype(np.int32).reshape(-1, 1, 2)

    def polygon_mask(self, face_pts: np.ndarray) -> np.ndarray:
        m = np.zeros((self.h, self.w), np.uint8)
        cv2.fillPoly(m, [self.pts(face_pts)], 255, lineType=cv2.LINE_AA)
        return m.astype(np.float32) / 255.0

    def fill(self, face_pts: np.ndarray) -> np.ndarray:
        """Add a polygon to the alpha; returns its coverage."""
        m = self.polygon_mask(face_pts)
        self.alpha = np.maximum(self.alpha, m)
        return m

    def line(self, face_pts: np.ndarray, width: float, value: float, *, alpha: bool = False,
             within: np.ndarray | None = None) -> None:
        """Draw a polyline of ``width`` face units: detail set towards ``value``; also opaque if ``alpha``."""
        m = np.zeros((self.h, self.w), np.uint8)
        thick = max(1, int(round(width * PX_PER_UNIT * SS)))
        cv2.polylines(m, [self.pts(face_pts)], False, 255, thickness=thick, lineType=cv2.LINE_AA)
        cov = m.astype(np.float32) / 255.0
        if within is not None:
            cov = cov * within
        self.detail = self.detail * (1 - cov) + value * cov
        if alpha:
            self.alpha = np.maximum(self.alpha, cov)

    def shade(self, factor: np.ndarray, where: np.ndarray | None = None) -> None:
        """Multiply the detail layer by ``factor`` (array over the canvas), optionally only ``where``."""
        if where is None:
            self.detail *= factor
        else:
            self.detail *= 1 + (factor - 1) * where

    def grain(self, amount: float, period: float) -> None:
        """Fabric grain: smooth noise of ``period`` face units, +-``amount``."""
        rng = np.random.default_rng(GRAIN_SEED)
        small = rng.standard_normal((max(2, int(self.h / (period * PX_PER_UNIT * SS))),
                                     max(2, int(self.w / (period * PX_PER_UNIT * SS))))).astype(np.float32)
        noise = cv2.resize(small, (self.w, self.h), interpolation=cv2.INTER_CUBIC)
        noise /= max(1e-6, float(noise.std()))
        self.detail *= 1 + amount * np.clip(noise, -2.5, 2.5)

    def rgba(self) -> np.ndarray:
        """(CANVAS_H, CANVAS_W, 4) uint8 RGBA, area-downsampled from the supersampled layers."""
        a = cv2.resize(self.alpha, (CANVAS_W, CANVAS_H), interpolation=cv2.INTER_AREA)
        # average the detail weighted by coverage (premultiplied), then un-premultiply
        ad = cv2.resize(self.alpha * self.detail, (CANVAS_W, CANVAS_H), interpolation=cv2.INTER_AREA)
        d = np.where(a > 1e-3, ad / np.maximum(a, 1e-3), 1.0)
        g = np.clip(np.round(d * 255), 0, 255).astype(np.uint8)
        return np.dstack([g, g, g, np.clip(np.round(a * 255), 0, 255).astype(np.uint8)])


def jaw_curve(offset: float, first: int = 1, last: int = 15) -> np.ndarray:
    """Jaw points ``first..last`` pushed outwards (away from the face centre) by ``offset`` units."""
    jaw = MEAN_SHAPE[first:last + 1].copy()
    centre = np.array([0.0, 0.75])
    d = jaw - centre
    return jaw + offset * d / np.linalg.norm(d, axis=1, keepdims=True)


def smooth_curve(points: np.ndarray, n: int = 64) -> np.ndarray:
    """Catmull-Rom resampling of a polyline (face units) to ``n`` points per segment."""
    p = np.asarray(points, np.float64)
    p = np.vstack([p[0], p, p[-1]])
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        for t in np.linspace(0, 1, n, endpoint=False):
            t2, t3 = t * t, t * t * t
            out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                              + (-p0 + 3 * p1 - 3 * p2 + p3) * t3))
    out.append(p[-2])
    return np.asarray(out)


def side_falloff(c: Canvas, half_width: float, strength: float) -> np.ndarray:
    """Cylinder-like shading across the face: 1 at the centre, 1-strength at +-half_width."""
    t = np.clip(np.abs(c.fx) / half_width, 0, 1)
    return 1 - strength * t ** 2


# --------------------------------------------------------------------------------------------- shapes
def draw_surgical() -> Canvas:
    """Flat pleated surgical mask with bound edges, a nose wire and ear loops."""
    c = Canvas()
    top = smooth_curve(np.array([[-1.14, 0.34], [-0.62, 0.30], [-0.22, 0.16], [0.0, 0.12],
                                 [0.22, 0.16], [0.62, 0.30], [1.14, 0.34]]))
    bottom = smooth_curve(np.vstack([jaw_curve(0.06, 3, 13)])[::-1])
    outline = np.vstack([top, [[1.10, 0.95]], bottom, [[-1.10, 0.95]]])
    body = c.fill(outline)
    # pleats: three folds across the mask, each a dark crease with a lit band below it
    for y0, bend in ((0.58, 0.10), (0.88, 0.16), (1.18, 0.22)):
        xs = np.linspace(-1.2, 1.2, 60)
        ys = y0 + bend * (xs / 1.2) ** 2 * -1 + 0.02 * np.cos(xs * 2.5)
        crease = np.stack([xs, ys], 1)
        c.line(crease, 0.025, 0.62, within=body)
        c.line(crease + [0, 0.045], 0.05, 1.06, within=body)
        c.line(crease - [0, 0.04], 0.03, 0.88, within=body)
    # bound edges: slightly darker tape along the outline, nose wire on top
    c.line(outline, 0.045, 0.9, within=body)
    c.line(top[(np.abs(top[:, 0]) < 0.42)], 0.05, 0.8, within=body)
    # ear loops leaving the top and bottom corners towards the ears
    for s in (-1, 1):
        loop = smooth_curve(np.array([[1.12 * s, 0.36], [1.42 * s, 0.45], [1.5 * s, 0.75],
                                      [1.40 * s, 1.05], [1.10 * s, 0.97]]), 24)
        c.line(loop, 0.022, 0.97, alpha=True)
    c.shade(side_falloff(c, 1.25, 0.22))
    c.grain(0.012, 0.05)
    return c


def draw_n95() -> Canvas:
    """Moulded N95 cup respirator: dome shading, rim, nose clip, two head straps."""
    c = Canvas()
    # cup outline: ellipse-like from the nose bridge to under the chin
    t = np.linspace(0, 2 * np.pi, 240, endpoint=False)
    cx, cy, rx, ry = 0.0, 1.06, 0.98, 0.90
    outline = np.stack([cx + rx * np.sin(t), cy - ry * np.cos(t)], 1)
    outline[:, 1] += 0.05 * np.cos(t) ** 2 * (np.cos(t) > 0)  # flatter top over the nose
    body = c.fill(outline)
    # dome: brighter in the middle-left (light from upper left), darker towards the rim
    r = np.sqrt(((c.fx - cx) / rx) ** 2 + ((c.fy - cy) / ry) ** 2)
    c.shade(np.clip(1.04 - 0.32 * r ** 3, 0.6, 1.1))
    # moulded rim and a seam ridge across the cup
    c.line(outline, 0.06, 0.82, within=body)
    inner = np.stack([cx + (rx - 0.07) * np.sin(t), cy - (ry - 0.07) * np.cos(t)], 1)
    c.line(inner, 0.018, 1.08, within=body)
    # nose clip: a short dark band over the nose bridge
    clip = np.array([[-0.28, 0.24], [-0.1, 0.19], [0.1, 0.19], [0.28, 0.24]])
    c.line(smooth_curve(clip, 16), 0.06, 0.7, within=body)
    # head straps: two bands leaving the sides
    for s in (-1, 1):
        for y0, y1 in ((0.55, 0.45), (1.35, 1.45)):
            strap = np.array([[0.9 * s, y0], [1.2 * s, (y0 + y1) / 2], [1.55 * s, y1]])
            c.line(strap, 0.05, 0.9, alpha=True)
    c.grain(0.012, 0.04)
    return c


def draw_kn95() -> Canvas:
    """Folded KN95: two panels meeting in a vertical centre seam, heat-sealed edge dots, ear loops."""
    c = Canvas()
    top = np.array([[-1.10, 0.42], [-0.55, 0.30], [-0.12, 0.12], [0.0, 0.08], [0.12, 0.12],
                    [0.55, 0.30], [1.10, 0.42]])
    bottom = np.array([[1.08, 0.95], [0.85, 1.42], [0.45, 1.78], [0.0, 1.98], [-0.45, 1.78],
                       [-0.85, 1.42], [-1.08, 0.95]])
    outline = np.vstack([smooth_curve(top, 24), smooth_curve(bottom, 24)])
    body = c.fill(outline)
    # two panels lit differently (folded along the centre), seam ridge down the middle
    c.shade(np.where(c.fx < 0, 1.0, 0.86).astype(np.float32), where=body)
    seam = smooth_curve(np.array([[0.0, 0.09], [0.02, 0.8], [0.0, 1.97]]), 32)
    c.line(seam, 0.035, 0.7, within=body)
    c.line(seam + [0.04, 0], 0.02, 1.08, within=body)
    # heat-seal band with a dotted pattern along the edge
    c.line(outline, 0.05, 0.9, within=body)
    inset = outline + (np.array([0.0, 1.0]) - outline) * 0.06
    for p in inset[::7]:
        cv2.circle(m := np.zeros((c.h, c.w), np.uint8), tuple(np.round(face_to_px(p) * SS).astype(int)),
                   int(0.012 * PX_PER_UNIT * SS), 255, -1, cv2.LINE_AA)
        cov = m.astype(np.float32) / 255 * body
        c.detail = c.detail * (1 - cov) + 0.78 * cov
    for s in (-1, 1):
        loop = smooth_curve(np.array([[1.09 * s, 0.45], [1.40 * s, 0.52], [1.5 * s, 0.75],
                                      [1.38 * s, 1.0], [1.07 * s, 0.97]]), 24)
        c.line(loop, 0.022, 0.97, alpha=True)
    c.shade(side_falloff(c, 1.2, 0.15))
    c.grain(0.01, 0.05)
    return c


def draw_cloth() -> Canvas:
    """Two-piece cloth mask: rounded shape with a curved centre seam and soft folds."""
    c = Canvas()
    top = np.array([[-1.12, 0.42], [-0.6, 0.30], [-0.22, 0.17], [0.0, 0.13], [0.22, 0.17],
                    [0.6, 0.30], [1.12, 0.42]])
    outline = np.vstack([smooth_curve(top, 24), smooth_curve(jaw_curve(0.08, 3, 13)[::-1], 24)])
    body = c.fill(outline)
    seam = smooth_curve(np.array([[0.0, 0.11], [0.03, 0.7], [0.0, 1.3], [0.0, 1.95]]), 32)
    c.line(seam, 0.03, 0.72, within=body)
    # soft horizontal folds of fabric
    c.shade(1 + 0.06 * np.sin(c.fy * 9.0 + c.fx * 1.5), where=body)
    c.line(outline, 0.05, 0.86, within=body)
    for s in (-1, 1):
        loop = smooth_curve(np.array([[1.10 * s, 0.43], [1.40 * s, 0.5], [1.5 * s, 0.78],
                                      [1.40 * s, 1.05], [1.08 * s, 1.0]]), 24)
        c.line(loop, 0.04, 0.9, alpha=True)
    c.shade(side_falloff(c, 1.25, 0.25))
    c.grain(0.025, 0.025)
    return c


def draw_gaiter() -> Canvas:
    """Neck gaiter pulled up over the nose: a tube from the nose bridge down past the chin and neck."""
    c = Canvas()
    top = np.array([[-1.22, 0.38], [-0.6, 0.30], [-0.22, 0.18], [0.0, 0.14], [0.22, 0.18],
                    [0.6, 0.30], [1.22, 0.38]])
    # sides hug the jaw down to the jaw corner, then fall straight to the (narrower) neck
    side_left = jaw_curve(0.1, 11, 15)[::-1]          # image right, from the top (jaw 15) down to jaw 11
    side_right = jaw_curve(0.1, 1, 5)[::-1]           # image left, from jaw 5 up to jaw 1
    neck = np.array([[0.84, 1.8], [0.82, 2.34], [-0.82, 2.34], [-0.84, 1.8]])
    outline = np.vstack([smooth_curve(top, 24), smooth_curve(side_left, 12), neck, smooth_curve(side_right, 12)])
    body = c.fill(outline)
    # folds: wavy horizontal ripples, denser below the chin where the tube bunches up
    ripple = np.sin(c.fy * (8 + 4 * np.clip(c.fy - 1.5, 0, 1)) * np.pi / 2 + 0.5 * np.sin(c.fx * 3))
    c.shade(1 + 0.07 * ripple, where=body)
    c.line(smooth_curve(top, 24), 0.06, 0.85, within=body)   # rolled top edge
    c.shade(side_falloff(c, 1.3, 0.35))
    c.grain(0.02, 0.03)
    return c


def draw_bandana() -> Canvas:
    """Bandana tied behind the head: a folded triangle of cloth over the nose, hanging to a point below the chin."""
    c = Canvas()
    top = np.array([[-1.30, 0.30], [-0.7, 0.27], [-0.25, 0.17], [0.0, 0.15], [0.25, 0.17], [0.7, 0.27],
                    [1.30, 0.30]])
    # the sides fall past the jaw, then the cloth narrows to a rounded point under the chin
    lower = np.array([[1.28, 0.45], [1.18, 1.05], [0.85, 1.65], [0.35, 2.12], [0.0, 2.28], [-0.35, 2.12],
                      [-0.85, 1.65], [-1.18, 1.05], [-1.28, 0.45]])
    outline = np.vstack([smooth_curve(top, 24), smooth_curve(lower, 24)])
    body = c.fill(outline)
    # folds: diagonal creases from the sides towards the point, a rolled top hem
    for s in (-1, 1):
        for x0, y0, bend in ((1.15, 0.55, 0.10), (1.05, 0.95, 0.08), (0.85, 1.35, 0.05)):
            crease = smooth_curve(np.array([[s * x0, y0], [s * 0.55, y0 + 0.35 + bend], [s * 0.12, y0 + 0.95]]), 16)
            c.line(crease, 0.03, 0.7, within=body)
            c.line(crease + [0, 0.05], 0.05, 1.05, within=body)
    c.line(smooth_curve(top, 24), 0.07, 0.84, within=body)
    c.line(smooth_curve(lower, 24), 0.03, 0.88, within=body)
    c.shade(side_falloff(c, 1.35, 0.3))
    c.grain(0.03, 0.025)
    return c


def draw_duckbill() -> Canvas:
    """Flat-fold duckbill respirator: wide upper panel, a horizontal fold, a lower panel tapering to the chin."""
    c = Canvas()
    top = np.array([[-1.12, 0.45], [-0.6, 0.28], [-0.2, 0.12], [0.0, 0.09], [0.2, 0.12], [0.6, 0.28],
                    [1.12, 0.45]])
    lower = np.array([[1.14, 0.62], [1.08, 1.12], [0.75, 1.55], [0.3, 1.9], [0.0, 1.98], [-0.3, 1.9],
                      [-0.75, 1.55], [-1.08, 1.12], [-1.14, 0.62]])
    outline = np.vstack([smooth_curve(top, 24), smooth_curve(lower, 24)])
    body = c.fill(outline)
    fold = smooth_curve(np.array([[-1.1, 1.12], [-0.5, 1.06], [0.0, 1.04], [0.5, 1.06], [1.1, 1.12]]), 24)
    upper_panel = (c.fy < np.interp(c.fx, fold[:, 0], fold[:, 1])).astype(np.float32)
    c.shade(np.where(upper_panel > 0, 1.04, 0.84).astype(np.float32), where=body)     # panels lit differently
    c.line(fold, 0.04, 0.62, within=body)
    c.line(fold - [0, 0.05], 0.03, 1.1, within=body)
    c.line(outline, 0.07, 0.8, within=body)                                             # welded edge
    c.line(top[(np.abs(top[:, 0]) < 0.5)], 0.05, 0.74, within=body)                    # nose foam
    for s in (-1, 1):
        for y0, y1 in ((0.55, 0.4), (1.15, 1.3)):
            c.line(np.array([[1.05 * s, y0], [1.3 * s, (y0 + y1) / 2], [1.58 * s, y1]]), 0.035, 0.92, alpha=True)
    c.shade(side_falloff(c, 1.2, 0.18))
    c.grain(0.01, 0.05)
    return c


def draw_valve() -> Canvas:
    """Cup respirator with a round exhalation valve on the subject's left cheek (image right)."""
    c = Canvas()
    t = np.linspace(0, 2 * np.pi, 240, endpoint=False)
    cx, cy, rx, ry = 0.0, 1.08, 1.0, 0.92
    outline = np.stack([cx + rx * np.sin(t), cy - ry * np.cos(t) + 0.06 * np.cos(t) ** 2 * (np.cos(t) > 0)], 1)
    body = c.fill(outline)
    r = np.sqrt(((c.fx - cx) / rx) ** 2 + ((c.fy - cy) / ry) ** 2)
    c.shade(np.clip(1.05 - 0.3 * r ** 3, 0.6, 1.1))
    c.line(outline, 0.05, 0.84, within=body)
    vx, vy, vr = 0.42, 1.22, 0.2                                 # the valve: housing, cap, slits
    valve = ((c.fx - vx) ** 2 + (c.fy - vy) ** 2 < vr ** 2).astype(np.float32)
    c.detail = c.detail * (1 - valve) + 0.55 * valve
    ring = np.stack([vx + vr * np.cos(t), vy + vr * np.sin(t)], 1)
    c.line(ring, 0.03, 0.35, within=body)
    for k in range(-2, 3):
        c.line(np.array([[vx - 0.12, vy + 0.06 * k], [vx + 0.12, vy + 0.06 * k]]), 0.018, 0.3, within=valve)
    clip = np.array([[-0.3, 0.24], [-0.1, 0.19], [0.1, 0.19], [0.3, 0.24]])
    c.line(smooth_curve(clip, 16), 0.06, 0.72, within=body)
    for s in (-1, 1):
        for y0, y1 in ((0.6, 0.5), (1.4, 1.5)):
            c.line(np.array([[0.92 * s, y0], [1.2 * s, (y0 + y1) / 2], [1.55 * s, y1]]), 0.05, 0.9, alpha=True)
    c.grain(0.012, 0.04)
    return c


#: name -> (drawing function, spec fields). Colours are (name, "#rrggbb", weight).
BUILTINS: dict[str, tuple] = {
    "surgical": (draw_surgical, {
        "description": "pleated surgical mask with ear loops",
        "colors": [["light blue", "#9cc7e4", 5], ["white", "#f2f2ee", 2], ["light green", "#a9d8c4", 1],
                   ["pink", "#efb7c8", 1], ["black", "#2b2b2e", 1]],
        "patterns": ["plain"],
    }),
    "n95": (draw_n95, {
        "description": "moulded N95 cup respirator with head straps",
        "colors": [["white", "#f0efe9", 5], ["off-white", "#dcd8cb", 2], ["gray", "#a8a8a8", 1]],
        "patterns": ["plain"],
    }),
    "kn95": (draw_kn95, {
        "description": "folded KN95 with a vertical centre seam and ear loops",
        "colors": [["white", "#efefea", 4], ["black", "#262628", 2], ["gray", "#9a9a9c", 1], ["pink", "#e8b3c1", 1]],
        "patterns": ["plain"],
    }),
    "cloth": (draw_cloth, {
        "description": "two-piece cloth mask, plain or patterned",
        "colors": [["black", "#232325", 3], ["navy", "#27324f", 2], ["gray", "#8a8a8c", 2], ["beige", "#cdb89a", 1],
                   ["red", "#a3332f", 1], ["denim", "#4f6a8f", 1], ["white", "#eaeae4", 1], ["olive", "#5f6640", 1]],
        "patterns": ["plain", "plain", "stripes", "dots", "checks"],
    }),
    "gaiter": (draw_gaiter, {
        "description": "neck gaiter pulled up over the nose",
        "colors": [["black", "#202022", 3], ["charcoal", "#3f4044", 2], ["gray", "#8c8c8e", 1], ["navy", "#26304a", 1],
                   ["camo green", "#57603f", 1], ["red", "#97302c", 1]],
        "patterns": ["plain", "plain", "stripes"],
    }),
    # extra artwork (maskgen.masks.EXTRA_MASKS): drawn only when --masks or a style names it
    "bandana": (draw_bandana, {
        "description": "bandana tied behind the head, hanging to a point below the chin",
        "colors": [["red", "#a52a2a", 3], ["navy", "#22305a", 2], ["black", "#1f1f21", 2], ["khaki", "#b5a47a", 1],
                   ["white", "#e9e9e2", 1]],
        "patterns": ["plain", "dots", "camo", "chevrons"],
    }),
    "duckbill": (draw_duckbill, {
        "description": "flat-fold duckbill respirator with head straps",
        "colors": [["white", "#f1f0ea", 4], ["light blue", "#a6cbe6", 2], ["gray", "#a3a3a5", 1]],
        "patterns": ["plain"],
    }),
    "valve": (draw_valve, {
        "description": "cup respirator with an exhalation valve",
        "colors": [["white", "#eeede7", 3], ["gray", "#9d9d9f", 2], ["black", "#262628", 1], ["sand", "#cbbd9b", 1]],
        "patterns": ["plain"],
    }),
}


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`maskgen.io.atomic_write` (a symlink there is refused)."""
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    anchors = anchor_positions()
    for name, (draw, fields) in BUILTINS.items():
        rgba = draw().rgba()
        ok, png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise ValueError(f"{name}: OpenCV could not encode the picture as PNG")
        write_atomic(OUT_DIR / f"{name}.png", png.tobytes())
        spec = {
            "name": name,
            "image": f"{name}.png",
            "description": fields["description"],
            "tintable": True,
            "colors": fields["colors"],
            "patterns": fields["patterns"],
            "anchors": {k: {"xy": anchors[k], "landmark": ANCHOR_LANDMARKS[k]} for k in ANCHOR_LANDMARKS},
        }
        write_atomic(OUT_DIR / f"{name}.json", (json.dumps(spec, indent=1) + "\n").encode())
        print(f"wrote {OUT_DIR / name}.png ({rgba.shape[1]}x{rgba.shape[0]}, {len(png)} bytes) + .json")


if __name__ == "__main__":
    run_script(main)
