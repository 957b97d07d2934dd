"""Supplied landmarks: 68 points (or a face box) given per row, used instead of detection.

Datasets such as AffectNet ship face boxes and 68-point landmarks; re-detecting them is
slower and worse. A *landmarks file* is a CSV with a header and one row per face:

- a key column: ``row`` (0-based data row of a FER2013-format CSV) or ``path`` (relative path
  of an image in a folder dataset);
- the points, either as 136 columns ``x0,y0,x1,y1,...,x67,y67`` or as one column
  ``facial_landmarks`` holding ``x0;y0;x1;y1;...`` (AffectNet's layout), in pixels of the
  image, (x, y), pixel centres at integers;
- or only a face box: ``face_x,face_y,face_width,face_height`` (AffectNet's names); the dlib
  shape predictor then runs in that box.

:func:`read_landmarks_file` validates the whole file first (column layout, 136 finite numbers
per row, points within the image frame grown by :data:`FRAME_MARGIN` on every side, a box of
positive size that overlaps that frame, no key twice, and points shaped like a face: not all on
one pixel, not on a line, not upside down or mirrored, :func:`check_shape`) and raises
:class:`LandmarksFileError` naming the file, line and problem. Folder datasets, whose pictures
differ in size, get the frame checks when each picture is read (a per-picture error).
:class:`SuppliedSource` is a :class:`~maskgen.landmarks.base.LandmarkSource`: rows with
an entry get ``source="supplied"`` (points) or ``"supplied_box"``; rows without one fall back
to the wrapped source (the dlib chain), whose own tag is kept.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskgen.landmarks.base import Landmarks, LandmarkSource
from maskgen.points import LANDMARK_GROUPS, N_POINTS, fit_box_to_points

__all__ = ["FRAME_MARGIN", "LandmarksFileError", "SuppliedLandmarks", "SuppliedSource", "check_box", "check_keys",
           "check_points_frame", "check_shape", "read_landmarks_file"]

#: supplied points may lie outside the image (a crop cuts the chin) by this fraction of its size
FRAME_MARGIN = 0.5
KEY_COLUMNS = ("row", "path")
BOX_COLUMNS = ("face_x", "face_y", "face_width", "face_height")
POINT_COLUMNS = tuple(f"{axis}{i}" for i in range(N_POINTS) for axis in ("x", "y"))


#: supplied points are refused when all 68 lie within this many pixels (one pixel: a placeholder row)
MIN_SPREAD_PX = 2.0
#: ... or when their thinner principal axis is under this fraction of the wider one (all on a line)
MIN_THICKNESS = 0.05
#: ... or when they are mirrored: (eye-to-eye) x (eyes-to-mouth) below -this x their lengths' product
MIRROR_TOLERANCE = 0.2


class LandmarksFileError(ValueError):
    """A landmarks file is malformed (the message names the file, line and problem)."""


def check_shape(xy: np.ndarray, where: str) -> None:
    """Refuse (68, 2) (x, y) points that cannot be a face: all on one pixel, on a line, upside down
    (the mouth above the eyes) or mirrored (the subject's right eye on the image's right, as when y
    is measured upwards). ``where`` names the file and line."""
    spread = float((xy.max(axis=0) - xy.min(axis=0)).max())
    if spread < MIN_SPREAD_PX:
        raise LandmarksFileError(f"{where}: all 68 points lie within {spread:g} px of each other, not a face")
    sv = np.linalg.svd(xy - xy.mean(axis=0), compute_uv=False)
    if sv[1] < MIN_THICKNESS * sv[0]:
        raise LandmarksFileError(f"{where}: the 68 points lie on a line, not a face")
    right_eye, left_eye = xy[LANDMARK_GROUPS["right_eye"]].mean(0), xy[LANDMARK_GROUPS["left_eye"]].mean(0)
    across = left_eye - right_eye                                   # image left -> right on an upright face
    down = xy[LANDMARK_GROUPS["mouth"]].mean(0) - (left_eye + right_eye) / 2  # +y (image down) when upright
    if down[1] < -abs(down[0]):
        raise LandmarksFileError(f"{where}: the mouth is above the eyes: the points are upside down "
                                 "(y measured upwards?)")
    cross = across[0] * down[1] - across[1] * down[0]
    if cross < -MIRROR_TOLERANCE * float(np.hypot(*across) * np.hypot(*down)):
        raise LandmarksFileError(f"{where}: the points are mirrored (the subject's right eye, points 36-41, "
                                 "must be on the image's left)")


def check_points_frame(xy: np.ndarray, image_size: tuple[int, int], where: str) -> None:
    """Points must lie within the (width, height) image grown by :data:`FRAME_MARGIN` on every side."""
    w, h = image_size
    lo = -FRAME_MARGIN * np.array([w, h])
    hi = (1 + FRAME_MARGIN) * np.array([w, h])
    bad = np.flatnonzero(((xy < lo) | (xy > hi)).any(axis=1))
    if bad.size:
        i = int(bad[0])
        raise LandmarksFileError(f"{where}: point {i} at ({xy[i, 0]:g}, {xy[i, 1]:g}) is far outside the {w}x{h} image")


def check_box(box: tuple[float, float, float, float], image_size: tuple[int, int], where: str) -> None:
    """A face box (left, top, right, bottom) must overlap the image and stay within its frame grown by
    :data:`FRAME_MARGIN` on every side."""
    w, h = image_size
    left, top, right, bottom = box
    inside = (left >= -FRAME_MARGIN * w and top >= -FRAME_MARGIN * h and right <= (1 + FRAME_MARGIN) * w
              and bottom <= (1 + FRAME_MARGIN) * h)
    if not inside or right <= 0 or bottom <= 0 or left >= w or top >= h:
        raise LandmarksFileError(f"{where}: face box ({left:g}, {top:g}) - ({right:g}, {bottom:g}) is far outside "
                                 f"the {w}x{h} image")


@dataclass(frozen=True)
class SuppliedLandmarks:
    """What a landmarks file gives: key -> (68, 2) float32 points, and key -> face box."""

    path: Path
    key_column: str
    points: dict[str, np.ndarray]
    boxes: dict[str, tuple[float, float, float, float]]
    lines: dict[str, int]

    def __len__(self) -> int:
        return len(self.points) + len(self.boxes)

    def keys(self) -> set[str]:
        return set(self.points) | set(self.boxes)


def _numbers(cells: list[str], where: str, what: str) -> np.ndarray:
    try:
        values = np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError:
        bad = next(c for c in cells if not _is_float(c))
        raise LandmarksFileError(f"{where}: {what}: {bad!r} is not a number") from None
    if not np.isfinite(values).all():
        raise LandmarksFileError(f"{where}: {what}: NaN or infinite value")
    return values


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def check_keys(supplied: SuppliedLandmarks, key_column: str, known: set[str], what: str) -> None:
    """The file must be keyed by ``key_column`` and every key must be in ``known``
    (``what`` says what is missing, e.g. "the data has 3000 rows")."""
    if supplied.key_column != key_column:
        raise LandmarksFileError(f"{supplied.path}: this dataset needs a {key_column!r} key column, not "
                                 f"{supplied.key_column!r}")
    for key, line in sorted(supplied.lines.items(), key=lambda kv: kv[1]):
        if key not in known:
            raise LandmarksFileError(f"{supplied.path}, line {line}: {key_column} {key}, but {what}")


def read_landmarks_file(path: str | os.PathLike, image_size: tuple[int, int] | None = None) -> SuppliedLandmarks:
    """Read and validate a landmarks file (module docstring).

    Args:
        image_size: (width, height) of every image (FER2013: (48, 48)) for the range check;
            None skips it (folder datasets, whose pictures differ in size).
    Raises:
        LandmarksFileError: the first problem, with its line number.
    """
    path = Path(path)
    if not path.is_file():
        raise LandmarksFileError(f"landmarks file {path} " + ("not found" if not path.exists() else
                                 "is not a regular file (a folder, FIFO or device): only regular files are read"))
    try:  # checked first, so that a binary file is named (csv would raise a bare UnicodeDecodeError mid-read)
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise LandmarksFileError(f"{path}, line {line}: not a landmarks CSV (not UTF-8 text: byte "
                                 f"0x{exc.object[exc.start]:02x} at offset {exc.start})") from None
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise LandmarksFileError(f"{path}: empty file") from None
        keys = [k for k in KEY_COLUMNS if k in header]
        if len(keys) != 1:
            raise LandmarksFileError(f"{path}, line 1: need exactly one key column, 'row' or 'path'; got {header[:6]}")
        key_col = keys[0]
        has_points = all(c in header for c in POINT_COLUMNS)
        has_packed = "facial_landmarks" in header
        has_box = all(c in header for c in BOX_COLUMNS)
        if not (has_points or has_packed or has_box):
            raise LandmarksFileError(
                f"{path}, line 1: no landmark columns; give x0,y0,...,x67,y67, or facial_landmarks, "
                f"or {','.join(BOX_COLUMNS)}")
        col = {name: i for i, name in enumerate(header)}
        points: dict[str, np.ndarray] = {}
        boxes: dict[str, tuple[float, float, float, float]] = {}
        seen: dict[str, int] = {}
        for line_no, cells in enumerate(reader, start=2):
            if not cells or all(not c.strip() for c in cells):
                continue
            where = f"{path}, line {line_no}"
            if len(cells) != len(header):
                raise LandmarksFileError(f"{where}: {len(cells)} fields, the header has {len(header)}")
            key = cells[col[key_col]].strip()
            if key_col == "row" and not key.isdigit():
                raise LandmarksFileError(f"{where}: row {key!r} is not a row number (0-based)")
            if key_col == "row":
                key = str(int(key))
            if key in seen:
                raise LandmarksFileError(f"{where}: {key_col} {key} given twice (first on line {seen[key]})")
            seen[key] = line_no
            pts_cells: list[str] | None = None
            if has_points and any(cells[col[c]].strip() for c in POINT_COLUMNS):
                pts_cells = [cells[col[c]].strip() for c in POINT_COLUMNS]
            elif has_packed and cells[col["facial_landmarks"]].strip():
                pts_cells = [c for c in cells[col["facial_landmarks"]].replace(",", ";").split(";") if c.strip()]
            if pts_cells is not None:
                if len(pts_cells) != 2 * N_POINTS:
                    raise LandmarksFileError(f"{where}: expected {2 * N_POINTS} numbers (68 x, y pairs), "
                                             f"found {len(pts_cells)}")
                xy = _numbers(pts_cells, where, "landmarks").reshape(N_POINTS, 2)
                if image_size is not None:
                    check_points_frame(xy, image_size, where)
                check_shape(xy, where)
                points[key] = xy.astype(np.float32)
            elif has_box and any(cells[col[c]].strip() for c in BOX_COLUMNS):
                x, y, bw, bh = _numbers([cells[col[c]].strip() for c in BOX_COLUMNS], where, "face box")
                if bw <= 0 or bh <= 0:
                    raise LandmarksFileError(f"{where}: face box of size {bw:g}x{bh:g}; width and height must be > 0")
                boxes[key] = (float(x), float(y), float(x + bw), float(y + bh))
                if image_size is not None:
                    check_box(boxes[key], image_size, where)
            else:
                raise LandmarksFileError(f"{where}: no landmarks and no face box for {key_col} {key}")
    if not points and not boxes:
        raise LandmarksFileError(f"{path}: no rows")
    return SuppliedLandmarks(path=path, key_column=key_col, points=points, boxes=boxes, lines=seen)


class SuppliedSource:
    """A :class:`LandmarkSource`: supplied points or boxes where the file has them, else ``fallback``.

    Supplied points are used as given (``accepted=True``; ``score`` is still their Procrustes
    distance to the prior's mean shape, for the sidecar). A supplied box runs the fallback's shape
    predictor in it (the fallback must be the dlib chain for that).
    """

    def __init__(self, supplied: SuppliedLandmarks, fallback: LandmarkSource) -> None:
        self.supplied = supplied
        self.fallback = fallback

    def _frame(self, image: np.ndarray, key: str) -> tuple[tuple[int, int], str]:
        h, w = np.asarray(image).shape[:2]
        return (w, h), f"{self.supplied.path}, line {self.supplied.lines.get(key, '?')}"

    def for_crop(self, gray: np.ndarray, key: int | str | None = None) -> Landmarks:
        """Supplied points or box for ``key`` (checked against this image's frame: a LandmarksFileError
        for this row or picture when far outside it), else the fallback's landmarks."""
        k = None if key is None else str(key)
        if k is not None and k in self.supplied.points:
            pts = self.supplied.points[k]
            check_points_frame(pts, *self._frame(gray, k))
            score = self.fallback.score(pts) if hasattr(self.fallback, "score") else float("nan")
            mean = getattr(getattr(self.fallback, "prior", None), "mean_shape", None)
            box = fit_box_to_points(pts, mean) if mean is not None else (
                float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))
            return Landmarks(points=pts, source="supplied", score=float(score), accepted=True, box=box)
        if k is not None and k in self.supplied.boxes:
            check_box(self.supplied.boxes[k], *self._frame(gray, k))
            return self.fallback.in_box(gray, self.supplied.boxes[k], source="supplied_box")  # type: ignore[attr-defined]
        return self.fallback.for_crop(gray)

    def detect_faces(self, image: np.ndarray, key: int | str | None = None) -> list[Landmarks]:
        k = None if key is None else str(key)
        if k is not None and (k in self.supplied.points or k in self.supplied.boxes):
            return [self.for_crop(image, k)]
        return self.fallback.detect_faces(image)
