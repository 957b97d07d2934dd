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

Everything random lives in the params (see :func:`maskgen.fits.sample_params`); where the mask
sits for each fit is :func:`maskgen.fits.fit_points`. This module imports no registry and keeps
no globals: the template to draw is an argument.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from maskgen.fits import MaskParams, fit_points
from maskgen.imageops import LUMA_WEIGHTS, check_image
from maskgen.points import CHIN, NOSE_TOP, check_points
from maskgen.templates import MaskTemplate

#: supersampling factor of the render canvas (lowered for big masks so the canvas stays <= MAX_CANVAS_SIDE)
SUPERSAMPLE = 4
MAX_CANVAS_SIDE = 1024
#: feather (Gaussian sigma) of the mask edge, in output pixels (on top of the 1-pixel area average)
FEATHER_SIGMA = 0.4
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
_LUMA32 = LUMA_WEIGHTS.astype(np.float32)


@dataclass(frozen=True)
class PreparedTemplate:
    """Per-(template, pattern) pre-processing, kept on the template (``MaskTemplate.cached``).

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


def prepare_template(template: MaskTemplate, pattern: str = "plain") -> PreparedTemplate:
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


# --------------------------------------------------------------------------------------------- rendering
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


def render_mask(image: np.ndarray, points: np.ndarray, template: MaskTemplate,
                params: MaskParams) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``template`` on ``image`` with ``params``.

    image: (H, W) or (H, W, 3) uint8 (RGB); points: (68, 2) float (x, y) pixel coordinates of the image.
    Returns (masked image, same shape/dtype; alpha (H, W) float32 in [0, 1]).  Inputs are not modified;
    the same inputs give the same output.
    """
    check_image(image)
    pts = check_points(points)
    H_img, W_img = image.shape[:2]
    out = image.copy()
    alpha_full = np.zeros((H_img, W_img), np.float32)
    prep = template.cached(("prepared", params.pattern), lambda: prepare_template(template, params.pattern))

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
            luma = premult @ _LUMA32
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
        value = value @ _LUMA32
        blended = region * (1.0 - a) + value
    else:
        blended = region * (1.0 - a[..., None]) + value
    out[y0:y1, x0:x1] = np.clip(np.round(blended * 255.0), 0, 255).astype(np.uint8)
    alpha_full[y0:y1, x0:x1] = a
    return out, alpha_full


__all__ = ["SUPERSAMPLE", "PreparedTemplate", "prepare_template", "render_mask"]
