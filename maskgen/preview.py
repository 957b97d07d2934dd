"""Contact sheets: originals beside masked faces, labelled, upscaled enough to see.

:func:`contact_sheet` is pure (arrays in, an RGB array out); write it with
:func:`maskgen.io.write_image`.  Used by ``maskgen preview``, ``maskgen demo`` and the README picture.
"""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from maskgen.fits import get_fit

__all__ = ["contact_sheet", "preview_table"]

#: layout constants (pixels of the sheet)
GAP = 2                    # between the original and the masked copy
MARGIN = 6                 # around every cell
LABEL_HEIGHT = 14
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.36
BACKGROUND = (255, 255, 255)
TEXT_COLOR = (20, 20, 20)
POINT_COLOR = (255, 64, 32)


def _to_rgb(image: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
        raise ValueError(f"{what}: expected (H, W) or (H, W, 3) uint8, got {a.shape} {a.dtype}")
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a


def _fit(image: np.ndarray, h: int, w: int, scale: int) -> tuple[np.ndarray, float, int, int]:
    """Upscale ``image`` by ``scale`` (nearest: pixels stay visible) and centre it in an (h, w) box."""
    ih, iw = image.shape[:2]
    s = min(h / ih, w / iw, float(scale))
    nh, nw = max(1, int(round(ih * s))), max(1, int(round(iw * s)))
    interp = cv2.INTER_NEAREST if s >= 1 else cv2.INTER_AREA
    big = cv2.resize(image, (nw, nh), interpolation=interp)
    box = np.full((h, w, 3), BACKGROUND, np.uint8)
    oy, ox = (h - nh) // 2, (w - nw) // 2
    box[oy:oy + nh, ox:ox + nw] = big
    return box, s, ox, oy


def contact_sheet(originals: Sequence[np.ndarray], masked: Sequence[np.ndarray], labels: Sequence[str] | None = None,
                  *, points: Sequence[np.ndarray | None] | None = None, scale: int = 4, cols: int = 8) -> np.ndarray:
    """Grid of (original | masked) pairs with a label under each pair.

    originals, masked: equal-length sequences of (H, W) or (H, W, 3) uint8 images (RGB);
    labels: one short text per pair (e.g. "surgical correct"); points: optional (68, 2) (x, y)
    landmarks per pair (or None), drawn as dots on the original; scale: upscaling factor;
    cols: pairs per row.  Returns an (H', W', 3) uint8 RGB image.
    """
    n = len(originals)
    if len(masked) != n:
        raise ValueError(f"{n} originals but {len(masked)} masked images")
    if n == 0:
        raise ValueError("contact_sheet needs at least one image")
    labels = list(labels) if labels is not None else [""] * n
    if len(labels) != n:
        raise ValueError(f"{n} images but {len(labels)} labels")
    if points is not None and len(points) != n:
        raise ValueError(f"{n} images but {len(points)} landmark arrays")
    if scale < 1 or cols < 1:
        raise ValueError(f"scale and cols must be >= 1, got {scale}, {cols}")
    orig = [_to_rgb(im, f"originals[{i}]") for i, im in enumerate(originals)]
    mask = [_to_rgb(im, f"masked[{i}]") for i, im in enumerate(masked)]
    h = max(im.shape[0] for im in orig + mask) * scale
    w = max(im.shape[1] for im in orig + mask) * scale
    cell_w, cell_h = 2 * w + GAP + 2 * MARGIN, h + LABEL_HEIGHT + 2 * MARGIN
    cols = min(cols, n)
    rows = -(-n // cols)
    sheet = np.full((rows * cell_h, cols * cell_w, 3), BACKGROUND, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = r * cell_h + MARGIN, c * cell_w + MARGIN
        left, s, ox, oy = _fit(orig[i], h, w, scale)
        if points is not None and points[i] is not None:
            pts = np.asarray(points[i], np.float64)
            for px, py in pts:
                centre = (int(round(ox + (px + 0.5) * s - 0.5)), int(round(oy + (py + 0.5) * s - 0.5)))
                cv2.circle(left, centre, max(1, int(scale // 3)), POINT_COLOR, -1, cv2.LINE_AA)
        right = _fit(mask[i], h, w, scale)[0]
        sheet[y:y + h, x:x + w] = left
        sheet[y:y + h, x + w + GAP:x + 2 * w + GAP] = right
        text = str(labels[i])
        max_chars = max(4, int((2 * w + GAP) / (FONT_SCALE * 20)))
        if len(text) > max_chars:
            text = text[:max_chars - 1] + "~"
        cv2.putText(sheet, text, (x, y + h + LABEL_HEIGHT - 3), FONT, FONT_SCALE, TEXT_COLOR, 1, cv2.LINE_AA)
    return sheet


def preview_table(images: np.ndarray, n: int = 64, *, seed: int = 0, config: Any = None,
                  draw_landmarks: bool = False, cols: int = 8, scale: int = 4) -> tuple[np.ndarray, list[Any]]:
    """Mask ``n`` randomly chosen rows of ``images`` ((N, H, W) uint8) and make their contact sheet.

    Rows are chosen with ``default_rng(seed)``; row ``i`` is masked exactly as ``build-smfer`` masks it
    (``maskgen.pipeline.mask_face(images[i], i, config)``; default config ``BuildConfig(seed=seed)``).
    Labels: mask, fit, and "QA!" when the QA check failed.  Returns (sheet (H', W', 3) uint8 RGB,
    the rows' :class:`maskgen.pipeline.RowResult` objects).
    """
    from maskgen.pipeline import BuildConfig, mask_face, resolve_masks

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    # register custom specs and fail early on unknown names, as build-smfer does
    config = resolve_masks(config if config is not None else BuildConfig(seed=seed))
    rows = np.sort(np.random.default_rng(seed).choice(len(images), size=min(n, len(images)), replace=False))
    results = [mask_face(images[i], int(i), config) for i in rows]
    labels = []
    for i, r in zip(rows, results):
        if r.params is None:
            labels.append(f"#{i} {r.status}")
            continue
        label = get_fit(r.params.fit).label
        fit = f" {label}" if label else ""
        qa_flag = "" if r.qa is None or r.qa.passed else " QA!"
        labels.append(f"{r.params.mask}{fit}{qa_flag}")
    points = [r.landmarks.points if (draw_landmarks and r.landmarks is not None) else None for r in results]
    sheet = contact_sheet([images[i] for i in rows], [r.image for r in results], labels,
                          points=points if draw_landmarks else None, scale=scale, cols=cols)
    return sheet, results
