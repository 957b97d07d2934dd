"""What every landmark source returns (:class:`Landmarks`) and the interface a source implements.

A *landmark source* finds the 68 points of the convention (:mod:`maskgen.points`) on faces:

- ``for_crop(gray, key=None)``: one aligned face crop (a FER2013 row) -> one :class:`Landmarks`,
  always (with ``accepted=False`` and its ``source`` tag when no plausible shape was found);
- ``detect_faces(image, key=None)``: any photo -> every face found, ``[]`` if none.

``key`` names the row (or file) being processed, for sources that look faces up rather than
detect them. The dlib chain (:mod:`maskgen.landmarks.dlib_chain`) is the built-in source;
supplied points (:mod:`maskgen.landmarks.supplied`) wrap it; another detector is a class with
these two methods, registered with :func:`register_source` and chosen by name in :func:`get_source`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from maskgen.points import LANDMARK_GROUPS

__all__ = ["Landmarks", "LandmarkSource", "get_source", "register_source", "source_names"]


@dataclass(frozen=True)
class Landmarks:
    """68 facial landmarks of one face.

    ``points`` is (68, 2) float32 in (x, y) order, pixel coordinates of the input
    image. ``box`` is (left, top, right, bottom) in the same coordinates.
    ``score`` is the Procrustes distance to the mean face shape (lower = better),
    ``accepted`` whether the shape passed the plausibility checks.
    """

    points: np.ndarray
    source: str
    score: float
    accepted: bool
    box: tuple[float, float, float, float]
    #: detector confidence (HOG / CNN score) where a detector produced the box, else nan
    confidence: float = field(default=float("nan"), compare=False)
    #: face evidence of a crop: how face-like its best plausibly placed HOG window is (higher =
    #: more face-like; see maskgen.landmarks.dlib_chain.EVIDENCE_FLOOR), nan where not measured
    evidence: float = field(default=float("nan"), compare=False)

    def group(self, name: str) -> np.ndarray:
        """(k, 2) float32 points of a named group (see :data:`LANDMARK_GROUPS`)."""
        try:
            idx = LANDMARK_GROUPS[name]
        except KeyError:
            raise ValueError(f"unknown landmark group {name!r}; valid: {sorted(LANDMARK_GROUPS)}") from None
        return self.points[idx]


@runtime_checkable
class LandmarkSource(Protocol):
    """A source of 68-point landmarks (see the module docstring)."""

    def for_crop(self, gray: np.ndarray, key: int | str | None = None) -> Landmarks:
        """Landmarks of an aligned face crop ((H, W) uint8); never raises for a valid image.

        ``key`` names the row or file (a source of supplied points looks it up; detectors ignore it).
        """
        ...

    def detect_faces(self, image: np.ndarray, key: int | str | None = None) -> list[Landmarks]:
        """Every face in a photo ((H, W) or (H, W, 3) uint8 RGB), left to right; [] if none."""
        ...


#: name -> factory; one instance per process per name (models load lazily, once per worker)
_FACTORIES: dict[str, Callable[[], LandmarkSource]] = {}
_INSTANCES: dict[str, LandmarkSource] = {}


def register_source(name: str, factory: Callable[[], LandmarkSource], *, overwrite: bool = False) -> None:
    """Make ``factory()`` available as landmark source ``name``."""
    if name in _FACTORIES and not overwrite:
        raise ValueError(f"landmark source {name!r} is already registered")
    _FACTORIES[name] = factory
    _INSTANCES.pop(name, None)


def source_names() -> list[str]:
    """Names of the registered landmark sources."""
    return sorted(_FACTORIES)


def get_source(name: str) -> LandmarkSource:
    """The process-wide instance of source ``name`` (created on first use)."""
    if name not in _INSTANCES:
        try:
            factory = _FACTORIES[name]
        except KeyError:
            raise ValueError(f"unknown landmark source {name!r}; known: {', '.join(source_names())}") from None
        _INSTANCES[name] = factory()
    return _INSTANCES[name]
