"""Shipped weights: trained checkpoints that install with the package and load by name.

``fer_models/weights/index.json`` lists them::

    {"fer2013": {"file": "mini_xception_cbam_fer2013.pt", "model": "mini_xception_cbam",
                 "sha256": "...", "trained_on": "...", "data_sha256": "...", "command": "...",
                 "scores": {...}}}

Each file is an inference-only checkpoint (the ``model`` weights, ``config``, ``class_names``,
``epoch``; no optimizer state), written by :meth:`fer_models.checkpoint.Checkpoint.inference_only` via
``scripts/ship_weights.py`` and loaded with ``torch.load(weights_only=True)`` after its
sha256 is checked against the index.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from fer_models.checkpoint import Checkpoint
from maskgen.io import atomic_write
from fer_models.weights import INDEX_NAME, folder as _folder, list_weights, verified_path, weights_index, weights_path

MAX_BYTES = 3 * 1024 * 1024


def load_weights(name: str) -> Checkpoint:
    """The checkpoint of shipped weights ``name`` (sha256 checked, ``weights_only=True``)."""
    return Checkpoint.load(verified_path(name))


def shipped_file(model: str, name: str, folder: Path | None = None) -> Path:
    """The file that shipped weights ``name`` of ``model`` are written to (:func:`ship`)."""
    return (folder or _folder()) / f"{model}_{name}.pt"


def ship(checkpoint: str | os.PathLike, name: str, entry: dict[str, Any], folder: Path | None = None) -> Path:
    """Write ``checkpoint`` stripped as shipped weights ``name`` and record ``entry`` in the index.

    Raises:
        ValueError: the stripped file would exceed :data:`MAX_BYTES`.
    """
    folder = folder or _folder()
    ckpt = Checkpoint.load(checkpoint).inference_only()
    model = ckpt.train_config().model
    path = shipped_file(model, name, folder)
    with atomic_write(path) as tmp:  # too big: nothing replaced (weights shipped before under the name stay)
        ckpt.save(tmp)
        size = tmp.stat().st_size
        if size > MAX_BYTES:
            raise ValueError(f"{checkpoint}: {size} bytes stripped, over the {MAX_BYTES}-byte limit for shipped "
                             "weights")
    index_path = folder / INDEX_NAME
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    index[name] = {"file": path.name, "model": model, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                   "bytes": size, **entry}
    with atomic_write(index_path) as tmp:
        tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return path


__all__ = ["list_weights", "load_weights", "ship", "shipped_file", "weights_index", "weights_path"]
