"""The 68-point facial-landmark convention (dlib / iBUG 300-W), defined once.

Every other module names points and groups from here instead of writing indices.
Coordinates are (x, y) pixels, pixel centres at integers. "right" / "left" are the
subject's: ``right_eye`` (36-41) is on the image's left, as in dlib and face_recognition.

Also here: the shape tests that need only the convention (Procrustes distance to a
reference shape, the box that best maps a mean shape onto points, box overlap).
"""
from __future__ import annotations

import numpy as np

N_POINTS = 68

#: Named groups of the 68-point convention.
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
    "outer_lips": np.arange(48, 60),
}

# ---------------------------------------------------------------- single points
JAW_RIGHT_TOP = 0           # jaw end at the subject's right ear (image left)
CHIN = 8                    # bottom of the chin
JAW_LEFT_TOP = 16
NOSE_TOP = 27               # top of the nose bridge, between the eyes
NOSE_BRIDGE = 28            # second nose-bridge point: where a correctly worn mask's top edge sits
NOSE_TIP = 30               # bottom of the nose bridge
NOSE_BOTTOM = 33            # centre of the nostril line
MOUTH_RIGHT = 48            # mouth corners (subject's right = image left)
MOUTH_LEFT = 54
UPPER_LIP_TOP = 51          # top centre of the upper lip
LOWER_LIP_BOTTOM = 57       # bottom centre of the lower lip

# ---------------------------------------------------------------- derived groups
#: the two jaw sides from the ear down to the chin
JAW_RIGHT_SIDE = np.arange(JAW_RIGHT_TOP, CHIN + 1)
JAW_LEFT_SIDE = np.arange(JAW_LEFT_TOP, CHIN - 1, -1)
#: jaw points around the chin (two either side of it)
CHIN_JAW = np.arange(CHIN - 2, CHIN + 3)
MOUTH_CORNERS = np.array([MOUTH_RIGHT, MOUTH_LEFT])
#: what a correctly worn mask must cover: the nose tip, the nostrils and the outer lips
MUST_COVER = np.r_[NOSE_TIP, LANDMARK_GROUPS["nose_tip"], LANDMARK_GROUPS["outer_lips"]]

for _idx in (*LANDMARK_GROUPS.values(), JAW_RIGHT_SIDE, JAW_LEFT_SIDE, CHIN_JAW, MOUTH_CORNERS, MUST_COVER):
    _idx.setflags(write=False)

#: readable aliases for single points (mask specs may use them)
POINT_ALIASES: dict[str, int] = {
    "chin": CHIN, "nose_bridge_top": NOSE_TOP, "nose_tip": NOSE_TIP, "nose_bottom": NOSE_BOTTOM,
    "mouth_right": MOUTH_RIGHT, "mouth_left": MOUTH_LEFT, "upper_lip_top": UPPER_LIP_TOP,
    "lower_lip_bottom": LOWER_LIP_BOTTOM,
}
#: every point name -> index: "<group>_<k>" = k-th point of a group (e.g. "jaw_8", "mouth_3"),
#: the aliases above, or "lm_<i>" (0..67)
POINT_NAMES: dict[str, int] = {
    **{f"{g}_{k}": int(i) for g, idx in LANDMARK_GROUPS.items() for k, i in enumerate(idx)},
    **POINT_ALIASES,
    **{f"lm_{i}": i for i in range(N_POINTS)},
}


def check_points(points: np.ndarray, what: str = "points") -> np.ndarray:
    """``points`` as a (68, 2) float64 array; ValueError if the shape is wrong or a value is not finite."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (N_POINTS, 2):
        raise ValueError(f"{what} must be ({N_POINTS}, 2) (x, y), got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError(f"{what} contain NaN or inf")
    return pts


# ---------------------------------------------------------------- shape tests
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


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


__all__ = [
    "CHIN", "CHIN_JAW", "JAW_LEFT_SIDE", "JAW_RIGHT_SIDE", "LANDMARK_GROUPS", "LOWER_LIP_BOTTOM", "MOUTH_CORNERS",
    "MOUTH_LEFT", "MOUTH_RIGHT", "MUST_COVER", "NOSE_BOTTOM", "NOSE_BRIDGE", "NOSE_TIP", "NOSE_TOP", "N_POINTS",
    "POINT_ALIASES", "POINT_NAMES", "UPPER_LIP_TOP", "box_iou", "check_points", "fit_box_to_points",
    "procrustes_distance",
]
