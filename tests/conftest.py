"""Shared test helpers: small FER2013-format files made on the fly (tests never need FER2013)."""
from __future__ import annotations

import gzip
import os
import threading
import time
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


#: The split cycle of the training toy files: of every 6 rows, 4 train, 1 val (PublicTest), 1 test.
TRAIN_USAGE_CYCLE = ("Training", "Training", "Training", "Training", "PublicTest", "PrivateTest")
#: The model the training tests train.
TRAIN_MODEL = "mini_xception"


def write_train_csv(path: Path, n: int, seed: int = 0) -> Path:
    """Learnable toy FER2013 CSV of ``n`` rows: class c has a bright horizontal band at rows 6c..6c+5."""
    rng = np.random.default_rng(seed)
    lines = ["emotion,pixels,Usage"]
    for i in range(n):
        label = i % 7
        img = rng.integers(0, 80, (48, 48))
        img[6 * label:6 * label + 6] += 170
        lines.append(f"{label},{' '.join(map(str, img.reshape(-1)))},{TRAIN_USAGE_CYCLE[i % len(TRAIN_USAGE_CYCLE)]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def train_config(csv: Path, out: Path, recipe: str = "paper", **kw):  # noqa: ANN201 - TrainConfig, imported lazily
    """A small, quiet, one-thread :class:`~fer_models.config.TrainConfig` of :data:`TRAIN_MODEL` on ``csv``."""
    from fer_models.config import TrainConfig

    base = dict(data=str(csv), out=str(out), model=TRAIN_MODEL, batch_size=8, epochs=2, progress=False, threads=1)
    base.update(kw)
    return TrainConfig.from_recipe(recipe, **base)


def write_gz(path: Path, text: str) -> Path:
    path.write_bytes(gzip.compress(text.encode(), mtime=0))
    return path


def bomb_png(path: Path, width: int = 50000, height: int = 50000) -> Path:
    """A small PNG whose header declares width x height gray pixels (a decompression bomb: only a few rows
    of data follow; decoding would need width * height bytes before noticing)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (4 * (width + 1)), 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (to show that a command left its inputs alone)."""
    import hashlib

    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


class Unblock:
    """A watchdog for a command that may block reading the FIFO ``fifo``: after ``after`` seconds it opens the
    FIFO for writing, so a stuck read ends (``fired`` is then True and the test fails) instead of hanging the
    run. ``after`` is long: a command that is merely slow on a loaded machine must not count as blocked."""

    def __init__(self, fifo: Path, after: float = 30.0) -> None:
        self.fifo, self.fired, self.stop = fifo, False, threading.Event()
        threading.Thread(target=self._run, args=(after,), daemon=True).start()

    def _run(self, after: float) -> None:
        if self.stop.wait(after):
            return
        self.fired = True
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.close(os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK))
                return
            except OSError:  # no reader yet
                time.sleep(0.05)

    def __enter__(self) -> "Unblock":
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()


def fifo(path: Path) -> Path:
    """A FIFO at ``path`` (its folder made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def error_line(result, *needles: str, prog: str) -> str:
    """The CliRunner ``result`` was refused: exit 2 and one ``PROG: error:`` line holding every needle; returns it."""
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error:"), result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
