"""Shared test helpers: small FER2013-format files made on the fly (tests never need FER2013)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

USAGE_CYCLE = ("Training", "Training", "Training", "PublicTest", "PrivateTest")


def fer_csv_text(images: np.ndarray, labels, usages=None, *, newline: str = "\n", quoted: bool = False,
                 extra: dict[str, list[str]] | None = None) -> str:
    """FER2013-format text for (N, 48, 48) uint8 images; ``usages=None`` omits the Usage column."""
    header = ["emotion", "pixels"] + (["Usage"] if usages is not None else []) + list(extra or {})
    lines = [",".join(header)]
    for i, img in enumerate(images):
        pix = " ".join(str(int(v)) for v in np.asarray(img).ravel())
        fields = [str(int(labels[i])), f'"{pix}"' if quoted else pix]
        if usages is not None:
            fields.append(usages[i])
        fields += [col[i] for col in (extra or {}).values()]
        lines.append(",".join(fields))
    return newline.join(lines) + newline


def random_faces(n: int, seed: int = 0) -> np.ndarray:
    """(n, 48, 48) uint8 smooth random images (not faces)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)


@pytest.fixture
def small_fer(tmp_path: Path) -> Path:
    """A 10-row FER2013-format CSV with all three usages."""
    n = 10
    path = tmp_path / "fer2013.csv"
    labels = [i % 7 for i in range(n)]
    usages = [USAGE_CYCLE[i % len(USAGE_CYCLE)] for i in range(n)]
    path.write_text(fer_csv_text(random_faces(n), labels, usages))
    return path


def write_gz(path: Path, text: str) -> Path:
    path.write_bytes(gzip.compress(text.encode(), mtime=0))
    return path
