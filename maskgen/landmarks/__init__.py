"""68-point facial landmarks: the result type, the source interface, and the dlib source.

- :mod:`maskgen.landmarks.base`: :class:`Landmarks`, the :class:`LandmarkSource` protocol
  (``for_crop`` / ``detect_faces``) and the registry of sources by name;
- :mod:`maskgen.landmarks.prior`: the learned crop prior and its features;
- :mod:`maskgen.landmarks.dlib_chain`: the dlib source (HOG -> prior box -> CNN for crops,
  HOG / CNN for photos), registered as ``"dlib"``.

The point convention itself (indices, named groups, shape tests) is :mod:`maskgen.points`.
"""
from __future__ import annotations

import numpy as np

from maskgen.landmarks.base import Landmarks, LandmarkSource, get_source, register_source, source_names
from maskgen.landmarks.dlib_chain import LandmarkDetector
from maskgen.landmarks.prior import PRIOR_PATH, LandmarkPrior, crop_features, frame_features, load_prior

__all__ = [
    "DEFAULT_SOURCE", "LandmarkDetector", "LandmarkPrior", "LandmarkSource", "Landmarks", "PRIOR_PATH",
    "crop_features", "detect_faces", "frame_features", "get_detector", "get_source", "landmarks_for_crop",
    "load_prior", "register_source", "source_names",
]

DEFAULT_SOURCE = "dlib"
register_source(DEFAULT_SOURCE, LandmarkDetector)


def get_detector(name: str = DEFAULT_SOURCE) -> LandmarkSource:
    """Process-wide landmark source ``name`` (one per worker process; models load on first use)."""
    return get_source(name)


def detect_faces(image: np.ndarray) -> list[Landmarks]:
    """All faces in a photo, by the default source; see :meth:`LandmarkDetector.detect_faces`."""
    return get_detector().detect_faces(image)


def landmarks_for_crop(gray: np.ndarray) -> Landmarks:
    """Landmarks for an aligned crop, by the default source; see :meth:`LandmarkDetector.for_crop`."""
    return get_detector().for_crop(gray)
