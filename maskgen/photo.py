"""Mask faces in ordinary photos and folders of photos (``maskgen mask-image``).

Every face the landmark source finds (``detect_faces``) gets its own mask, drawn by the
same per-face step as FER2013 rows (:func:`maskgen.pipeline.mask_with_landmarks`); photos
where no face is found are reported, never silently skipped, and a face whose mask fails
is recorded with its error while the photo's other faces are still masked. Face ``k`` of a
photo uses ``numpy.random.default_rng([seed, key, k])`` with ``key`` = :func:`path_key` of its
path relative to its folder (the same key ``build-smfer --photo`` uses), so results do not depend
on the order in which files are processed, nor on the command. One bad picture (unreadable, too
large, too small to search) is recorded with its status and the other pictures are still masked.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from maskgen.fits import MaskParams
from maskgen.imageops import check_image
from maskgen.io import IMAGE_SUFFIXES, ImageTooLargeError, OutputRecord, read_image, write_image
from maskgen.paths import Output, check_outputs, check_targets, walk
from maskgen.pipeline import mask_with_landmarks
from maskgen.qa import QAResult

__all__ = ["IMAGE_SUFFIXES", "FaceResult", "PhotoResult", "PhotoReport", "mask_photo", "mask_files",
           "expand_paths", "path_key", "MASKED_RECORD", "check_photo_outputs", "output_record"]


def path_key(rel: str | PurePath) -> int:
    """Stable 63-bit key of a picture: SHA-256 of its path relative to its folder ('/'-separated; the bare
    name for a file given alone). The row id of its random generator in ``mask-image`` and ``build-smfer``
    on folders alike, so the same picture and seed get the same masks from both."""
    text = rel.as_posix() if isinstance(rel, PurePath) else str(rel).replace("\\", "/")
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1



@dataclass(frozen=True)
class FaceResult:
    """One masked face: its landmarks ((68, 2) float32 (x, y)), box, parameters and QA."""

    points: np.ndarray
    box: tuple[float, float, float, float]
    params: MaskParams
    qa: QAResult

    def to_dict(self) -> dict[str, Any]:
        return {"box": [round(v, 1) for v in self.box], **self.params.to_dict(), **self.qa.to_dict()}


@dataclass
class PhotoResult:
    """A masked photo: image (same shape/dtype as the input), alpha (H, W) float32 (union of masks), faces.

    ``errors``: (face index, box, error text) of detected faces whose mask failed (left unmasked).
    """

    image: np.ndarray
    alpha: np.ndarray
    faces: list[FaceResult]
    errors: list[tuple[int, tuple[float, float, float, float], str]] = field(default_factory=list)


@dataclass
class PhotoReport:
    """What :func:`mask_files` did: outputs written, files with no face, failures (path, reason), and a
    status per input picture (``status``: path -> one of :data:`PHOTO_STATUSES`)."""

    written: list[Path] = field(default_factory=list)
    faces: dict[str, int] = field(default_factory=dict)
    no_face: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)

    @property
    def failed_pictures(self) -> int:
        """Input pictures that could not be processed (unreadable, too large, or an error)."""
        return sum(1 for s in self.status.values() if s in FAILED_STATUSES)


#: a picture's outcome in :func:`mask_files`: masked (written; some faces may have failed), no face found,
#: unreadable, too large (:data:`maskgen.io.MAX_IMAGE_PIXELS`), or an error while searching / masking it
PHOTO_STATUSES = ("masked", "no_face", "unreadable", "too_large", "error")
FAILED_STATUSES = ("unreadable", "too_large", "error")


def mask_photo(image: np.ndarray, *, seed: int = 0, key: int = 0, masks: Sequence[str] | None = None,
               fit_probs: Mapping[str, float] | None = None, color: bool = True,
               detector: Any = None, lookup_key: str | None = None,
               styles: Sequence[str] | None = None) -> PhotoResult:
    """Mask every detected face in ``image`` ((H, W) or (H, W, 3) uint8 RGB).

    ``styles``: mask styles to draw from (:mod:`maskgen.styles`; default: classic).

    ``color``: colour masks on colour photos (gray photos always get gray tones).  ``detector``:
    a landmark source (default: the process-wide dlib one); ``lookup_key`` is passed to its
    ``detect_faces`` (a source of supplied landmarks looks the photo up by it).
    """
    if detector is None:
        from maskgen.landmarks import get_detector
        detector = get_detector()
    img = check_image(np.asarray(image))
    out = img.copy()
    alpha = np.zeros(img.shape[:2], np.float32)
    result = PhotoResult(image=out, alpha=alpha, faces=[])
    for k, marks in enumerate(detector.detect_faces(img, key=lookup_key)):
        box = tuple(float(v) for v in marks.box)
        try:
            masked, a, params, check = mask_with_landmarks(
                result.image, marks.points, np.random.default_rng([int(seed), int(key), k]), mask_names=masks,
                fit_probs=fit_probs, color=color, styles=styles)
        except Exception as exc:  # noqa: BLE001 - recorded per face; the photo's other faces go on
            result.errors.append((k, box, f"{type(exc).__name__}: {exc}"))  # type: ignore[arg-type]
            continue
        result.image = masked
        result.alpha = np.maximum(result.alpha, a)
        result.faces.append(FaceResult(points=marks.points, box=box, params=params, qa=check))  # type: ignore[arg-type]
    return result


def expand_paths(paths: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """Files and folders -> sorted (file, name relative to its folder or the bare name) pairs
    (:func:`maskgen.paths.walk`); FileNotFoundError for a missing path."""
    return [(f.path, Path(f.rel)) for f in walk(paths, IMAGE_SUFFIXES)]


#: the -o folder's record of the photos mask-image wrote there (:class:`maskgen.io.OutputRecord`)
MASKED_RECORD = ".maskgen-mask-image.json"


def output_record(outdir: str | Path) -> OutputRecord:
    """What earlier ``mask-image`` runs wrote into ``outdir``: only those files are ever replaced."""
    return OutputRecord(outdir, MASKED_RECORD, "maskgen mask-image")


def check_photo_outputs(files: Sequence[tuple[Path, Path]], outdir: Path, inputs: Iterable[str | Path]) -> None:
    """Before any work: ``outdir`` is not an input, inside one or holding one; no two pictures write
    the same ``outdir/<name>`` (``a/x.png b/x.png``); and no existing ``outdir/<name>`` is replaced
    unless an earlier run wrote it (:func:`output_record`). :class:`maskgen.paths.PathError` otherwise."""
    roles = [("input", p) for p in inputs]
    check_outputs(roles, [Output("-o", outdir, folder=True)])
    check_targets(((src, outdir / rel) for src, rel in files), "output", may_replace=output_record(outdir).may_replace,
                  inputs=roles)  # nor into an input folder through a symlinked folder of -o


def mask_files(paths: Iterable[str | Path], outdir: str | Path, *, seed: int = 0,
               masks: Sequence[str] | None = None, fit_probs: Mapping[str, float] | None = None,
               color: bool = True, detector: Any = None, styles: Sequence[str] | None = None) -> PhotoReport:
    """Mask every face in the given photos / folders; write results under ``outdir`` (same relative names).

    Photos without a detected face are listed in ``report.no_face`` and not written; a picture that
    fails (unreadable, too large, an error) goes to ``report.failed`` and the others are still
    processed; ``report.status`` has every picture's status. Mask names and fit probabilities are
    checked before any picture is read (ValueError).
    """
    from maskgen.fits import check_fit_probs
    from maskgen.masks import get_mask

    check_fit_probs(fit_probs)
    from maskgen.styles import check_styles

    styles = check_styles(styles)
    for name in masks or ():
        get_mask(name)
    outdir = Path(outdir)
    paths = list(paths)
    files = expand_paths(paths)
    if not files:  # an empty or text-only folder: nothing to do is bad input, not "no face in 0 pictures"
        from maskgen.paths import PathError, printable

        raise PathError(f"{', '.join(printable(p) for p in paths)}: no pictures ({', '.join(IMAGE_SUFFIXES)}) to mask")
    check_photo_outputs(files, outdir, paths)  # before any picture is read or written
    report = PhotoReport()
    record = output_record(outdir)
    try:
        for src, rel in files:
            try:
                image = read_image(src)
            except ValueError as exc:
                report.failed.append((src, str(exc)))
                report.status[str(src)] = "too_large" if isinstance(exc, ImageTooLargeError) else "unreadable"
                continue
            try:
                result = mask_photo(image, seed=seed, key=path_key(rel), masks=masks,
                                    fit_probs=fit_probs, color=color, detector=detector, styles=styles)
            except Exception as exc:  # noqa: BLE001 - recorded per picture (e.g. too small to search); the rest go on
                report.failed.append((src, f"{type(exc).__name__}: {exc}"))
                report.status[str(src)] = "error"
                continue
            report.faces[str(src)] = len(result.faces)
            report.status[str(src)] = "masked" if result.faces else ("error" if result.errors else "no_face")
            report.failed.extend((src, f"face {k} at {[round(v) for v in box]}: {err}") for k, box, err in result.errors)
            if not result.faces:
                if not result.errors:
                    report.no_face.append(src)
                continue
            report.written.append(write_image(outdir / rel, result.image))
            record.add(outdir / rel)
    finally:  # what this run wrote, so that a rerun may replace it (and nothing else)
        record.save()
    return report
