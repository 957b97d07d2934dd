"""A small end-to-end example on faces that scikit-image ships (no download, no FER2013 needed)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from maskgen.dataset import SIDE, USAGES, FerTable, read_fer_csv, write_fer_csv

if TYPE_CHECKING:
    from maskgen.io import OutputRecord

#: skimage.data.lfw_subset(): the first 100 of its 200 images are faces
LFW_FACES = 100
#: the demo faces carry no expression labels; every row gets "neutral"
DEMO_LABEL = 6
#: the demo folder's record of the files the demo wrote there (:class:`maskgen.io.OutputRecord`)
DEMO_RECORD = ".maskgen-demo.json"


def check_rows(rows: object, option: str = "-n/--rows") -> int:
    """The demo's number of faces, refused (ValueError naming ``option``) unless an integer from 1 to
    :data:`LFW_FACES`."""
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or not 1 <= rows <= LFW_FACES:
        raise ValueError(f"{option} must be an integer from 1 to {LFW_FACES}, got {rows!r}")
    return int(rows)


def lfw_faces(rows: int = LFW_FACES) -> np.ndarray:
    """(rows, 48, 48) uint8 real face crops: scikit-image's LFW subset, upscaled from 25x25."""
    try:
        from skimage.data import lfw_subset
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError('the demo needs scikit-image: pip install "maskgen[demo]"') from exc
    import cv2

    check_rows(rows, "rows")
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


def demo_files(outdir: str | Path) -> dict[str, Path]:
    """The files the demo writes into ``outdir``: input, output, metadata, manifest, preview."""
    from maskgen.smfer import sidecar_paths

    outdir = Path(outdir)
    meta, manifest = sidecar_paths(outdir / "smfer2013.csv")
    return {"input": outdir / "fer2013.csv", "output": outdir / "smfer2013.csv", "metadata": meta,
            "manifest": manifest, "preview": outdir / "preview.png"}


def check_demo_outputs(outdir: str | Path) -> OutputRecord:
    """Before any work: ``outdir`` is a folder (or absent) and the demo replaces none of its files but its own.

    A folder can hold the user's real ``fer2013.csv``; the demo writes one there. An existing file of the
    demo's names is replaced only if an earlier demo run wrote exactly those bytes (the folder's
    :data:`DEMO_RECORD`); one of the user's, a symlink or a special file is refused.

    Raises:
        maskgen.paths.PathError: naming the file and the problem.
    """
    from maskgen.io import OutputRecord
    from maskgen.paths import PathError, check_write_target

    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise PathError(f"-o {outdir} is not a folder")
    record = OutputRecord(outdir, DEMO_RECORD, "maskgen demo")
    for path in demo_files(outdir).values():
        check_write_target(path, "-o")
        if path.exists() and not record.may_replace(path):
            raise PathError(f"-o {outdir}: {path} exists and was not written by maskgen demo: the demo would replace "
                            "it; remove it or choose another folder")
    return record


def run_demo(outdir: str | Path, rows: int = 64, seed: int = 0, jobs: int | None = None) -> dict[str, Path]:
    """Write demo ``fer2013.csv``, mask it into ``smfer2013.csv``, and draw a before/after sheet.

    Files of the demo's names in ``outdir`` are replaced only if an earlier run wrote them
    (:func:`check_demo_outputs`, before any work).
    """
    from maskgen.parallel import check_jobs
    from maskgen.pipeline import BuildConfig
    from maskgen.io import write_image
    from maskgen.preview import contact_sheet
    from maskgen.pipeline import check_seed
    from maskgen.smfer import build_smfer

    check_rows(rows)
    check_seed(seed)
    check_jobs(jobs)
    outdir = Path(outdir)
    files = demo_files(outdir)
    record = check_demo_outputs(outdir)
    table = demo_table(rows)
    outdir.mkdir(parents=True, exist_ok=True)
    source = files["input"]
    write_fer_csv(source, table)
    record.add(source)
    record.save()  # recorded at once: a rerun after a failed build may replace it
    report = build_smfer(source, files["output"], config=BuildConfig(seed=seed), jobs=jobs)
    before, after = read_fer_csv(source), read_fer_csv(report.output)
    import csv

    with open(report.metadata, newline="", encoding="utf-8") as fh:
        meta = list(csv.DictReader(fh))
    labels = [f"{m['mask']} {m['fit']}".strip() or m["status"] for m in meta]
    sheet = contact_sheet(before.images, after.images, labels)
    write_image(files["preview"], sheet)
    for path in files.values():
        record.add(path)
    record.save()
    return files
