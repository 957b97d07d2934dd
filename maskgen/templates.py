"""Mask templates: an RGBA picture plus anchors tied to facial landmarks (no registry here).

A :class:`MaskTemplate` is an RGBA picture plus *anchors*: template pixel positions
(x, y) tied to landmarks of the 68-point convention (:mod:`maskgen.points`), by index,
name or weighted mix (:func:`resolve_landmark`). :func:`build_template` validates and makes
one; :mod:`maskgen.masks` keeps the registry of named templates.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from maskgen.io import read_rgba
from maskgen.points import LANDMARK_GROUPS, N_POINTS, POINT_ALIASES, POINT_NAMES

__all__ = ["MAX_TEMPLATE_PIXELS", "MIN_ANCHORS", "PATTERNS", "MaskSpecError", "MaskTemplate", "build_template", "resolve_landmark"]

#: procedural patterns a tintable template can carry (2nd colour painted where the pattern is 1); the
#: built-ins' specs name the first four, ``chevrons`` and ``camo`` are printed by mask styles (maskgen.styles)
PATTERNS = ("plain", "stripes", "dots", "checks", "chevrons", "camo")
#: the camo print's blobs: fixed seed (the pattern is part of the artwork, not a per-row draw), blob size
_CAMO_SEED = 29
_CAMO_CELLS = 6
#: pattern period in template pixels for the built-in 480 px wide artwork (scaled to the template width)
_PATTERN_PERIOD_FRACTION = 0.1
MIN_ANCHORS = 4
_LOCK = threading.RLock()


class MaskSpecError(ValueError):
    """A mask spec or custom template is invalid (message says which mask and what is wrong)."""


def resolve_landmark(ref: Any, *, mask: str = "?", anchor: str = "?") -> np.ndarray:
    """Landmark reference -> (68,) float64 weights (sum 1).

    ``ref`` is an index (0..67), a name from :data:`maskgen.points.POINT_NAMES` (``"jaw_8"``, ``"chin"``,
    ``"lm_33"``), or a mapping ``{name_or_index: weight}`` for a weighted mix of landmarks.
    """
    def one(r: Any) -> int:
        if isinstance(r, (int, np.integer)) and not isinstance(r, bool):
            if not 0 <= int(r) < N_POINTS:
                raise MaskSpecError(f"mask {mask!r}, anchor {anchor!r}: landmark index {r} outside 0..67")
            return int(r)
        if isinstance(r, str):
            if r in POINT_NAMES:
                return POINT_NAMES[r]
            if r.isdigit():
                return one(int(r))
            raise MaskSpecError(
                f"mask {mask!r}, anchor {anchor!r}: unknown landmark name {r!r}; use an index 0..67, "
                f"'<group>_<k>' with groups {sorted(LANDMARK_GROUPS)}, or one of {sorted(POINT_ALIASES)}")
        raise MaskSpecError(f"mask {mask!r}, anchor {anchor!r}: landmark must be a name, an index or a "
                            f"{{name: weight}} table, got {r!r}")

    w = np.zeros(N_POINTS, np.float64)
    if isinstance(ref, Mapping):
        if not ref:
            raise MaskSpecError(f"mask {mask!r}, anchor {anchor!r}: empty landmark mix")
        for k, v in ref.items():
            if not isinstance(v, (int, float)) or v < 0:
                raise MaskSpecError(f"mask {mask!r}, anchor {anchor!r}: weight of {k!r} must be a number >= 0")
            w[one(k)] += float(v)
        if w.sum() <= 0:
            raise MaskSpecError(f"mask {mask!r}, anchor {anchor!r}: landmark weights sum to 0")
        return w / w.sum()
    w[one(ref)] = 1.0
    return w


def _parse_color(c: Any, *, mask: str) -> tuple[str, tuple[float, float, float], float]:
    """``["name", "#rrggbb", weight]`` or ``"#rrggbb"`` -> (name, rgb in [0,1], weight)."""
    if isinstance(c, str):
        c = [c, c, 1.0]
    if not (isinstance(c, (list, tuple)) and len(c) in (2, 3)):
        raise MaskSpecError(f"mask {mask!r}: colour must be '#rrggbb' or [name, '#rrggbb', weight], got {c!r}")
    name, hexcode = str(c[0]), str(c[1])
    weight = float(c[2]) if len(c) == 3 else 1.0
    h = hexcode.lstrip("#")
    if len(h) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in h) or weight <= 0:
        raise MaskSpecError(f"mask {mask!r}: bad colour {c!r} (want '#rrggbb' and a weight > 0)")
    rgb = tuple(int(h[i:i + 2], 16) / 255.0 for i in (0, 2, 4))
    return name, rgb, weight  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class MaskTemplate:
    """A mask picture with its anchors.

    image: (h, w, 4) uint8 RGBA artwork.  For ``tintable`` templates RGB is a gray detail layer
        (multiplied by the sampled colour); otherwise RGB are the mask's own colours.
    anchors: anchor name -> template pixel (x, y).
    landmarks: anchor name -> landmark reference (index, name or {name: weight}); same keys as anchors.
    colors: (name, (r, g, b) in [0,1], weight) choices for tintable masks.
    patterns: pattern names (from :data:`PATTERNS`) the sampler may choose for tintable masks.
    """

    name: str
    image: np.ndarray
    anchors: dict[str, tuple[float, float]]
    landmarks: dict[str, Any]
    description: str = ""
    tintable: bool = False
    colors: tuple[tuple[str, tuple[float, float, float], float], ...] = ()
    patterns: tuple[str, ...] = ("plain",)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def anchor_weights(self) -> np.ndarray:
        """(n_anchors, 68) float64: anchor target = weights @ landmark points."""
        if "weights" not in self._cache:
            self._cache["weights"] = np.stack(
                [resolve_landmark(self.landmarks[k], mask=self.name, anchor=k) for k in self.anchors])
        return self._cache["weights"]

    @property
    def anchor_xy(self) -> np.ndarray:
        """(n_anchors, 2) float64 template pixel (x, y) of the anchors, in ``anchors`` order."""
        return np.array([self.anchors[k] for k in self.anchors], np.float64)

    def pattern_layer(self, pattern: str) -> np.ndarray:
        """(h, w) float32 in [0, 1]: where the second colour goes for ``pattern`` (cached)."""
        key = ("pattern", pattern)
        if key not in self._cache:
            self._cache[key] = _make_pattern(pattern, self.image.shape[1], self.image.shape[0])
        return self._cache[key]

    def cached(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per template and ``key`` (thread-safe).

        The renderer keeps its per-template pre-processing here (``maskgen.render``), so the
        template needs to know nothing about rendering and the renderer keeps no globals.
        """
        if key not in self._cache:
            with _LOCK:
                if key not in self._cache:
                    self._cache[key] = make()
        return self._cache[key]


def _make_pattern(pattern: str, w: int, h: int) -> np.ndarray:
    """Procedural pattern in template pixels, anti-aliased (smooth step over ~1.5 px)."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; valid: {', '.join(PATTERNS)}")
    if pattern == "plain":
        return np.zeros((h, w), np.float32)
    period = max(6.0, _PATTERN_PERIOD_FRACTION * w)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    edge = 1.5

    def band(u: np.ndarray, duty: float) -> np.ndarray:  # 1 on a fraction `duty` of each period
        d = np.abs(((u / period) % 1.0) - 0.5) * period   # distance to band centre
        return np.clip((duty * period / 2 - d) / edge + 0.5, 0, 1)

    if pattern == "stripes":
        return band(ys + 0.25 * xs, 0.4)
    if pattern == "checks":
        a, b = band(xs, 0.5), band(ys, 0.5)
        return np.clip(a + b - 2 * a * b, 0, 1).astype(np.float32)
    if pattern == "chevrons":   # zig-zag bands
        zig = np.abs(((xs / period) % 1.0) - 0.5) * period
        return band(ys + zig, 0.4).astype(np.float32)
    if pattern == "camo":       # smooth blobs, thresholded with an anti-aliased edge
        cells = np.random.default_rng(_CAMO_SEED).standard_normal((_CAMO_CELLS * h // w + 2, _CAMO_CELLS + 2))
        field = cv2.resize(cells.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        grad = max(float(np.abs(np.diff(field, axis=1)).mean()), 1e-6)   # field change per pixel
        return np.clip(field / (edge * grad) + 0.5, 0, 1).astype(np.float32)
    # dots on a staggered grid
    row = np.floor(ys / period)
    dx = ((xs / period + 0.5 * (row % 2)) % 1.0 - 0.5) * period
    dy = ((ys / period) % 1.0 - 0.5) * period
    r = 0.22 * period
    return np.clip((r - np.sqrt(dx * dx + dy * dy)) / edge + 0.5, 0, 1).astype(np.float32)


#: the most pixels a mask picture may have (4096x4096): every face it is drawn on is far smaller, and rendering
#: keeps float copies of the template, so a 20000x16000 picture would take gigabytes for a few faces
MAX_TEMPLATE_PIXELS = 4096 * 4096


def _read_rgba(path: Path, *, mask: str) -> np.ndarray:
    if not path.is_file():
        raise MaskSpecError(f"mask {mask!r}: image file {path} not found")
    try:
        return read_rgba(path, max_pixels=MAX_TEMPLATE_PIXELS)
    except ValueError as exc:
        raise MaskSpecError(f"mask {mask!r}: {exc}") from None


def build_template(name: str, image: np.ndarray | str | Path, anchors: Mapping[str, Any], *,
                   description: str = "", tintable: bool = False, colors: Sequence[Any] = (),
                   patterns: Sequence[str] = ("plain",)) -> MaskTemplate:
    """Validate inputs and make a :class:`MaskTemplate` (does not register it); raises MaskSpecError."""
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise MaskSpecError(f"mask name must be a non-empty string without spaces, got {name!r}")
    if isinstance(image, (str, Path)):
        image = _read_rgba(Path(image), mask=name)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 4:
        raise MaskSpecError(f"mask {name!r}: image must be RGBA (h, w, 4), got shape {image.shape} (no alpha?)")
    if image.dtype != np.uint8:
        raise MaskSpecError(f"mask {name!r}: image must be uint8, got {image.dtype}")
    h, w = image.shape[:2]
    if h * w > MAX_TEMPLATE_PIXELS:
        raise MaskSpecError(f"mask {name!r}: image {w}x{h} is larger than {MAX_TEMPLATE_PIXELS:,} pixels "
                            "(MAX_TEMPLATE_PIXELS); resize it (masks are drawn on faces a few hundred pixels wide)")
    if not image[..., 3].any():
        raise MaskSpecError(f"mask {name!r}: image alpha is all zero (nothing to draw)")
    if not isinstance(anchors, Mapping) or len(anchors) < MIN_ANCHORS:
        raise MaskSpecError(f"mask {name!r}: need at least {MIN_ANCHORS} anchors, got "
                            f"{len(anchors) if isinstance(anchors, Mapping) else anchors!r}")
    xy: dict[str, tuple[float, float]] = {}
    refs: dict[str, Any] = {}
    for key, a in anchors.items():
        if isinstance(a, Mapping):
            if "xy" not in a or "landmark" not in a:
                raise MaskSpecError(f"mask {name!r}, anchor {key!r}: needs 'xy' and 'landmark', got {dict(a)!r}")
            pos, ref = a["xy"], a["landmark"]
        else:
            pos, ref = a, key
        try:
            x, y = (float(v) for v in pos)
        except (TypeError, ValueError):
            raise MaskSpecError(f"mask {name!r}, anchor {key!r}: xy must be two numbers, got {pos!r}") from None
        if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
            raise MaskSpecError(f"mask {name!r}, anchor {key!r}: ({x:g}, {y:g}) is outside the "
                                f"{w}x{h} image")
        resolve_landmark(ref, mask=name, anchor=str(key))
        xy[str(key)] = (x, y)
        refs[str(key)] = ref
    pts = np.array(list(xy.values()))
    if np.linalg.matrix_rank(pts[1:] - pts[0], tol=1.0) < 2:
        raise MaskSpecError(f"mask {name!r}: anchors are (nearly) on one line; they must span an area")
    parsed = tuple(_parse_color(c, mask=name) for c in colors)
    if tintable and not parsed:
        parsed = (("white", (0.95, 0.95, 0.95), 1.0),)
    for p in patterns:
        if p not in PATTERNS:
            raise MaskSpecError(f"mask {name!r}: unknown pattern {p!r}; valid: {', '.join(PATTERNS)}")
    return MaskTemplate(name=name, image=np.ascontiguousarray(image), anchors=xy, landmarks=refs,
                        description=description, tintable=bool(tintable), colors=parsed,
                        patterns=tuple(patterns) or ("plain",))


