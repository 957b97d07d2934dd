"""Locate files that ship with maskgen or with its dependencies.

Nothing here is loaded at import time; callers ask for paths when they need them.
"""
from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path

#: model files shipped by the ``face-recognition-models`` package
SHAPE_PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
CNN_FACE_DETECTOR = "mmod_human_face_detector.dat"


def asset_dir() -> Path:
    """Folder holding the built-in mask templates (``assets/masks`` in the repository)."""
    return Path(str(importlib.resources.files("maskgen.assets"))) / "masks"


def dlib_model_path(name: str) -> Path:
    """Path of a model file from ``face-recognition-models``.

    The package's ``__init__`` imports ``pkg_resources`` (gone from new setuptools),
    so we find its folder with ``find_spec`` without importing it.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "face-recognition-models is not installed: pip install face-recognition-models"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"{name} not found in face-recognition-models ({list(spec.submodule_search_locations)})")
