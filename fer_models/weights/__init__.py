"""Trained weights that install with the package: the index (``index.json``), names and files.

Torch-free, and importing nothing else of fer_models, so that both ``fer_models.train`` (``--init
NAME``) and ``fer_models.pretrained`` (loading, shipping) can use it. See fer_models.pretrained.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

INDEX_NAME = "index.json"


def folder() -> Path:
    """The folder the shipped weight files and the index live in."""
    return Path(str(resources.files(__name__)))


def weights_index() -> dict[str, dict[str, Any]]:
    """Name -> entry of every shipped weight file (empty if none ship)."""
    path = folder() / INDEX_NAME
    return json.loads(path.read_text()) if path.is_file() else {}


def list_weights() -> list[str]:
    """Sorted names of the shipped weights."""
    return sorted(weights_index())


def weights_path(name: str) -> Path:
    """Path of shipped weights ``name``; ValueError listing the known names otherwise."""
    index = weights_index()
    if name not in index:
        known = ", ".join(sorted(index)) or "none"
        raise ValueError(f"no shipped weights named {name!r}; shipped: {known}")
    return folder() / index[name]["file"]


def verified_path(name: str) -> Path:
    """:func:`weights_path` after checking the file's sha256 against the index (ValueError if it differs)."""
    path = weights_path(name)
    expected = weights_index()[name]["sha256"]
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected:
        raise ValueError(f"{path}: sha256 {actual[:12]}... does not match the index ({expected[:12]}...)")
    return path


__all__ = ["INDEX_NAME", "folder", "list_weights", "verified_path", "weights_index", "weights_path"]
