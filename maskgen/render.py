"""Draw a mask template onto a face (pure: arrays in, arrays out; no I/O, no randomness, no state).

Pipeline of :func:`render_mask`:

1. *fit*: the 68 landmarks are turned into "virtual" landmarks where the mask sits
   (``correct`` = nose bridge to chin; ``nose_exposed`` / ``chin_only`` slide the top edge
   down along the jaw, following the face's own outline);
2. *warp*: every template anchor's target is a weighted mix of those points; the anchors plus
   a ring of margin points (extrapolated with the best-fit affine) are triangulated once per
   template, and the picture is warped piece-wise affinely (per-pixel map + ``cv2.remap``)
   onto a ``SUPERSAMPLE``x canvas, sampling a pre-filtered pyramid level that matches the
   target scale, so pleats and patterns are neither aliased nor blurred away;
3. *downsample*: the canvas holds premultiplied layers; a slight feather blur and area
   averaging give anti-aliased edges without halo;
4. *colour and light*: layers are tinted (gray tones for gray images, colours for colour
   images if asked), lit by a blurred copy of the face's own luminance (exposure + shading),
   roll off softly near white, and receive pixel-level fabric noise seeded from the params;
5. *blend*: ``out = image * (1 - alpha) + premultiplied mask``.

Everything random lives in the params (see :func:`maskgen.masks.sample_params`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from maskgen.qa import FITS  # ways of wearing a mask (MaskedFace-Net style incorrect wear), defined once

if TYPE_CHECKING:  # only for type hints; masks.py imports this module
    from maskgen.masks import MaskParams, MaskTemplate

#: supersampling factor of the render canvas (lowered for big masks so the canvas stays <= MAX_CANVAS_SIDE)
SUPERSAMPLE = 4
MAX_CANVAS_SIDE = 1024
#: feather (Gaussian sigma) of the mask edge, in output pixels (on top of the 1-pixel area average)
FEATHER_SIGMA = 0.4
#: landmark indices used by the fit geometry (dlib 68-point convention)
CHIN, NOSE_TOP, NOSE_BRIDGE, NOSE_BOTTOM, UPPER_LIP, LOWER_LIP = 8, 27, 28, 33, 51, 57
JAW_RIGHT_SIDE = np.arange(0, 9)        # jaw 0 (top, image left) .. 8 (chin)
JAW_LEFT_SIDE = np.arange(16, 7, -1)    # jaw 16 (top, image right) .. 8 (chin)
#: where the top edge goes for incorrect fits, as (landmark a, landmark b, t): height = lerp(h[a], h[b], t)
FIT_TOP = {"nose_exposed": (NOSE_BOTTOM, UPPER_LIP, 0.2), "chin_only": (LOWER_LIP, CHIN, 0.05)}
#: eye guard (correct fit): the mask top stays this far (fraction of face height) below the lowest eye point
EYES = np.arange(36, 48)
EYE_GAP = 0.03
NOSE_TIP, NOSE_GAP = 30, 0.1
#: nose_exposed: the top stays MOUTH_GAP above the higher mouth corner and NOSE_OUT_GAP below the nose tip
MOUTH_CORNERS, MOUTH_GAP, NOSE_OUT_GAP = np.array([48, 54]), 0.08, 0.05
#: points a correctly worn mask must cover (nose tip, nostrils, outer lips) and their margin from the jaw outline
MUST_COVER = np.r_[30:36, 48:60]
SIDE_GAP = 0.06
#: lighting: reference skin albedo (exposure = mean face luminance / this), exposure clip, shading blur
SKIN_ALBEDO = 0.5
EXPOSURE_RANGE = (0.2, 1.9)
SHADE_SIGMA = 0.12          # of the face height (nose top to chin)
SHADE_RANGE = (0.55, 1.5)
KNEE = 0.7                  # values above this roll off softly towards 1
EXPOSURE_GAMMA = 0.75       # exposure = (mean luminance / SKIN_ALBEDO) ** this (bright faces: less blown out)
#: the template pyramid stops at this many pixels wide
MIN_LEVEL_WIDTH = 16
#: the warp map is computed every MAP_STEP canvas pixels and bilinearly upsampled (it is continuous)
MAP_STEP = 2
MIN_AREA_RATIO = 0.0        # a warped triangle smaller than this share of its expected area counts as folded
OUTSIDE = -1e4              # template coordinate for canvas pixels outside every triangle
FIXED_SHIFT = 4             # sub-pixel bits for cv2.fillConvexPoly


@dataclass(frozen=True)
class PreparedTemplate:
    """Per-(template, pattern) pre-processing, cached by the registry (see MaskTemplate.prepared).

    weights: (n_anchor, 68) anchor = weights @ points; src: (n, 2) template (x, y) of anchors then ring points;
    ring_base: (n_ring,) anchor index each ring point hangs from; ring_offset: (n_ring, 2) template offset;
    triangles: (T, 3) int indices into src; outline_triangles: the same without the interior anchors
    (fallback when a pose folds the full mesh); pyramid: layers (h_l, w_l, C) float32 premultiplied, level l
    halves level l-1; tintable: layers are [part of colour 1, part of colour 2, alpha] (else [R, G, B, alpha]).
    """

    weights: np.ndarray
    src: np.ndarray
    ring_base: np.ndarray
    ring_offset: np.ndarray
    triangles: np.ndarray
    outline_triangles: np.ndarray
    pyramid: tuple[np.ndarray, ...]
    tintable: bool


def _ring(anchor_xy: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Margin points around the anchors' convex hull, far enough out to contain all of ``alpha``.

    Returns (base anchor index per ring point, (x, y) offset per ring point).
    """
    hull = cv2.convexHull(anchor_xy.astype(np.float32), returnPoints=False).ravel()
    poly = anchor_xy[hull]
    inside = np.zeros(alpha.shape, np.uint8)
    cv2.fillConvexPoly(inside, np.round(poly).astype(np.int32), 1)
    dist = cv2.distanceTransform((1 - inside).astype(np.uint8), cv2.DIST_L2, 5)
    outside = (alpha > 0) & (inside == 0)
    margin = float(dist[outside].max()) + 3.0 if outside.any() else 3.0
    # mitred offset of the (convex) hull polygon: contains every point within `margin` of it
    centre = poly.mean(axis=0)
    n = len(poly)
    offsets = []
    for i in range(n):
        prev, nxt = poly[i - 1], poly[(i + 1) % n]
        normals = []
        for a, b in ((prev, poly[i]), (poly[i], nxt)):
            e = b - a
            nrm = np.array([e[1], -e[0]]) / max(np.linalg.norm(e), 1e-9)
            if np.dot(nrm, (a + b) / 2 - centre) < 0:
                nrm = -nrm
            normals.append(nrm)
        bis = normals[0] + normals[1]
        bis /= max(np.linalg.norm(bis), 1e-9)
        cos_half = max(float(np.dot(bis, normals[0])), 1 / 3)
        offsets.append(bis * margin / cos_half)
    return hull.astype(np.int64), np.asarray(offsets, np.float64)


def _triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (T, 3) of ``points`` (n, 2) via cv2.Subdiv2D."""
    lo, hi = points.min(axis=0) - 10, points.max(axis=0) + 10
    sub = cv2.Subdiv2D((int(lo[0]), int(lo[1]), int(hi[0] - lo[0]) + 1, int(hi[1] - lo[1]) + 1))
    for p in points:
        sub.insert((float(p[0]), float(p[1])))
    tris = []
    for t in sub.getTriangleList().reshape(-1, 3, 2):
        d = np.linalg.norm(points[None, :, :] - t[:, None, :], axis=2)
        idx = d.argmin(axis=1)
        if np.all(d[np.arange(3), idx] < 1e-3) and len(set(idx.tolist())) == 3:
            tris.append(idx)
    return np.asarray(tris, np.int64)


def prepare_template(template: "MaskTemplate", pattern: str = "plain") -> PreparedTemplate:
    """Triangulation, ring and premultiplied layer pyramid for one template and pattern."""
    img = template.image.astype(np.float32) / 255.0
    a = img[..., 3]
    if template.tintable:
        detail = img[..., :3].mean(axis=2)
        p = template.pattern_layer(pattern)
        layers = np.dstack([a * detail * (1 - p), a * detail * p, a])
    else:
        layers = np.dstack([img[..., :3] * a[..., None], a])
    anchor_xy = template.anchor_xy
    ring_base, ring_offset = _ring(anchor_xy, a)
    src = np.vstack([anchor_xy, anchor_xy[ring_base] + ring_offset])
    pyramid = [np.ascontiguousarray(layers, np.float32)]
    while pyramid[-1].shape[1] // 2 >= MIN_LEVEL_WIDTH:
        prev = pyramid[-1]
        h2, w2 = prev.shape[0] // 2, prev.shape[1] // 2
        pyramid.append(cv2.resize(prev[:h2 * 2, :w2 * 2], (w2, h2), interpolation=cv2.INTER_AREA))
    keep = np.r_[ring_base, np.arange(len(anchor_xy), len(src))]        # hull anchors + ring
    outline = keep[_triangulate(src[keep])]
    return PreparedTemplate(weights=template.anchor_weights, src=src, ring_base=ring_base, ring_offset=ring_offset,
                            triangles=_triangulate(src), outline_triangles=outline, pyramid=tuple(pyramid),
                            tintable=template.tintable)


# --------------------------------------------------------------------------------------------- fit geometry
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
    if fit not in FITS:
        raise ValueError(f"unknown fit {fit!r}; valid: {', '.join(FITS)}")
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
    if fit == "correct":
        # eye guard: when the nose bridge point sits close to (or above) the lowest eye point, slide down
        # but never so far that the nose tip comes out (nose first when the pose makes both impossible)
        target = max(min(h_top, float(h[EYES].min()) - EYE_GAP), min(h_top, h[NOSE_TIP] + NOSE_GAP))
    else:
        a, b, t = FIT_TOP[fit]
        target = h[a] + t * (h[b] - h[a])
        if fit == "nose_exposed":   # smiles lift the mouth corners: keep them under the mask, the nose tip out
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
    jaw = np.arange(17)
    # jaw points slide along their own side of the jaw (the profile's change between the two heights)
    w2[jaw] = w[jaw] + np.where(jaw <= CHIN, hw_r_new[jaw] - hw_r_old[jaw], hw_l_new[jaw] - hw_l_old[jaw])
    mid = (hw_r_new + hw_l_new) / 2
    w2 = mid + (w2 - mid) * width_scale
    return c + H * (h2[:, None] * e_up + w2[:, None] * e_side)


# --------------------------------------------------------------------------------------------- rendering
def _check_inputs(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or not (
            image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"image must be a (H, W) or (H, W, 3) uint8 array, got "
                         f"{getattr(image, 'shape', None)} {getattr(image, 'dtype', type(image))}")
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (68, 2) or not np.all(np.isfinite(pts)):
        raise ValueError(f"points must be a finite (68, 2) array of (x, y), got shape {pts.shape}")
    return pts


def _folds(src: np.ndarray, dst: np.ndarray, tri: np.ndarray) -> bool:
    """True if any triangle flips orientation (or collapses) between template and image."""
    def area(p: np.ndarray) -> np.ndarray:
        a, b, c = p[tri[:, 0]], p[tri[:, 1]], p[tri[:, 2]]
        return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    a_src, a_dst = area(src), area(dst)
    scale = abs(a_dst.sum()) / max(abs(a_src.sum()), 1e-12)
    return bool(np.any(a_dst * np.sign(a_src) <= MIN_AREA_RATIO * scale * np.abs(a_src)))


def _soft_knee(v: np.ndarray) -> np.ndarray:
    """Identity below KNEE, smooth exponential roll-off towards 1 above (C1-continuous)."""
    room = 1.0 - KNEE
    return np.where(v <= KNEE, v, 1.0 - room * np.exp(-(v - KNEE) / room))


def render_mask(image: np.ndarray, points: np.ndarray, template: "MaskTemplate",
                params: "MaskParams") -> tuple[np.ndarray, np.ndarray]:
    """Draw ``template`` on ``image`` with ``params``.

    image: (H, W) or (H, W, 3) uint8 (RGB); points: (68, 2) float (x, y) pixel coordinates of the image.
    Returns (masked image, same shape/dtype; alpha (H, W) float32 in [0, 1]).  Inputs are not modified.
    """
    pts = _check_inputs(image, points)
    H_img, W_img = image.shape[:2]
    out = image.copy()
    alpha_full = np.zeros((H_img, W_img), np.float32)
    prep = template.prepared(params.pattern)

    vp = fit_points(pts, params.fit, params.top_shift, params.width_scale)
    dst_anchor = prep.weights @ vp
    n_anchor = len(dst_anchor)
    src_anchor = prep.src[:n_anchor]
    design = np.hstack([src_anchor, np.ones((n_anchor, 1))])
    affine, *_ = np.linalg.lstsq(design, dst_anchor, rcond=None)      # (3, 2): [x y 1] @ A = dst
    lin = affine[:2].T                                                 # (2, 2) template -> image
    dst = np.vstack([dst_anchor, dst_anchor[prep.ring_base] + prep.ring_offset @ lin.T])
    # a pose can fold the mesh (an inner anchor crossing the outline): then warp by the outline only,
    # and if even that folds, by the best-fit affine
    tri = prep.triangles
    if _folds(prep.src, dst, tri):
        tri = prep.outline_triangles
        if _folds(prep.src, dst, tri):
            tri = prep.triangles
            dst = np.hstack([prep.src, np.ones((len(prep.src), 1))]) @ affine

    x0 = max(0, int(np.floor(dst[:, 0].min())) - 1)
    y0 = max(0, int(np.floor(dst[:, 1].min())) - 1)
    x1 = min(W_img, int(np.ceil(dst[:, 0].max())) + 2)
    y1 = min(H_img, int(np.ceil(dst[:, 1].max())) + 2)
    if x1 <= x0 or y1 <= y0:
        return out, alpha_full
    # supersample small masks (anti-aliasing); big ones (photos) are already fine enough
    S = int(np.clip(MAX_CANVAS_SIDE // max(x1 - x0, y1 - y0), 1, SUPERSAMPLE))
    bw, bh = (x1 - x0) * S, (y1 - y0) * S
    dst_ss = (dst - [x0, y0] + 0.5) * S - 0.5

    # pyramid level whose resolution is just above the target's
    scale = float(np.sqrt(abs(np.linalg.det(lin)))) * S            # template px -> canvas px
    level = int(np.clip(np.floor(np.log2(1.0 / max(scale, 1e-6))), 0, len(prep.pyramid) - 1))
    layers = prep.pyramid[level]
    f = float(2 ** level)
    src_l = (prep.src + 0.5) / f - 0.5

    # per-triangle affine maps (x, y, 1) on a coarse grid (every MAP_STEP canvas pixels) -> template level
    # (x, y); the piece-wise affine map is continuous, so it is bilinearly upsampled to the canvas
    r = MAP_STEP
    mw, mh = -(-bw // r), -(-bh // r)
    dst_m = (dst_ss + 0.5) / r - 0.5
    d = np.concatenate([dst_m[tri], np.ones((len(tri), 3, 1))], axis=2)     # (T, 3, 3)
    ok = np.abs(np.linalg.det(d)) > 1e-9
    coef = np.zeros((len(tri) + 1, 3, 2), np.float64)
    coef[0, 2] = OUTSIDE                                                    # "no triangle" -> transparent
    coef[1:][ok] = np.linalg.solve(d[ok], src_l[tri][ok])
    coef = coef.reshape(len(tri) + 1, 6).astype(np.float32)                 # [ax, ay, bx, by, cx, cy]
    index = np.zeros((mh, mw), np.uint16)
    fixed = np.round(dst_m * (1 << FIXED_SHIFT)).astype(np.int32)
    for t in np.flatnonzero(ok):
        cv2.fillConvexPoly(index, fixed[tri[t]], int(t + 1), cv2.LINE_8, FIXED_SHIFT)
    c = coef[index]                                                          # (mh, mw, 6)
    xs = np.arange(mw, dtype=np.float32)[None, :]
    ys = np.arange(mh, dtype=np.float32)[:, None]
    maps = np.dstack([c[..., 0] * xs + c[..., 2] * ys + c[..., 4], c[..., 1] * xs + c[..., 3] * ys + c[..., 5]])
    if r > 1:
        maps = cv2.resize(maps, (mw * r, mh * r), interpolation=cv2.INTER_LINEAR)[:bh, :bw]
    map_x, map_y = np.ascontiguousarray(maps[..., 0]), np.ascontiguousarray(maps[..., 1])
    canvas = cv2.remap(layers, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if canvas.ndim == 2:
        canvas = canvas[..., None]
    small = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    if FEATHER_SIGMA > 0:   # feather after the area average (cheaper; blur and box filter commute)
        small = cv2.GaussianBlur(small, (0, 0), FEATHER_SIGMA)
    if small.ndim == 2:
        small = small[..., None]
    a = np.clip(small[..., -1], 0.0, 1.0)

    # colour (premultiplied) of the mask, before lighting
    gray_out = image.ndim == 2
    if prep.tintable:
        if gray_out or not params.use_color:
            cols = np.array([[params.tone] * 3, [params.tone2] * 3], np.float32)
        else:
            cols = np.array([params.color, params.color2], np.float32)
        premult = small[..., 0:1] * cols[0] + small[..., 1:2] * cols[1]
    else:
        premult = small[..., :3]
        if gray_out or not params.use_color:
            luma = premult @ np.array([0.299, 0.587, 0.114], np.float32)
            premult = np.repeat(luma[..., None], 3, axis=2)

    # light from the face: exposure (mean luminance under the mask) and shading (blurred luminance)
    face_h = float(np.hypot(*(pts[NOSE_TOP] - pts[CHIN])))
    sigma = max(0.8, SHADE_SIGMA * face_h)
    pad = int(np.ceil(3 * sigma))
    px0, py0 = max(0, x0 - pad), max(0, y0 - pad)
    px1, py1 = min(W_img, x1 + pad), min(H_img, y1 + pad)
    crop = image[py0:py1, px0:px1]
    lum = crop.astype(np.float32) if gray_out else cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    blur = cv2.GaussianBlur(lum / 255.0, (0, 0), sigma)[y0 - py0:y1 - py0, x0 - px0:x1 - px0]
    wsum = float(a.sum())
    if wsum < 1e-6:
        return out, alpha_full
    mean_lum = float((blur * a).sum() / wsum)
    exposure = float(np.clip(mean_lum / SKIN_ALBEDO, *EXPOSURE_RANGE)) ** EXPOSURE_GAMMA
    shade = np.clip(blur / max(mean_lum, 1e-3), *SHADE_RANGE) ** params.shading
    noise = np.random.default_rng(params.noise_seed).standard_normal(a.shape).astype(np.float32)
    light = (exposure * shade * (1.0 + params.noise * noise))[..., None]
    safe_a = np.maximum(a, 1e-6)[..., None]
    value = _soft_knee(premult / safe_a * light) * a[..., None]            # premultiplied, in [0, a]

    region = out[y0:y1, x0:x1].astype(np.float32) / 255.0
    if gray_out:
        value = value @ np.array([0.299, 0.587, 0.114], np.float32)
        blended = region * (1.0 - a) + value
    else:
        blended = region * (1.0 - a[..., None]) + value
    out[y0:y1, x0:x1] = np.clip(np.round(blended * 255.0), 0, 255).astype(np.uint8)
    alpha_full[y0:y1, x0:x1] = a
    return out, alpha_full


def apply_mask(image: np.ndarray, points: np.ndarray, params: "MaskParams",
               template: "MaskTemplate | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw the mask described by ``params`` (template looked up by ``params.mask`` unless given).

    image (H, W) or (H, W, 3) uint8; points (68, 2) (x, y).  Returns (masked image of the same
    shape and dtype, alpha (H, W) float32 in [0, 1]).  Pure: inputs are not modified, same inputs
    give the same output.
    """
    if template is None:
        from maskgen.masks import get_mask  # registry lookup (read-only); deferred to avoid an import cycle
        template = get_mask(params.mask)
    return render_mask(image, points, template, params)


__all__ = ["FITS", "SUPERSAMPLE", "PreparedTemplate", "prepare_template", "fit_points",
           "render_mask", "apply_mask"]
