"""A small end-to-end example on faces that scikit-image ships (no download, no FER2013 needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from maskgen.dataset import SIDE, USAGES, FerTable, read_fer_csv, write_fer_csv

#: skimage.data.lfw_subset(): the first 100 of its 200 images are faces
LFW_FACES = 100
#: the demo faces carry no expression labels; every row gets "neutral"
DEMO_LABEL = 6


def lfw_faces(rows: int = LFW_FACES) -> np.ndarray:
    """(rows, 48, 48) uint8 real face crops: scikit-image's LFW subset, upscaled from 25x25."""
    try:
        from skimage.data import lfw_subset
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError('the demo needs scikit-image: pip install "maskgen[demo]"') from exc
    import cv2

    if not 1 <= rows <= LFW_FACES:
        raise ValueError(f"rows must be 1..{LFW_FACES}, got {rows}")
    faces = lfw_subset()[:rows]
    return np.stack([
        cv2.resize(np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8), (SIDE, SIDE), interpolation=cv2.INTER_CUBIC)
        for f in faces
    ])


def demo_table(rows: int = LFW_FACES) -> FerTable:
    """A FER2013-format table of ``rows`` LFW faces, split 80/10/10 into the three usages."""
    images = lfw_faces(rows)
    n = len(images)
    usage = np.array([USAGES[0]] * n, dtype=object)
    usage[int(0.8 * n): int(0.9 * n)] = USAGES[1]
    usage[int(0.9 * n):] = USAGES[2]
    return FerTable(path=Path("lfw_subset"), images=images, emotion=np.full(n, DEMO_LABEL, np.int64), usage=usage)


def run_demo(outdir: str | Path, rows: int = 64, seed: int = 0, jobs: int | None = None) -> dict[str, Path]:
    """Write demo ``fer2013.csv``, mask it into ``smfer2013.csv``, and draw a before/after sheet."""
    from maskgen.pipeline import BuildConfig
    from maskgen.io import write_image
    from maskgen.preview import contact_sheet
    from maskgen.smfer import build_smfer

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    source = outdir / "fer2013.csv"
    write_fer_csv(source, demo_table(rows))
    report = build_smfer(source, outdir / "smfer2013.csv", config=BuildConfig(seed=seed), jobs=jobs)
    before, after = read_fer_csv(source), read_fer_csv(report.output)
    import csv

    with open(report.metadata, newline="", encoding="utf-8") as fh:
        meta = list(csv.DictReader(fh))
    labels = [f"{m['mask']} {m['fit']}".strip() or m["status"] for m in meta]
    sheet = contact_sheet(before.images, after.images, labels)
    preview = outdir / "preview.png"
    write_image(preview, sheet)
    return {"input": source, "output": Path(report.output), "metadata": Path(report.metadata),
            "manifest": Path(report.manifest), "preview": preview}
