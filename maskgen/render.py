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

from maskgen.fits import MaskParams, StyleParams, fit_points
from maskgen.imageops import LUMA_WEIGHTS, check_image
from maskgen.points import CHIN, LANDMARK_GROUPS, MUST_COVER, NOSE_TOP, check_points
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
#: light from the visible face only (``light_from="visible"``): pixels with any coverage (above VISIBLE_ALPHA = 0)
#: count as covered; a plane is fitted to the luminance of the uncovered skin (the landmarks' hull without the
#: eyes) within VISIBLE_RING face heights of them, its slopes held towards flat by VISIBLE_RIDGE (a fraction of
#: the ring's weight); fewer than VISIBLE_MIN ring pixels: no shading, exposure from the reference albedo
VISIBLE_ALPHA = 0.0
VISIBLE_RING = 0.25
VISIBLE_RIDGE = 0.02
VISIBLE_MIN = 12
EYE_MARGIN = 0.05           # the eyes (grown by this many face heights) are not skin for that fit
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


# --------------------------------------------------------------------------------------------- styles
#: a homography whose projective scale varies more than this across the template counts as degenerate
#: (it would fold or stretch the picture); the similarity is used instead
MAX_PROJECTIVE_RATIO = 2.0
#: hardness 1 steepens the alpha ramp this much about 0.5 (near binary, still a 1-pixel anti-aliased step)
HARD_GAIN = 10.0
#: rigid warps: an anchor tied to the points a mask must cover (nose, lips) counts up to 1 + this many times
#: in the fit, so that a rigid mask on a turned head still covers the nose rather than the average outline
RIGID_CORE_WEIGHT = 4
#: halo fringe values (premultiplied target) for light and dark halos
HALO_LIGHT, HALO_DARK = 0.97, 0.04


def _place(dst: np.ndarray, pts: np.ndarray, look: StyleParams, face_h: float) -> np.ndarray:
    """Placement jitter: rotate / scale the anchor targets (n, 2) about their centroid, then shift them
    along the face's side and down axes (fractions of the face height)."""
    up = pts[NOSE_TOP] - pts[CHIN]
    e_up = up / max(float(np.hypot(*up)), 1e-9)
    e_side = np.array([-e_up[1], e_up[0]])
    t = np.deg2rad(look.rotate)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) * look.scale
    centre = dst.mean(axis=0)
    return centre + (dst - centre) @ rot.T + face_h * (look.shift_x * e_side - look.shift_y * e_up)


def _project(m: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(n, 2) points through the 3x3 matrix ``m`` (homogeneous)."""
    h = np.hstack([xy, np.ones((len(xy), 1))]) @ m.T
    return h[:, :2] / h[:, 2:3]


def rigid_matrix(src: np.ndarray, dst: np.ndarray, warp: str, hull: np.ndarray | None = None,
                 repeats: np.ndarray | None = None) -> np.ndarray:
    """3x3 template -> image matrix of a rigid warp, least squares over the anchors.

    src, dst: (n, 2) anchor (x, y) in the template and in the image; warp: ``similarity`` (rotation, uniform
    scale, shift) or ``homography``; hull: template points the warp must keep in front of the camera (default
    src): a degenerate homography falls back to the similarity; repeats: (n,) int weight of each anchor.
    """
    if repeats is not None:
        src, dst = np.repeat(src, repeats, axis=0), np.repeat(dst, repeats, axis=0)
    n = len(src)
    design = np.zeros((2 * n, 4))
    design[0::2] = np.column_stack([src[:, 0], -src[:, 1], np.ones(n), np.zeros(n)])
    design[1::2] = np.column_stack([src[:, 1], src[:, 0], np.zeros(n), np.ones(n)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, dst.reshape(-1), rcond=None)
    similarity = np.array([[a, -b, tx], [b, a, ty], [0.0, 0.0, 1.0]])
    if warp == "similarity":
        return similarity
    hom, _ = cv2.findHomography(src.astype(np.float64), dst.astype(np.float64), 0)
    if hom is None:
        return similarity
    w = np.hstack([hull if hull is not None else src, np.ones((len(hull if hull is not None else src), 1))]) @ hom[2]
    if not (np.all(w > 0) or np.all(w < 0)) or np.abs(w).max() > MAX_PROJECTIVE_RATIO * np.abs(w).min():
        return similarity
    return hom


def _rigid_maps(m: np.ndarray, x0: int, y0: int, S: int, bw: int, bh: int, f: float) -> tuple[np.ndarray, np.ndarray]:
    """Canvas (bh, bw) -> template pyramid level coordinates for the rigid warp ``m`` (template -> image)."""
    inv = np.linalg.inv(m)
    xs = ((np.arange(bw, dtype=np.float64) + 0.5) / S - 0.5 + x0)[None, :]
    ys = ((np.arange(bh, dtype=np.float64) + 0.5) / S - 0.5 + y0)[:, None]
    w = inv[2, 0] * xs + inv[2, 1] * ys + inv[2, 2]
    ok = np.abs(w) > 1e-9
    w = np.where(ok, w, 1.0)
    tx = (inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]) / w
    ty = (inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]) / w
    map_x = np.where(ok, (tx + 0.5) / f - 0.5, OUTSIDE).astype(np.float32)
    map_y = np.where(ok, (ty + 0.5) / f - 0.5, OUTSIDE).astype(np.float32)
    return map_x, map_y


def _style_colour(colour: np.ndarray, small: np.ndarray, a: np.ndarray, tintable: bool, look: StyleParams,
                  face_h: float) -> np.ndarray:
    """Un-premultiplied mask colour (h, w, 3) after the style's detail (pleat contrast) and tint gradient."""
    safe = np.maximum(a, 1e-6)
    if look.detail != 1.0:
        if tintable:    # the gray detail layer d (pleats, seams) -> 1 + detail * (d - 1); 0 = flat tint
            d = (small[..., 0] + small[..., 1]) / safe
            colour = colour * ((1.0 + look.detail * (d - 1.0)) / np.maximum(d, 1e-3))[..., None]
        else:           # own colours: contrast about their mean
            mean = (colour * a[..., None]).sum(axis=(0, 1)) / max(float(a.sum()), 1e-6)
            colour = mean + look.detail * (colour - mean)
    if look.gradient:
        ys, xs = np.mgrid[0:a.shape[0], 0:a.shape[1]].astype(np.float32)
        wsum = max(float(a.sum()), 1e-6)
        cx, cy = float((xs * a).sum() / wsum), float((ys * a).sum() / wsum)
        t = np.deg2rad(look.gradient_angle)
        ramp = ((xs - cx) * np.cos(t) + (ys - cy) * np.sin(t)) / max(face_h, 1e-6)
        colour = colour * (1.0 + look.gradient * ramp)[..., None]
    return np.clip(colour, 0.0, None).astype(np.float32)


def _hard_edge(a: np.ndarray, hardness: float) -> np.ndarray:
    """Alpha with a steeper ramp about 0.5: hardness 0 = unchanged, 1 = near binary."""
    if hardness <= 0:
        return a
    gain = 1.0 / (1.0 - (1.0 - 1.0 / HARD_GAIN) * hardness)
    return np.clip((a - 0.5) * gain + 0.5, 0.0, 1.0).astype(np.float32)


def _halo(a: np.ndarray, look: StyleParams, face_h: float) -> np.ndarray:
    """(h, w) float32 weight of the fringe just outside the mask's edge (0 inside the mask)."""
    sigma = max(0.3, look.halo_width * face_h)
    spread = cv2.GaussianBlur(a, (0, 0), sigma)
    return (abs(look.halo) * np.clip(2.0 * spread, 0.0, 1.0) * (1.0 - a)).astype(np.float32)


def _skin(points: np.ndarray, origin: tuple[int, int], shape: tuple[int, ...], face_h: float) -> np.ndarray:
    """(h, w) uint8, 1 on the face's skin as the landmarks outline it in a crop starting at ``origin`` (x, y):
    the convex hull of the 68 points without the eyes (grown by :data:`EYE_MARGIN` face heights)."""
    shift = np.asarray(origin, np.float64)
    skin = np.zeros(shape[:2], np.uint8)
    hull = cv2.convexHull(np.round((points - shift) * 16).astype(np.int32))
    cv2.fillConvexPoly(skin, hull, 1, cv2.LINE_8, 4)
    eyes = np.zeros_like(skin)
    for group in ("right_eye", "left_eye"):
        cv2.fillConvexPoly(eyes, np.round((points[LANDMARK_GROUPS[group]] - shift) * 16).astype(np.int32), 1,
                           cv2.LINE_8, 4)
    grow = 2 * int(np.ceil(EYE_MARGIN * face_h)) + 1
    eyes = cv2.dilate(eyes, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    return skin & (1 - eyes)


def _visible_light(lum: np.ndarray, a: np.ndarray, offset: tuple[int, int], face_h: float,
                   skin: np.ndarray) -> np.ndarray:
    """The face's light over the mask's box from the skin the mask leaves uncovered, only.

    ``lum``: luminance in [0, 1] of the box grown by a margin; ``a``: the mask's coverage in the box, which
    starts at ``offset`` (x, y) in ``lum``; ``skin``: :func:`_skin` on ``lum``'s grid. A plane (least
    squares, slopes held towards flat by :data:`VISIBLE_RIDGE`) is fitted to the uncovered skin pixels
    within :data:`VISIBLE_RING` face heights of the covered ones (all uncovered pixels there when the skin
    gives fewer than :data:`VISIBLE_MIN`) and evaluated over the box: a side light or a dark scene carries
    over, while no pixel under the mask enters (changing them leaves the result unchanged).
    """
    ox, oy = offset
    h, w = a.shape
    covered = np.zeros(lum.shape, np.uint8)
    covered[oy:oy + h, ox:ox + w] = a > VISIBLE_ALPHA
    dist = cv2.distanceTransform(1 - covered, cv2.DIST_L2, 5)
    ring = (covered == 0) & (dist <= VISIBLE_RING * face_h)
    ys, xs = np.nonzero(ring & (skin > 0))
    if len(ys) < VISIBLE_MIN:
        ys, xs = np.nonzero(ring)
    if len(ys) < VISIBLE_MIN:
        return np.full(a.shape, SKIN_ALBEDO, np.float32)
    cx, cy = ox + (w - 1) / 2.0, oy + (h - 1) / 2.0
    design = np.stack([np.ones(len(xs)), (xs - cx) / face_h, (ys - cy) / face_h], axis=1)
    target = lum[ys, xs].astype(np.float64)
    normal = design.T @ design + np.diag([0.0, 1.0, 1.0]) * (VISIBLE_RIDGE * len(xs))
    c = np.linalg.solve(normal, design.T @ target)
    gx = (np.arange(w) + ox - cx) / face_h
    gy = (np.arange(h) + oy - cy) / face_h
    plane = c[0] + c[1] * gx[None, :] + c[2] * gy[:, None]
    return np.clip(plane, 0.02, 1.0).astype(np.float32)


def _soft_knee(v: np.ndarray) -> np.ndarray:
    """Identity below KNEE, smooth exponential roll-off towards 1 above (C1-continuous)."""
    room = 1.0 - KNEE
    return np.where(v <= KNEE, v, 1.0 - room * np.exp(-(v - KNEE) / room))


def render_mask(image: np.ndarray, points: np.ndarray, template: MaskTemplate,
                params: MaskParams) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``template`` on ``image`` with ``params``.

    image: (H, W) or (H, W, 3) uint8 (RGB); points: (68, 2) float (x, y) pixel coordinates of the image.
    Returns (masked image, same shape/dtype; alpha (H, W) float32 in [0, 1]).  Inputs are not modified;
    the same inputs give the same output.  ``params.look`` (a style's :class:`StyleParams`) changes the warp,
    placement, tint, light and edges; None is the classic look.  With a halo, alpha includes the fringe.
    """
    check_image(image)
    pts = check_points(points)
    H_img, W_img = image.shape[:2]
    out = image.copy()
    alpha_full = np.zeros((H_img, W_img), np.float32)
    look = params.look
    pattern = look.pattern if look is not None and look.pattern is not None and template.tintable else params.pattern
    prep = template.cached(("prepared", pattern), lambda: prepare_template(template, pattern))
    face_h = float(np.hypot(*(pts[NOSE_TOP] - pts[CHIN])))

    vp = fit_points(pts, params.fit, params.top_shift, params.width_scale)
    dst_anchor = prep.weights @ vp
    if look is not None:
        dst_anchor = _place(dst_anchor, pts, look, face_h)
    n_anchor = len(dst_anchor)
    src_anchor = prep.src[:n_anchor]
    design = np.hstack([src_anchor, np.ones((n_anchor, 1))])
    affine, *_ = np.linalg.lstsq(design, dst_anchor, rcond=None)      # (3, 2): [x y 1] @ A = dst
    lin = affine[:2].T                                                 # (2, 2) template -> image
    dst = np.vstack([dst_anchor, dst_anchor[prep.ring_base] + prep.ring_offset @ lin.T])
    # a pose can fold the mesh (an inner anchor crossing the outline): then warp by the outline only,
    # and if even that folds, by the best-fit affine
    tri = prep.triangles
    rigid = None
    if look is not None and look.warp != "landmark":
        core = np.rint(RIGID_CORE_WEIGHT * prep.weights[:, MUST_COVER].sum(axis=1)).astype(int)
        rigid = rigid_matrix(src_anchor, dst_anchor, look.warp, prep.src, 1 + core)
        dst = _project(rigid, prep.src)
    elif _folds(prep.src, dst, tri):
        tri = prep.outline_triangles
        if _folds(prep.src, dst, tri):
            tri = prep.triangles
            dst = np.hstack([prep.src, np.ones((len(prep.src), 1))]) @ affine

    # a style's wide feather or halo reaches past the mask: room for it around the box
    pad = 0 if look is None else int(np.ceil(3 * face_h * (max(look.feather or 0.0, 0.0)
                                                          + (look.halo_width if look.halo else 0.0))))
    x0 = max(0, int(np.floor(dst[:, 0].min())) - 1 - pad)
    y0 = max(0, int(np.floor(dst[:, 1].min())) - 1 - pad)
    x1 = min(W_img, int(np.ceil(dst[:, 0].max())) + 2 + pad)
    y1 = min(H_img, int(np.ceil(dst[:, 1].max())) + 2 + pad)
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

    if rigid is not None:   # a style's rigid warp: the inverse matrix per canvas pixel
        scale = float(np.sqrt(abs(np.linalg.det(rigid[:2, :2]) / rigid[2, 2] ** 2))) * S
        level = int(np.clip(np.floor(np.log2(1.0 / max(scale, 1e-6))), 0, len(prep.pyramid) - 1))
        layers, f = prep.pyramid[level], float(2 ** level)
        map_x, map_y = _rigid_maps(rigid, x0, y0, S, bw, bh, f)
    else:
        map_x, map_y = _landmark_maps(prep, dst_ss, tri, src_l, bw, bh)
    canvas = cv2.remap(layers, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if canvas.ndim == 2:
        canvas = canvas[..., None]
    small = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    sigma_edge = FEATHER_SIGMA if look is None or look.feather is None else look.feather * face_h
    if sigma_edge > 0:   # feather after the area average (cheaper; blur and box filter commute)
        small = cv2.GaussianBlur(small, (0, 0), sigma_edge)
    if small.ndim == 2:
        small = small[..., None]
    a = np.clip(small[..., -1], 0.0, 1.0)
    return _finish(image, points, params, prep, small, a, (x0, y0, x1, y1), face_h, out, alpha_full)


def _landmark_maps(prep: PreparedTemplate, dst_ss: np.ndarray, tri: np.ndarray, src_l: np.ndarray, bw: int,
                   bh: int) -> tuple[np.ndarray, np.ndarray]:
    """Canvas (bh, bw) -> template pyramid level coordinates of the piece-wise affine (landmark) warp.

    Per-triangle affine maps (x, y, 1) on a coarse grid (every MAP_STEP canvas pixels) -> template level
    (x, y); the piece-wise affine map is continuous, so it is bilinearly upsampled to the canvas.
    """
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
    return np.ascontiguousarray(maps[..., 0]), np.ascontiguousarray(maps[..., 1])


def _finish(image: np.ndarray, points: np.ndarray, params: MaskParams, prep: PreparedTemplate, small: np.ndarray,
            a: np.ndarray, box: tuple[int, int, int, int], face_h: float, out: np.ndarray,
            alpha_full: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tint, light and blend the warped layers ``small`` (h, w, C) with coverage ``a`` into ``box`` of ``out``."""
    x0, y0, x1, y1 = box
    H_img, W_img = image.shape[:2]
    look = params.look
    # colour (premultiplied) of the mask, before lighting
    gray_out = image.ndim == 2
    if prep.tintable:
        tones = (params.tone, params.tone2)
        colors = (params.color, params.color2)
        if look is not None:
            tones = (params.tone if look.tone is None else look.tone,
                     params.tone2 if look.tone2 is None else look.tone2)
            colors = (params.color if look.color is None else look.color,
                      params.color2 if look.color2 is None else look.color2)
        if gray_out or not params.use_color:
            cols = np.array([[tones[0]] * 3, [tones[1]] * 3], np.float32)
        else:
            cols = np.array(colors, np.float32)
        premult = small[..., 0:1] * cols[0] + small[..., 1:2] * cols[1]
    else:
        premult = small[..., :3]
        if gray_out or not params.use_color:
            luma = premult @ _LUMA32
            premult = np.repeat(luma[..., None], 3, axis=2)

    # light from the face: exposure (mean luminance under the mask) and shading (blurred luminance under it,
    # or, light_from="visible", a plane fitted to the uncovered face around it)
    wsum = float(a.sum())
    if wsum < 1e-6:
        return out, alpha_full
    visible = look is not None and look.light_from == "visible"
    sigma = max(0.8, SHADE_SIGMA * face_h)
    pad = int(np.ceil(VISIBLE_RING * face_h)) + 1 if visible else int(np.ceil(3 * sigma))
    px0, py0 = max(0, x0 - pad), max(0, y0 - pad)
    px1, py1 = min(W_img, x1 + pad), min(H_img, y1 + pad)
    crop = image[py0:py1, px0:px1]
    lum = crop.astype(np.float32) if gray_out else cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if visible:
        blur = _visible_light(lum / 255.0, a, (x0 - px0, y0 - py0), face_h, _skin(points, (px0, py0), lum.shape,
                                                                                  face_h))
    else:
        blur = cv2.GaussianBlur(lum / 255.0, (0, 0), sigma)[y0 - py0:y1 - py0, x0 - px0:x1 - px0]
    mean_lum = float((blur * a).sum() / wsum)
    exposure = float(np.clip(mean_lum / SKIN_ALBEDO, *EXPOSURE_RANGE)) ** EXPOSURE_GAMMA
    shade = np.clip(blur / max(mean_lum, 1e-3), *SHADE_RANGE) ** params.shading
    noise = np.random.default_rng(params.noise_seed).standard_normal(a.shape).astype(np.float32)
    safe_a = np.maximum(a, 1e-6)[..., None]
    if look is None:
        light = (exposure * shade * (1.0 + params.noise * noise))[..., None]
        value = _soft_knee(premult / safe_a * light) * a[..., None]            # premultiplied, in [0, a]
    else:
        colour = _style_colour(premult / safe_a, small, a, prep.tintable, look, face_h)
        lit = 1.0 + look.lighting * (exposure * shade - 1.0)                     # 0: flat tint, 1: classic
        light = (lit * (1.0 + params.noise * look.grain * noise))[..., None]
        v = colour * light
        v = _soft_knee(v) if look.lighting > 0 else np.clip(v, 0.0, 1.0)
        a = _hard_edge(a, look.hardness)
        value = v * a[..., None]

    region = out[y0:y1, x0:x1].astype(np.float32) / 255.0
    if gray_out:
        value = value @ _LUMA32
        blended = region * (1.0 - a) + value
    else:
        blended = region * (1.0 - a[..., None]) + value
    if look is not None and look.halo:
        ring = _halo(a, look, face_h)
        target = (HALO_LIGHT * min(exposure, 1.0)) if look.halo > 0 else HALO_DARK
        w = ring if gray_out else ring[..., None]
        blended = blended * (1.0 - w) + target * w
        a = a + ring * (1.0 - a)
    out[y0:y1, x0:x1] = np.clip(np.round(blended * 255.0), 0, 255).astype(np.uint8)
    alpha_full[y0:y1, x0:x1] = a
    return out, alpha_full


__all__ = ["SUPERSAMPLE", "PreparedTemplate", "prepare_template", "render_mask", "rigid_matrix"]
