"""Ways of wearing a mask ("fits") and the per-row mask parameters, in one place.

A :class:`Fit` holds everything one fit means: where the mask's top edge goes (the
geometry of :func:`fit_points`), what the QA check requires (``Fit.passes``), and its
label on contact sheets. Adding a fit is one entry in :data:`FIT_RULES`.

- ``correct``: nose bridge to chin; the top stays below the eyes.
- ``nose_exposed``: the top slides down under the nose (MaskedFace-Net style incorrect wear).
- ``chin_only``: the mask sits on the chin, mouth and nose uncovered.

Randomness follows the albumentations pattern: :func:`sample_params` draws everything
random for one row from that row's ``numpy.random.Generator`` into a :class:`MaskParams`;
the renderer (:mod:`maskgen.render`) then draws it without any randomness of its own.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from maskgen.imageops import luma
from maskgen.masks import get_mask, list_masks
from maskgen.points import (
    CHIN, JAW_LEFT_SIDE, JAW_RIGHT_SIDE, LANDMARK_GROUPS, LOWER_LIP_BOTTOM, MOUTH_CORNERS, MUST_COVER,
    NOSE_BOTTOM, NOSE_BRIDGE, NOSE_TIP, NOSE_TOP, N_POINTS, UPPER_LIP_TOP,
)
from maskgen.templates import PATTERNS

__all__ = ["FITS", "FIT_RULES", "LIGHT_SOURCES", "WARPS", "Fit", "MaskParams", "QAFlags", "StyleParams",
           "check_fit_probs", "fit_points", "get_fit", "sample_params"]

EYES = LANDMARK_GROUPS["eyes"]


@dataclass(frozen=True)
class QAFlags:
    """What the QA check saw (see :mod:`maskgen.qa`); a fit's rule turns them into pass / fail."""

    nose_covered: bool
    mouth_covered: bool
    eyes_visible: bool
    chin_covered: bool


@dataclass(frozen=True)
class Fit:
    """One way of wearing a mask.

    Attributes:
        name: the fit's name (``--fit`` option, sidecar, params).
        label: its tag on contact sheets ("" for the normal fit).
        top: where the mask's top edge goes, as (point a, point b, t): height lerp(h[a], h[b], t)
            in the face frame; None = the nose bridge (with the eye guard).
        passes: the QA rule: which flags this fit needs.
        keep_mouth_covered: the top also stays above the mouth corners (and below the nose tip).
    """

    name: str
    label: str
    top: tuple[int, int, float] | None
    passes: Callable[[QAFlags], bool]
    keep_mouth_covered: bool = False


#: every fit, in sampling order (``--fit correct=0.8,nose_exposed=0.1,chin_only=0.1``)
FIT_RULES: dict[str, Fit] = {f.name: f for f in (
    Fit("correct", "", None,
        lambda q: q.nose_covered and q.mouth_covered and q.eyes_visible),
    Fit("nose_exposed", "nose-out", (NOSE_BOTTOM, UPPER_LIP_TOP, 0.2),
        lambda q: (not q.nose_covered) and q.mouth_covered and q.eyes_visible, keep_mouth_covered=True),
    Fit("chin_only", "chin", (LOWER_LIP_BOTTOM, CHIN, 0.05),
        lambda q: (not q.mouth_covered) and q.chin_covered and q.eyes_visible),
)}
FITS = tuple(FIT_RULES)


def get_fit(name: str) -> Fit:
    """The :class:`Fit` called ``name``; ValueError listing the valid names otherwise."""
    try:
        return FIT_RULES[name]
    except KeyError:
        raise ValueError(f"unknown fit {name!r}; valid: {', '.join(FITS)}") from None


def check_fit_probs(fit_probs: Mapping[str, Any] | None) -> dict[str, float]:
    """Validate fit probabilities (``--fit`` of every command) before any work; return them as floats.

    ``None`` means ``{"correct": 1.0}``. Fits left out get 0; the rest are normalised when sampling.

    Raises:
        ValueError: no fits, an unknown fit name (the message lists the valid ones), a value that is
            not a finite number >= 0, or values that sum to 0 (nothing could ever be drawn).
    """
    if fit_probs is None:
        return {"correct": 1.0}
    probs = dict(fit_probs)
    if not probs:
        raise ValueError(f"no fit probabilities given; valid fits: {', '.join(FITS)}")
    bad = [name for name in probs if name not in FIT_RULES]
    if bad:
        raise ValueError(f"unknown fit{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))}; "
                         f"valid: {', '.join(FITS)}")
    out: dict[str, float] = {}
    for name, value in probs.items():
        try:
            p = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"fit {name!r}: probability {value!r} is not a number") from None
        if not math.isfinite(p) or p < 0:
            raise ValueError(f"fit {name!r}: probability must be a finite number >= 0, got {value!r}")
        out[name] = p
    total = sum(out.values())
    if not total > 0 or not math.isfinite(total):
        raise ValueError(f"fit probabilities must sum to > 0 and be finite, got "
                         f"{', '.join(f'{k}={v:g}' for k, v in out.items())}: give at least one fit a probability > 0")
    return out


# --------------------------------------------------------------------------------------------- fit geometry
#: eye guard (correct fit): the mask top stays this far (fraction of face height) below the lowest eye point,
#: but never so far that the nose tip comes out (NOSE_GAP above it)
EYE_GAP = 0.03
NOSE_GAP = 0.1
#: nose_exposed: the top stays MOUTH_GAP above the higher mouth corner and NOSE_OUT_GAP below the nose tip
MOUTH_GAP, NOSE_OUT_GAP = 0.08, 0.05
#: margin of the points a mask must cover (MUST_COVER) from the jaw outline
SIDE_GAP = 0.06


def _side_profile(h: np.ndarray, w: np.ndarray, side: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Jaw side as increasing heights with matching lateral offsets (for np.interp)."""
    hs, ws = h[side][::-1], w[side][::-1]          # chin first (h ~ 0), going up
    hs = np.maximum.accumulate(hs)
    return hs, ws


def fit_points(points: np.ndarray, fit: str = "correct", top_shift: float = 0.0,
               width_scale: float = 1.0) -> np.ndarray:
    """Virtual landmarks (68, 2) float64 where the mask is placed for ``fit``.

    Face frame: origin chin (8), "up" towards the nose top (27), unit = their distance.  The mask's
    top (nose bridge, 28) moves to the fit's height (plus ``top_shift``, + = down; for ``correct`` at least
    ``EYE_GAP`` below the lowest eye point); every point's height
    is scaled about the chin by the same factor, jaw points slide along the jaw to their new height,
    and other points keep their relative position between the two jaw sides.
    """
    pts = points.astype(np.float64)
    rule = get_fit(fit)
    c = pts[CHIN]
    up = pts[NOSE_TOP] - c
    H = float(np.hypot(*up))
    if H < 1e-6:
        return pts
    e_up = up / H
    e_side = np.array([-e_up[1], e_up[0]])
    rel = (pts - c) / H
    h, w = rel @ e_up, rel @ e_side
    # turned heads: the nose or mouth can stick out past the jaw outline; widen that side to cover them
    for side, sign in ((JAW_RIGHT_SIDE, -1.0), (JAW_LEFT_SIDE, 1.0)):
        s_h, s_w = _side_profile(h, w, side)
        need = sign * (w[MUST_COVER] - np.interp(h[MUST_COVER], s_h, s_w)) + SIDE_GAP   # > 0: too close / outside
        i = int(np.argmax(need))
        if need[i] > 0:
            weight = np.clip(h[side] / max(float(h[MUST_COVER][i]), 1e-3), 0.0, 1.0)   # 0 at the chin
            w[side] += sign * need[i] * weight
    h_top = max(h[NOSE_BRIDGE], 1e-3)
    if rule.top is None:
        # eye guard: when the nose bridge point sits close to (or above) the lowest eye point, slide down
        # but never so far that the nose tip comes out (nose first when the pose makes both impossible)
        target = max(min(h_top, float(h[EYES].min()) - EYE_GAP), min(h_top, h[NOSE_TIP] + NOSE_GAP))
    else:
        a, b, t = rule.top
        target = h[a] + t * (h[b] - h[a])
        if rule.keep_mouth_covered:   # smiles lift the mouth corners: keep them under the mask, the nose tip out
            target = min(max(target, float(h[MOUTH_CORNERS].max()) + MOUTH_GAP), h[NOSE_TIP] - NOSE_OUT_GAP)
    k = max(0.05, (target - top_shift) / h_top)
    h2 = np.where(h > 0, h * k, h)
    r_h, r_w = _side_profile(h, w, JAW_RIGHT_SIDE)
    l_h, l_w = _side_profile(h, w, JAW_LEFT_SIDE)
    hw_r_old, hw_r_new = np.interp(h, r_h, r_w), np.interp(h2, r_h, r_w)
    hw_l_old, hw_l_new = np.interp(h, l_h, l_w), np.interp(h2, l_h, l_w)
    # lateral position as a fraction between the jaw sides, kept at the new height
    span_old = np.where(np.abs(hw_l_old - hw_r_old) < 1e-6, 1e-6, hw_l_old - hw_r_old)
    frac = (w - hw_r_old) / span_old
    w2 = hw_r_new + frac * (hw_l_new - hw_r_new)
    jaw = LANDMARK_GROUPS["jaw"]
    # jaw points slide along their own side of the jaw (the profile's change between the two heights)
    w2[jaw] = w[jaw] + np.where(jaw <= CHIN, hw_r_new[jaw] - hw_r_old[jaw], hw_l_new[jaw] - hw_l_old[jaw])
    mid = (hw_r_new + hw_l_new) / 2
    w2 = mid + (w2 - mid) * width_scale
    return c + H * (h2[:, None] * e_up + w2[:, None] * e_side)


# --------------------------------------------------------------------------------------------- params
#: gray-tone jitter (relative) around a colour's luminance, and bounds of the sampled knobs
TONE_JITTER = 0.08
SHADING_RANGE = (0.6, 1.0)
NOISE_RANGE = (0.008, 0.025)
PLACEMENT_JITTER = 0.03      # +- fraction of the face height for the mask's top edge
WIDTH_JITTER = 0.04          # +- relative width change


#: how the template is warped onto the face: ``landmark`` = piece-wise affine through every anchor (today's
#: look); ``similarity`` / ``homography`` = the whole picture moved rigidly, by the similarity or homography that
#: best fits the anchors (least squares), so it does not follow the jaw
WARPS = ("landmark", "similarity", "homography")
#: where a lit mask reads its light (:attr:`StyleParams.light_from`): ``face`` = the face under the mask (classic),
#: ``visible`` = only the face the mask leaves uncovered
LIGHT_SOURCES = ("face", "visible")


@dataclass(frozen=True)
class StyleParams:
    """How one row's mask looks beyond :class:`MaskParams`: sampled by a style (:mod:`maskgen.styles`),
    applied by :func:`maskgen.render.render_mask`. The defaults describe the classic look.

    warp: one of :data:`WARPS`.
    shift_x, shift_y: placement jitter, fraction of the face height (nose top to chin) along the face's
        side axis (subject's left = image right on an upright face) and downwards; rotate: degrees
        (clockwise in the image); scale: size factor. All about the anchors' centroid.
    lighting: 0 = flat tint (no light taken from the face), 1 = classic face-lit shading; grain: factor on
        the fabric noise.
    light_from: where that light is read: ``face`` (classic: the blurred luminance of the face under the mask,
        which shows some of the covered face) or ``visible`` (a smooth field fitted to the face the mask leaves
        uncovered around it: nothing under the mask shows through); see :data:`LIGHT_SOURCES`.
    detail: the artwork's own pleats, seams and shading: 0 = flat tint, 1 = as drawn, > 1 = more contrast.
    tone, tone2, color, color2: replace the template colour's gray tone / RGB (None: keep the sampled ones).
    pattern: printed pattern replacing the sampled one (tintable masks; None: keep).
    gradient: tint gradient across the mask, relative change per face height; gradient_angle: its direction, degrees.
    feather: edge blur sigma as a fraction of the face height (None: classic 0.4 px); hardness: 0 = edges as
        rendered, 1 = near binary alpha.
    halo: a fringe just outside the mask edge, -1 (dark) .. 1 (light), 0 = none; halo_width: its width, a fraction
        of the face height.
    """

    warp: str = "landmark"
    shift_x: float = 0.0
    shift_y: float = 0.0
    rotate: float = 0.0
    scale: float = 1.0
    lighting: float = 1.0
    light_from: str = "face"
    grain: float = 1.0
    detail: float = 1.0
    tone: float | None = None
    tone2: float | None = None
    color: tuple[float, float, float] | None = None
    color2: tuple[float, float, float] | None = None
    pattern: str | None = None
    gradient: float = 0.0
    gradient_angle: float = 0.0
    feather: float | None = None
    hardness: float = 0.0
    halo: float = 0.0
    halo_width: float = 0.05

    def __post_init__(self) -> None:
        if self.warp not in WARPS:
            raise ValueError(f"unknown warp {self.warp!r}; valid: {', '.join(WARPS)}")
        if self.light_from not in LIGHT_SOURCES:
            raise ValueError(f"unknown light source {self.light_from!r}; valid: {', '.join(LIGHT_SOURCES)}")
        if self.pattern is not None and self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r}; valid: {', '.join(PATTERNS)}")
        if not (self.scale > 0 and 0 <= self.lighting <= 1 and self.detail >= 0 and 0 <= self.hardness <= 1
                and -1 <= self.halo <= 1 and self.halo_width > 0 and (self.feather is None or self.feather >= 0)):
            raise ValueError(f"style parameters out of range: {self}")

    def to_dict(self) -> dict:
        """JSON-able dict (floats rounded to 4 digits; None kept). ``light_from`` only when it is not the
        classic ``face``, so the sidecars of styles made before it existed keep their bytes."""
        return {k: _rounded(getattr(self, k)) for k in self.__dataclass_fields__
                if not (k == "light_from" and self.light_from == "face")}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StyleParams":
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()
                      if k in cls.__dataclass_fields__})


def _rounded(v: Any) -> Any:
    """Floats rounded to 4 digits, tuples as lists (JSON), the rest as is."""
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, tuple):
        return [_rounded(x) for x in v]
    return v


@dataclass(frozen=True)
class MaskParams:
    """Everything random about one row's mask (sampled once by :func:`sample_params`).

    mask: registered template name; fit: one of :data:`FITS`; color / color2: RGB in [0,1] (color2 is the
    pattern colour); tone: gray albedo in [0,1] used for grayscale output; pattern: from :data:`PATTERNS`;
    use_color: draw colours on RGB images (else gray tones); shading: 0..1 strength of the face-lit shading;
    noise: relative amplitude of pixel-level fabric noise; noise_seed: seed of that noise;
    top_shift: fraction of face height the top edge moves (+ = down); width_scale: horizontal scale.
    style: the style that drew the row (:mod:`maskgen.styles`), None when no style set was asked for (the
    classic look; then neither field is written by :meth:`to_dict`, so default sidecars keep their bytes);
    look: that style's :class:`StyleParams` (None = classic).
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
    style: str | None = None
    look: StyleParams | None = None

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ValueError(f"unknown fit {self.fit!r}; valid: {', '.join(FITS)}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r}; valid: {', '.join(PATTERNS)}")

    def to_dict(self) -> dict:
        """JSON-able dict (floats rounded to 4 digits); ``style`` and ``look`` only when a style was drawn."""
        d = {k: _rounded(getattr(self, k)) for k in self.__dataclass_fields__ if k not in ("style", "look")}
        if self.style is not None:
            d["style"] = self.style
            d["look"] = self.look.to_dict() if self.look is not None else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MaskParams":
        """Inverse of :meth:`to_dict`."""
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()
              if k in cls.__dataclass_fields__ and k != "look"}
        if d.get("look") is not None:
            kw["look"] = StyleParams.from_dict(d["look"])
        return cls(**kw)


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
    if landmarks_points is not None and np.asarray(landmarks_points).shape != (N_POINTS, 2):
        raise ValueError(f"landmarks_points must be (68, 2), got {np.asarray(landmarks_points).shape}")
    probs = check_fit_probs(fit_probs)
    p = np.array([probs.get(f, 0.0) for f in FITS])
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
            c2 = tuple(float(np.clip(v * 0.45 if luma(c1) > 0.5 else v + (1 - v) * 0.6, 0, 1)) for v in c1)
    else:
        cname, c1, c2 = "artwork", (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)
    pattern = t.patterns[min(int(u[4] * len(t.patterns)), len(t.patterns) - 1)]
    jitter = 1 + TONE_JITTER * (2 * u[5] - 1)
    tone = float(np.clip(luma(c1) * jitter, 0.03, 0.98))
    tone2 = float(np.clip(luma(c2) * jitter, 0.03, 0.98))
    return MaskParams(
        mask=t.name, fit=fit, color=tuple(float(v) for v in c1), color2=tuple(float(v) for v in c2),
        color_name=cname, tone=tone, tone2=tone2, pattern=pattern, use_color=bool(color),
        shading=float(SHADING_RANGE[0] + (SHADING_RANGE[1] - SHADING_RANGE[0]) * u[6]),
        noise=float(NOISE_RANGE[0] + (NOISE_RANGE[1] - NOISE_RANGE[0]) * u[7]), noise_seed=seed,
        top_shift=float(PLACEMENT_JITTER * (2 * u[8] - 1)), width_scale=float(1 + WIDTH_JITTER * (2 * u[9] - 1)),
    )
