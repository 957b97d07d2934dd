"""Small pure image helpers shared by the stages: gray conversion and image checks.

Gray is luma (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B), the weights OpenCV's
``COLOR_RGB2GRAY`` uses; colour images are RGB.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

#: BT.601 luma weights for (R, G, B)
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


def luma(rgb: Sequence[float]) -> float:
    """Luma of one (r, g, b) colour (any scale)."""
    return float(LUMA_WEIGHTS[0] * rgb[0] + LUMA_WEIGHTS[1] * rgb[1] + LUMA_WEIGHTS[2] * rgb[2])


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """``image`` if it is (H, W) or (H, W, 3) uint8; ValueError naming ``what`` otherwise."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or not (
            image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"{what} must be a (H, W) or (H, W, 3) uint8 array, got "
                         f"{getattr(image, 'shape', None)} {getattr(image, 'dtype', type(image))}")
    return image


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 luma of an (H, W) (returned as is) or (H, W, 3) RGB / (H, W, 4) RGBA uint8 image."""
    a = np.asarray(image)
    if a.ndim == 2:
        return a
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return cv2.cvtColor(np.ascontiguousarray(a[:, :, :3]), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"expected a (H, W) or (H, W, 3) image, got shape {a.shape}")


__all__ = ["LUMA_WEIGHTS", "check_image", "luma", "to_gray"]
