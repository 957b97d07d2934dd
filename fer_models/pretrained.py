"""Shipped weights: trained checkpoints that install with the package and load by name.

``fer_models/weights/index.json`` lists them::

    {"fer2013": {"file": "mini_xception_cbam_fer2013.pt", "model": "mini_xception_cbam",
                 "sha256": "...", "trained_on": "...", "data_sha256": "...", "command": "...",
                 "scores": {...}}}

Each file is an inference-only checkpoint (the ``model`` weights, ``config``, ``class_names``,
``epoch``; no optimizer state), written by :func:`strip_checkpoint` via
``scripts/ship_weights.py`` and loaded with ``torch.load(weights_only=True)`` after its
sha256 is checked against the index.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from fer_models.weights import INDEX_NAME, folder as _folder, list_weights, verified_path, weights_index, weights_path

#: Keys an inference-only checkpoint keeps.
KEEP_KEYS = ("version", "model", "config", "class_names", "epoch", "best_val_acc", "best_epoch", "resolved",
             "selected")
MAX_BYTES = 3 * 1024 * 1024


def load_weights(name: str) -> dict[str, Any]:
    """The checkpoint dict of shipped weights ``name`` (sha256 checked, ``weights_only=True``)."""
    from fer_models.train import load_checkpoint

    return load_checkpoint(verified_path(name))


def checkpoint_file(name_or_path: str) -> str:
    """The checkpoint file of shipped weights ``name_or_path`` (sha256 checked), or the path itself.

    Raises:
        ValueError: neither a shipped name nor an existing file.
    """
    if name_or_path in weights_index():
        return str(verified_path(name_or_path))
    if Path(name_or_path).is_file():
        return name_or_path
    raise ValueError(f"{name_or_path!r} is neither shipped weights ({', '.join(list_weights()) or 'none'}) "
                     "nor a checkpoint file")


def strip_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """An inference-only copy of a training checkpoint (the weights to predict with; no optimizer / RNG)."""
    return {k: state[k] for k in KEEP_KEYS if k in state}


def ship(checkpoint: str | os.PathLike, name: str, entry: dict[str, Any], folder: Path | None = None) -> Path:
    """Write ``checkpoint`` stripped as shipped weights ``name`` and record ``entry`` in the index.

    Raises:
        ValueError: the stripped file would exceed :data:`MAX_BYTES`.
    """
    import torch

    from fer_models.train import load_checkpoint
    from maskgen.io import atomic_write

    folder = folder or _folder()
    state = strip_checkpoint(load_checkpoint(checkpoint))
    model = state["config"]["model"]
    path = folder / f"{model}_{name}.pt"
    with atomic_write(path) as tmp:
        torch.save(state, tmp)
    size = path.stat().st_size
    if size > MAX_BYTES:
        path.unlink()
        raise ValueError(f"{checkpoint}: {size} bytes stripped, over the {MAX_BYTES}-byte limit for shipped weights")
    index_path = folder / INDEX_NAME
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    index[name] = {"file": path.name, "model": model, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                   "bytes": size, **entry}
    with atomic_write(index_path) as tmp:
        tmp.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return path


__all__ = ["checkpoint_file", "list_weights", "load_weights", "ship", "strip_checkpoint", "weights_index", "weights_path"]
