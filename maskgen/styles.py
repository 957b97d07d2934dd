"""Mask styles: named bundles of look choices, each with its own sampler (albumentations style).

A :class:`Style` draws a row's :class:`~maskgen.fits.StyleParams` (warp, placement jitter, tone and
light, printed pattern, edges) from the row's *style stream*; :func:`maskgen.render.render_mask`
applies them, purely. Adding a style is one entry in :data:`STYLES`.

Randomness: the classic parameters (:func:`maskgen.fits.sample_params`) keep the row's own generator
``default_rng([seed, row_id])`` exactly as before; the style and its parameters come from a second
generator derived from the same seed (:func:`style_rng`, spawn key :data:`STYLE_STREAM`), so adding
styles never moves a classic row's draws. The default style set is ``("classic",)``: a build without
``--styles`` draws nothing from the style stream and writes today's bytes.
"""
from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from maskgen.fits import StyleParams
from maskgen.imageops import luma
from maskgen.masks import EXTRA_MASKS, list_masks
from maskgen.templates import PATTERNS

__all__ = ["DEFAULT_STYLES", "STYLES", "STYLE_STREAM", "Style", "check_styles", "get_style", "is_default_styles",
           "list_styles", "pick_style", "style_pool", "style_rng"]

#: spawn key of the style stream, appended to the row generator's own (``[seed, row_id]`` -> ``[seed, row_id] + 29``)
STYLE_STREAM = 29
#: what a build samples from when no ``--styles`` is given
DEFAULT_STYLES = ("classic",)
#: printed patterns a style may put on a tintable mask
PRINTS = tuple(p for p in PATTERNS if p != "plain")
#: number of uniforms every sampler draws (fixed, so a style's params depend only on the row's seed)
N_DRAWS = 20


@dataclass(frozen=True)
class Style:
    """One mask style.

    name: ``--styles`` name; description: one line for ``maskgen list-masks``; sample: draws the row's
    :class:`StyleParams` from ``N_DRAWS`` uniforms in [0, 1) (None: the classic look, no style params);
    artwork: the style adds :data:`maskgen.masks.EXTRA_MASKS` to the build's mask pool.
    """

    name: str
    description: str
    sample: Callable[[np.ndarray], StyleParams] | None
    artwork: bool = False


# --------------------------------------------------------------------------------------------- samplers
def _lerp(lo: float, hi: float, u: float) -> float:
    return float(lo + (hi - lo) * u)


def _tint(u_tone: float, u_hue: float, u_sat: float) -> tuple[float, tuple[float, float, float]]:
    """A colour anywhere from near black to near white: (its gray tone, RGB in [0, 1])."""
    value = _lerp(0.08, 0.97, u_tone)
    rgb = tuple(float(v) for v in colorsys.hsv_to_rgb(u_hue, _lerp(0.0, 0.55, u_sat), value))
    return float(np.clip(luma(rgb), 0.03, 0.98)), rgb  # type: ignore[return-value]


def _contrasting(tone: float, rgb: tuple[float, float, float], u: float) -> tuple[float, tuple[float, float, float]]:
    """A second colour that stands out from (tone, rgb): darker on light masks, lighter on dark ones."""
    k = _lerp(0.25, 0.5, u)
    rgb2 = tuple(float(v * k) if tone > 0.5 else float(v + (1 - v) * (1 - k)) for v in rgb)
    return float(np.clip(luma(rgb2), 0.03, 0.98)), rgb2  # type: ignore[return-value]


#: upward placement jitter is this share of the downward one (a mask rides down more than up; up covers the eyes)
UP_SHARE = 0.3


def _jitter(u: np.ndarray, shift: float, rotate: float, scale: tuple[float, float]) -> dict[str, float]:
    """Placement jitter from u[0..3]: sideways +-shift face heights, down to ``shift`` (up to UP_SHARE of it),
    +-rotate degrees, scale in range."""
    return dict(shift_x=shift * (2 * u[0] - 1), shift_y=_lerp(-UP_SHARE * shift, shift, u[1]),
                rotate=rotate * (2 * u[2] - 1), scale=_lerp(*scale, u[3]))


def _flat_hard(u: np.ndarray) -> StyleParams:
    tone, rgb = _tint(u[0], u[1], u[2])
    return StyleParams(lighting=0.0, grain=0.0, detail=0.0, tone=tone, tone2=tone, color=rgb, color2=rgb,
                       pattern="plain", feather=0.0, hardness=1.0)


def _unlit(u: np.ndarray) -> StyleParams:  # noqa: ARG001 (no draws: classic with the face's light taken away)
    return StyleParams(lighting=0.0)


def _visible_lit(u: np.ndarray) -> StyleParams:  # noqa: ARG001 (no draws: classic lit by the visible face only)
    return StyleParams(light_from="visible")


def _rigid(warp: str) -> Callable[[np.ndarray], StyleParams]:
    def sample(u: np.ndarray) -> StyleParams:
        if warp == "homography":   # the other generator's look: rigid picture, flat tint in gray, hard edges
            tone, rgb = _tint(u[0], u[1], u[2])
            return StyleParams(warp=warp, lighting=0.0, grain=0.0, detail=_lerp(0.0, 0.3, u[3]), tone=tone, tone2=tone,
                               color=rgb, color2=rgb, pattern="plain", feather=0.0, hardness=1.0,
                               **_jitter(u[4:8], 0.02, 3.0, (0.97, 1.05)))
        return StyleParams(warp=warp, lighting=_lerp(0.5, 1.0, u[0]), detail=_lerp(0.7, 1.2, u[1]),
                           **_jitter(u[4:8], 0.03, 5.0, (0.97, 1.07)))
    return sample


def _patterned(u: np.ndarray) -> StyleParams:
    tone, rgb = _tint(u[0], u[1], u[2])
    tone2, rgb2 = _contrasting(tone, rgb, u[3])
    return StyleParams(tone=tone, tone2=tone2, color=rgb, color2=rgb2, pattern=PRINTS[int(u[4] * len(PRINTS))],
                       gradient=_lerp(0.0, 0.6, u[5]), gradient_angle=_lerp(0.0, 360.0, u[6]),
                       detail=_lerp(0.5, 1.4, u[7]), lighting=_lerp(0.5, 1.0, u[8]))


def _feathered_halo(u: np.ndarray) -> StyleParams:
    sign = 1.0 if u[0] < 0.6 else -1.0                       # light fringes (bad cut-outs) more often than dark
    return StyleParams(feather=_lerp(0.02, 0.05, u[1]), halo=sign * _lerp(0.35, 0.8, u[2]),
                       halo_width=_lerp(0.03, 0.08, u[3]), lighting=_lerp(0.7, 1.0, u[4]))


def _jittered(u: np.ndarray) -> StyleParams:
    return StyleParams(detail=_lerp(0.6, 1.5, u[4]), lighting=_lerp(0.6, 1.0, u[5]), grain=_lerp(0.5, 2.0, u[6]),
                       **_jitter(u[0:4], 0.05, 6.0, (0.95, 1.1)))


def _mixed(u: np.ndarray) -> StyleParams:
    """Every knob at random: the training style that teaches a model no single look."""
    warp = ("landmark", "landmark", "similarity", "homography")[int(u[0] * 4)]
    tone, rgb = _tint(u[1], u[2], u[3])
    tone2, rgb2 = _contrasting(tone, rgb, u[4])
    printed = u[5] < 0.35
    hard = u[6] < 0.4
    halo = (1.0 if u[7] < 0.6 else -1.0) * _lerp(0.3, 0.7, u[8]) if u[9] < 0.3 else 0.0
    return StyleParams(warp=warp, tone=tone, tone2=tone2, color=rgb, color2=rgb2,
                       pattern=PRINTS[int(u[10] * len(PRINTS))] if printed else None,
                       lighting=_lerp(0.0, 1.0, u[11]), detail=_lerp(0.0, 1.4, u[12]), grain=_lerp(0.0, 2.0, u[13]),
                       gradient=_lerp(0.0, 0.5, u[14]), gradient_angle=_lerp(0.0, 360.0, u[15]),
                       feather=0.0 if hard else _lerp(0.0, 0.06, u[8]), hardness=1.0 if hard else 0.0,
                       halo=halo, halo_width=_lerp(0.03, 0.07, u[9]),
                       **_jitter(u[16:20], 0.04, 5.0, (0.96, 1.08)))


#: every style, in listing order; ``classic`` is today's look exactly
STYLES: dict[str, Style] = {s.name: s for s in (
    Style("classic", "today's look: landmark-following warp, face-lit shading, pleats, soft 0.4 px edge", None),
    Style("flat_hard", "landmark warp, one flat tint from black to white, no pleats or face light, hard edges",
          _flat_hard),
    Style("rigid_homography", "the picture warped rigidly by the homography that best fits the anchors, one flat "
          "tint (gray on gray faces), hard edges (another generator's look); adds the extra artwork", _rigid("homography"), artwork=True),
    Style("rigid_similarity", "the picture moved rigidly by the best-fit similarity, face-lit, small placement "
          "jitter", _rigid("similarity")),
    Style("patterned", "printed patterns (stripes, dots, checks, chevrons, camo) in contrasting colours, tint "
          "gradient, more or less pleat contrast; adds the extra artwork", _patterned, artwork=True),
    Style("feathered_halo", "wide feathered edge with a light or dark fringe outside it (a pasted-on cut-out)",
          _feathered_halo),
    Style("jittered", "placement jitter (shift, rotation, size), pleat contrast and fabric grain varied; adds "
          "the extra artwork", _jittered, artwork=True),
    Style("unlit", "classic without the face-lit shading: the same mask, placement, pleats and edge, its tone "
          "not lit by the face under it (what the shading shows of the covered face)", _unlit),
    Style("visible_lit", "classic lit by the face the mask leaves uncovered (a smooth field fitted around it), "
          "not by the face under it: the lit look without showing the covered face", _visible_lit),
    Style("mixed", "every knob above at random (warp, tint, print, light from the face under the mask, edges, "
          "halo, jitter); adds the extra artwork", _mixed, artwork=True),
)}


def get_style(name: str) -> Style:
    """The :class:`Style` called ``name``; ValueError listing the valid names otherwise."""
    try:
        return STYLES[name]
    except KeyError:
        raise ValueError(f"unknown style {name!r}; valid styles: {', '.join(STYLES)}") from None


def list_styles() -> list[str]:
    """Every style name, in listing order."""
    return list(STYLES)


def check_styles(names: Sequence[str] | None) -> tuple[str, ...] | None:
    """Validate a style set (``--styles`` of every command) before any work.

    Returns the names without duplicates (first occurrence kept), or None for the default set (None,
    or exactly ``("classic",)``: such a build is today's build, byte for byte, and records no style).

    Raises:
        ValueError: an empty set, or unknown names (the message lists the valid ones).
    """
    if names is None:
        return None
    names = tuple(dict.fromkeys(str(n).strip() for n in names))
    if not any(names):
        raise ValueError(f"no styles given; valid styles: {', '.join(STYLES)}")
    if not all(names):
        raise ValueError(f"an empty style name in the list (two commas in a row?); valid styles: {', '.join(STYLES)}")
    bad = [n for n in names if n not in STYLES]
    if bad:
        raise ValueError(f"unknown style{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))}; "
                         f"valid styles: {', '.join(STYLES)}")
    return None if is_default_styles(names) else names


def is_default_styles(names: Sequence[str] | None) -> bool:
    """True for the default style set (None or exactly ``("classic",)``)."""
    return names is None or tuple(names) == DEFAULT_STYLES


def style_rng(rng: np.random.Generator) -> np.random.Generator:
    """The style stream of a row: a generator seeded from ``rng``'s seed (spawn key + :data:`STYLE_STREAM`).

    It depends only on how ``rng`` was seeded (``default_rng([seed, row_id])``), not on its state, and
    drawing from it leaves ``rng`` untouched.
    """
    seq = rng.bit_generator.seed_seq
    if not isinstance(seq, np.random.SeedSequence):
        raise ValueError("the row generator must be seeded (numpy.random.default_rng(seed)) to derive a style stream")
    return np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, STYLE_STREAM),
                                                        pool_size=seq.pool_size))


def pick_style(rng: np.random.Generator, names: Sequence[str]) -> tuple[Style, StyleParams | None]:
    """Draw a row's style (uniformly from ``names``) and its parameters from the style stream ``rng``.

    A fixed number of draws (1 + :data:`N_DRAWS`) whatever the style.
    """
    u = rng.random(1 + N_DRAWS)
    style = get_style(names[min(int(u[0] * len(names)), len(names) - 1)])
    return style, (style.sample(u[1:]) if style.sample is not None else None)


def style_pool(style: Style, masks: Sequence[str] | None) -> list[str]:
    """The mask names a row of ``style`` samples from: the build's (default: :func:`list_masks`), plus
    :data:`EXTRA_MASKS` for styles that add artwork."""
    pool = list(masks) if masks else list_masks()
    if style.artwork:
        pool += [name for name in EXTRA_MASKS if name not in pool]
    return pool
