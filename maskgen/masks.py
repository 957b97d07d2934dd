"""Mask templates, the mask registry and per-row mask parameters.

A :class:`MaskTemplate` is an RGBA picture plus *anchors*: template pixel positions
(x, y) tied to named facial landmarks (dlib 68-point convention).  Built-in templates
live in ``assets/masks/`` (``<name>.png`` + ``<name>.json``, drawn by
``scripts/draw_masks.py``) and are registered lazily on first use.  Custom masks are
added with :func:`register_mask` (Python) or :func:`load_mask_spec` (spec file).

Randomness follows the albumentations pattern: :func:`sample_params` draws everything
random for one row from that row's ``numpy.random.Generator`` into a
:class:`MaskParams`; :func:`apply_mask` (pure, see :mod:`maskgen.render`) draws it.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from maskgen.landmarks import CHIN_POINT, LANDMARK_GROUPS, N_POINTS, NOSE_TIP_POINT
from maskgen.render import FITS, apply_mask, prepare_template, render_mask

__all__ = [
    "FITS", "LANDMARK_NAMES", "MaskSpecError", "MaskTemplate", "MaskParams", "PATTERNS",
    "BUILTIN_MASKS", "register_mask", "unregister_mask", "get_mask", "build_template", "list_masks", "load_mask_spec", "sample_params", "apply_mask", "render_mask",
    "resolve_landmark",
]

N_LANDMARKS = N_POINTS
#: readable aliases for single landmarks ("right" = the subject's right = image left, as in dlib)
_ALIASES: dict[str, int] = {
    "chin": CHIN_POINT, "nose_bridge_top": 27, "nose_tip": NOSE_TIP_POINT, "nose_bottom": 33, "mouth_right": 48,
    "mouth_left": 54, "upper_lip_top": 51, "lower_lip_bottom": 57,
}
#: every landmark name a spec may use -> index: "<group>_<k>" = k-th point of a group of
#: maskgen.landmarks.LANDMARK_GROUPS (e.g. "jaw_8", "mouth_3"), the aliases above, or "lm_<i>" (0..67)
LANDMARK_NAMES: dict[str, int] = {
    **{f"{g}_{k}": int(i) for g, idx in LANDMARK_GROUPS.items() for k, i in enumerate(idx)},
    **_ALIASES,
    **{f"lm_{i}": i for i in range(N_LANDMARKS)},
}
#: procedural patterns a tintable template can carry (2nd colour painted where the pattern is 1)
PATTERNS = ("plain", "stripes", "dots", "checks")
#: pattern period in template pixels for the built-in 480 px wide artwork (scaled to the template width)
_PATTERN_PERIOD_FRACTION = 0.1
MIN_ANCHORS = 4


class MaskSpecError(ValueError):
    """A mask spec or custom template is invalid (message says which mask and what is wrong)."""


def resolve_landmark(ref: Any, *, mask: str = "?", anchor: str = "?") -> np.ndarray:
    """Landmark reference -> (68,) float64 weights (sum 1).

    ``ref`` is an index (0..67), a name from :data:`LANDMARK_NAMES` (``"jaw_8"``, ``"chin"``,
    ``"lm_33"``), or a mapping ``{name_or_index: weight}`` for a weighted mix of landmarks.
    """
    def one(r: Any) -> int:
        if isinstance(r, (int, np.integer)) and not isinstance(r, bool):
            if not 0 <= int(r) < N_LANDMARKS:
                raise MaskSpecError(f"mask {mask!r}, anchor {anchor!r}: landmark index {r} outside 0..67")
            return int(r)
        if isinstance(r, str):
            if r in LANDMARK_NAMES:
                return LANDMARK_NAMES[r]
            if r.isdigit():
                return one(int(r))
            raise MaskSpecError(
                f"mask {mask!r}, anchor {anchor!r}: unknown landmark name {r!r}; use an index 0..67, "
                f"'<group>_<k>' with groups {sorted(LANDMARK_GROUPS)}, or one of {sorted(_ALIASES)}")
        raise MaskSpecError(f"mask {mask!r}, anchor {anchor!r}: landmark must be a name, an index or a "
                            f"{{name: weight}} table, got {r!r}")

    w = np.zeros(N_LANDMARKS, np.float64)
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

    def prepared(self, pattern: str = "plain") -> Any:
        """Pre-processing the renderer needs (triangulation, layer pyramid), computed once and cached."""
        key = ("prepared", pattern)
        if key not in self._cache:
            with _LOCK:
                if key not in self._cache:
                    self._cache[key] = prepare_template(self, pattern)
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
    # dots on a staggered grid
    row = np.floor(ys / period)
    dx = ((xs / period + 0.5 * (row % 2)) % 1.0 - 0.5) * period
    dy = ((ys / period) % 1.0 - 0.5) * period
    r = 0.22 * period
    return np.clip((r - np.sqrt(dx * dx + dy * dy)) / edge + 0.5, 0, 1).astype(np.float32)


# --------------------------------------------------------------------------------------------- registry
_LOCK = threading.RLock()
_REGISTRY: dict[str, MaskTemplate] = {}
_BUILTINS_LOADED = False
#: the built-in mask types (assets/masks/<name>.png + .json, drawn by scripts/draw_masks.py), in sampling order
BUILTIN_MASKS = ("surgical", "n95", "kn95", "cloth", "gaiter")


def _builtin_dir() -> Path:
    try:
        from maskgen._resources import asset_dir
        d = asset_dir()
    except ModuleNotFoundError:  # not pip-installed: running from the repository root
        d = Path(__file__).resolve().parent.parent / "assets" / "masks"
    return d


def _ensure_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    with _LOCK:
        if _BUILTINS_LOADED:
            return
        folder = _builtin_dir()
        loaded = {}
        for name in BUILTIN_MASKS:
            spec = folder / f"{name}.json"
            if not spec.is_file():
                raise FileNotFoundError(f"built-in mask spec {spec} is missing; run scripts/draw_masks.py")
            loaded[name] = load_mask_spec(spec, register=False)
        custom = {k: v for k, v in _REGISTRY.items() if k not in loaded}
        _REGISTRY.clear()
        _REGISTRY.update(loaded)
        _REGISTRY.update(custom)
        _BUILTINS_LOADED = True


def register_mask(name: str | MaskTemplate, image: np.ndarray | str | Path | None = None,
                  anchors: Mapping[str, Any] | None = None, *, description: str = "", tintable: bool = False,
                  colors: Sequence[Any] = (), patterns: Sequence[str] = ("plain",),
                  overwrite: bool = False) -> MaskTemplate:
    """Validate and register a mask; returns the :class:`MaskTemplate`.

    Either pass a ready ``MaskTemplate``, or ``name``, an RGBA ``image`` ((h, w, 4) uint8 array, or a
    PNG path) and ``anchors``: ``{anchor_name: {"xy": (x, y), "landmark": ref}}`` where ``xy`` is the
    template pixel and ``ref`` a landmark index/name/mix (see :func:`resolve_landmark`); the shorthand
    ``{landmark_name: (x, y)}`` ties each anchor to the landmark of the same name.  At least
    four anchors, not all on one line, inside the image.  ``tintable`` masks have a gray detail layer
    in RGB that is multiplied by one of ``colors`` (``[name, "#rrggbb", weight]``).
    """
    if isinstance(name, MaskTemplate):
        template = name
    else:
        if image is None or anchors is None:
            raise TypeError("register_mask(name, image, anchors, ...) needs an image and anchors")
        template = build_template(name, image, anchors, description=description, tintable=tintable,
                                  colors=colors, patterns=patterns)
    _ensure_builtins()
    with _LOCK:
        if template.name in BUILTIN_MASKS and _REGISTRY.get(template.name) is not template:
            raise ValueError(f"{template.name!r} is a built-in mask; register yours under another name")
        if template.name in _REGISTRY and not overwrite and _REGISTRY[template.name] is not template:
            raise ValueError(f"mask {template.name!r} is already registered (pass overwrite=True to replace it)")
        _REGISTRY[template.name] = template
    return template


def unregister_mask(name: str) -> None:
    """Remove a custom mask (built-ins cannot be removed); unknown name -> ValueError."""
    _ensure_builtins()
    with _LOCK:
        if name not in _REGISTRY:
            raise ValueError(f"unknown mask {name!r}; valid masks: {', '.join(_REGISTRY)}")
        if name in BUILTIN_MASKS:
            raise ValueError(f"{name!r} is a built-in mask and cannot be unregistered")
        del _REGISTRY[name]


def get_mask(name: str) -> MaskTemplate:
    """Registered template by name; unknown name -> ValueError listing the valid names."""
    _ensure_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown mask {name!r}; valid masks: {', '.join(list_masks())}") from None


def list_masks() -> list[str]:
    """Names of all registered masks (built-ins first, then custom ones in registration order)."""
    _ensure_builtins()
    return list(_REGISTRY)


def _read_rgba(path: Path, *, mask: str) -> np.ndarray:
    if not path.is_file():
        raise MaskSpecError(f"mask {mask!r}: image file {path} not found")
    im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if im is None:
        raise MaskSpecError(f"mask {mask!r}: cannot read image {path}")
    if im.ndim != 3 or im.shape[2] != 4:
        raise MaskSpecError(f"mask {mask!r}: image {path} has no alpha channel (need an RGBA PNG)")
    if im.dtype == np.uint16:
        im = (im // 257).astype(np.uint8)
    return cv2.cvtColor(im, cv2.COLOR_BGRA2RGBA)


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


def load_mask_spec(path: str | Path, *, register: bool = True) -> MaskTemplate:
    """Read a mask spec (``.json``, or ``.toml`` on Python >= 3.11) and its image; registers it by default.

    Spec keys: ``name`` (default: file stem), ``image`` (PNG path relative to the spec), ``anchors``
    (``{anchor: {xy = [x, y], landmark = "jaw_8"}}``), optional ``description``, ``tintable``,
    ``colors``, ``patterns``.  See docs/masks.md.
    """
    path = Path(path)
    if not path.is_file():
        raise MaskSpecError(f"mask spec {path} not found")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib
            spec = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            spec = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, ImportError) as e:
        raise MaskSpecError(f"mask spec {path}: cannot parse: {e}") from None
    if not isinstance(spec, dict):
        raise MaskSpecError(f"mask spec {path}: top level must be a table/object")
    name = spec.get("name", path.stem)
    for key in ("image", "anchors"):
        if key not in spec:
            raise MaskSpecError(f"mask spec {path}: missing required key {key!r}")
    unknown = set(spec) - {"name", "image", "anchors", "description", "tintable", "colors", "patterns"}
    if unknown:
        raise MaskSpecError(f"mask spec {path}: unknown keys {sorted(unknown)}")
    try:
        template = build_template(name, path.parent / spec["image"], spec["anchors"],
                                  description=str(spec.get("description", "")),
                                  tintable=bool(spec.get("tintable", False)),
                                  colors=spec.get("colors", ()), patterns=spec.get("patterns", ("plain",)))
    except MaskSpecError as e:
        raise MaskSpecError(f"mask spec {path}: {e}") from None
    if register:
        register_mask(template, overwrite=True)
    return template


# --------------------------------------------------------------------------------------------- params
#: gray-tone jitter (relative) around a colour's luminance, and bounds of the sampled knobs
TONE_JITTER = 0.08
SHADING_RANGE = (0.6, 1.0)
NOISE_RANGE = (0.008, 0.025)
PLACEMENT_JITTER = 0.03      # +- fraction of the face height for the mask's top edge
WIDTH_JITTER = 0.04          # +- relative width change


@dataclass(frozen=True)
class MaskParams:
    """Everything random about one row's mask (sampled once by :func:`sample_params`).

    mask: registered template name; fit: one of :data:`FITS`; color / color2: RGB in [0,1] (color2 is the
    pattern colour); tone: gray albedo in [0,1] used for grayscale output; pattern: from :data:`PATTERNS`;
    use_color: draw colours on RGB images (else gray tones); shading: 0..1 strength of the face-lit shading;
    noise: relative amplitude of pixel-level fabric noise; noise_seed: seed of that noise;
    top_shift: fraction of face height the top edge moves (+ = down); width_scale: horizontal scale.
    """

    mask: str
    fit: str = "correct"
    color: tuple[float, float, float] = (0.95, 0.95, 0.95)
    color2: tuple[float, float, float] = (0.95, 0.95, 0.95)
    color_name: str = "white"
    tone: float = 0.9
    tone2: float = 0.9
    pattern: str = "plain"
    use_color: bool = False
    shading: float = 0.8
    noise: float = 0.02
    noise_seed: int = 0
    top_shift: float = 0.0
    width_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ValueError(f"unknown fit {self.fit!r}; valid: {', '.join(FITS)}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r}; valid: {', '.join(PATTERNS)}")

    def to_dict(self) -> dict:
        """JSON-able dict (floats rounded to 4 digits)."""
        def r(v: Any) -> Any:
            if isinstance(v, float):
                return round(v, 4)
            if isinstance(v, tuple):
                return [r(x) for x in v]
            return v
        return {k: r(getattr(self, k)) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MaskParams":
        """Inverse of :meth:`to_dict`."""
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**kw)


def _luma(rgb: Sequence[float]) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def sample_params(rng: np.random.Generator, landmarks_points: np.ndarray | None = None, *,
                  masks: Sequence[str] | None = None, fit_probs: Mapping[str, float] | None = None,
                  color: bool = False) -> MaskParams:
    """Draw one row's :class:`MaskParams` from ``rng`` (the row's generator).

    masks: names to choose from (uniformly; default all registered); fit_probs: {fit: probability}
    (default ``{"correct": 1}``; missing fits get 0; must sum to > 0); color: colours for RGB output.
    ``landmarks_points`` ((68, 2) float (x, y)) is only validated (reserved for pose-dependent choices).
    The number and order of draws is fixed, so the result depends only on the rng state and arguments.
    """
    names = list(masks) if masks else list_masks()
    templates = [get_mask(n) for n in names]
    if landmarks_points is not None and np.asarray(landmarks_points).shape != (N_LANDMARKS, 2):
        raise ValueError(f"landmarks_points must be (68, 2), got {np.asarray(landmarks_points).shape}")
    probs = {"correct": 1.0} if fit_probs is None else dict(fit_probs)
    bad = set(probs) - set(FITS)
    if bad:
        raise ValueError(f"unknown fit(s) {sorted(bad)}; valid: {', '.join(FITS)}")
    p = np.array([max(0.0, float(probs.get(f, 0.0))) for f in FITS])
    if p.sum() <= 0:
        raise ValueError(f"fit probabilities must sum to > 0, got {probs}")
    p = p / p.sum()

    u = rng.random(10)                                   # fixed number of draws
    seed = int(rng.integers(0, 2**31 - 1))
    t = templates[min(int(u[0] * len(templates)), len(templates) - 1)]
    fit = FITS[int(np.searchsorted(np.cumsum(p), u[1], side="right").clip(0, len(FITS) - 1))]
    if t.colors:
        w = np.array([c[2] for c in t.colors], np.float64)
        ci = int(np.searchsorted(np.cumsum(w / w.sum()), u[2], side="right").clip(0, len(w) - 1))
        cname, c1, _ = t.colors[ci]
        c2name, c2, _ = t.colors[int(u[3] * len(t.colors)) % len(t.colors)]
        if c2 == c1:  # pattern needs contrast: lighter/darker version of the main colour
            c2 = tuple(float(np.clip(v * 0.45 if _luma(c1) > 0.5 else v + (1 - v) * 0.6, 0, 1)) for v in c1)
    else:
        cname, c1, c2 = "artwork", (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)
    pattern = t.patterns[min(int(u[4] * len(t.patterns)), len(t.patterns) - 1)]
    jitter = 1 + TONE_JITTER * (2 * u[5] - 1)
    tone = float(np.clip(_luma(c1) * jitter, 0.03, 0.98))
    tone2 = float(np.clip(_luma(c2) * jitter, 0.03, 0.98))
    return MaskParams(
        mask=t.name, fit=fit, color=tuple(float(v) for v in c1), color2=tuple(float(v) for v in c2),
        color_name=cname, tone=tone, tone2=tone2, pattern=pattern, use_color=bool(color),
        shading=float(SHADING_RANGE[0] + (SHADING_RANGE[1] - SHADING_RANGE[0]) * u[6]),
        noise=float(NOISE_RANGE[0] + (NOISE_RANGE[1] - NOISE_RANGE[0]) * u[7]), noise_seed=seed,
        top_shift=float(PLACEMENT_JITTER * (2 * u[8] - 1)), width_scale=float(1 + WIDTH_JITTER * (2 * u[9] - 1)),
    )
