"""maskgen.landmarks.supplied: supplied landmarks and boxes instead of detection, and their validation."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("skimage")  # the faces are scikit-image's LFW crops (maskgen.demo)

from maskgen.cli import main  # noqa: E402
from maskgen.dataset import read_fer_csv, write_fer_csv  # noqa: E402
from maskgen.demo import demo_table  # noqa: E402
from maskgen.landmarks import get_detector  # noqa: E402
from maskgen.landmarks.supplied import POINT_COLUMNS, LandmarksFileError, read_landmarks_file  # noqa: E402
from maskgen.pipeline import BuildConfig  # noqa: E402
from maskgen.smfer import build_smfer  # noqa: E402

N = 8


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """(FER2013-format CSV of N real faces, their detected (N, 68, 2) landmarks)."""
    path = tmp_path_factory.mktemp("faces") / "faces.csv"
    table = demo_table(N)
    write_fer_csv(path, table)
    detector = get_detector()
    return path, np.stack([detector.for_crop(img).points for img in table.images])


def write_points(path: Path, rows: dict[int, np.ndarray], packed: bool = False) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        if packed:
            w.writerow(["row", "facial_landmarks"])
            w.writerows([r, ";".join(repr(float(v)) for v in pts.ravel())] for r, pts in rows.items())
        else:
            w.writerow(["row", *POINT_COLUMNS])
            w.writerows([r, *(repr(float(v)) for v in pts.ravel())] for r, pts in rows.items())
    return path


def sidecar(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(out.with_name(out.stem + ".meta.csv"))))


@pytest.mark.parametrize("packed", [False, True])
def test_supplied_points_give_the_same_masks_as_the_same_points_detected(faces, tmp_path: Path, packed: bool) -> None:
    src, points = faces
    detected = tmp_path / "detected.csv"
    build_smfer(src, detected, jobs=1, progress=False)
    marks = write_points(tmp_path / "marks.csv", {i: points[i] for i in range(N - 1)}, packed)  # not the last row
    supplied = tmp_path / "supplied.csv"
    build_smfer(src, supplied, config=BuildConfig(landmarks=str(marks)), jobs=2, progress=False)
    assert supplied.read_bytes() == detected.read_bytes()
    sources = [r["landmark_source"] for r in sidecar(supplied)]
    assert sources[:N - 1] == ["supplied"] * (N - 1) and sources[-1] == sidecar(detected)[-1]["landmark_source"]
    manifest = json.loads(supplied.with_name("supplied.manifest.json").read_text())
    assert manifest["config"]["landmarks"] == str(marks) and len(manifest["config"]["landmarks_sha256"]) == 64


def test_moved_points_move_the_mask(faces, tmp_path: Path) -> None:
    src, points = faces
    marks = write_points(tmp_path / "marks.csv", {0: points[0] + [4.0, 0.0]})
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    build_smfer(src, a, jobs=1, progress=False)
    build_smfer(src, b, config=BuildConfig(landmarks=str(marks)), jobs=1, progress=False)
    ia, ib = read_fer_csv(a).images, read_fer_csv(b).images
    assert not np.array_equal(ia[0], ib[0]) and np.array_equal(ia[1:], ib[1:])


def test_supplied_box(faces, tmp_path: Path) -> None:
    src, points = faces
    path = tmp_path / "boxes.csv"
    lo, hi = points[0].min(0), points[0].max(0)
    path.write_text(f"row,face_x,face_y,face_width,face_height\n0,{lo[0]},{lo[1] - 8},{hi[0] - lo[0]},{hi[1] - lo[1] + 8}\n")
    out = tmp_path / "out.csv"
    build_smfer(src, out, config=BuildConfig(landmarks=str(path)), jobs=1, progress=False)
    row = sidecar(out)[0]
    assert row["landmark_source"] == "supplied_box" and row["status"].startswith("masked")


def _face(xy: np.ndarray | None = None) -> str:
    """68 (x, y) points as facial_landmarks text: by default the prior's mean face, about 30 px in a 48x48 crop."""
    from maskgen.landmarks import load_prior

    pts = load_prior().mean_shape * 30 + 9 if xy is None else xy
    return ";".join(f"{v:.2f}" for v in np.asarray(pts, np.float64).ravel())


MEAN_FACE = np.array([[float(v) for v in _face().split(";")]]).reshape(68, 2)

BAD_FILES = {
    "count": ("row,facial_landmarks\n0,1;2;3\n", r"line 2: expected 136 numbers \(68 x, y pairs\), found 3"),
    "nan": ("row,facial_landmarks\n0," + ";".join(["nan"] + ["1"] * 135) + "\n", "line 2: landmarks: NaN"),
    "text": ("row,facial_landmarks\n0," + ";".join(["abc"] + ["1"] * 135) + "\n", "line 2: landmarks: 'abc' is not"),
    "range": ("row,facial_landmarks\n0," + ";".join(["500"] + ["1"] * 135) + "\n", "line 2: point 0 at \\(500, 1\\) is far"),
    "twice": ("row,facial_landmarks\n0," + _face() + "\n0," + _face() + "\n",
              r"line 3: row 0 given twice \(first on line 2\)"),
    "beyond": ("row,facial_landmarks\n99," + _face() + "\n", "line 2: row 99, but the data has 8 rows"),
    # #28: doubtful points and boxes, accepted as masked before
    "one_pixel": ("row,facial_landmarks\n0," + ";".join(["20"] * 136) + "\n", "line 2: all 68 points lie within 0 px"),
    "line": ("row,facial_landmarks\n0," + _face(np.repeat(np.linspace(5, 40, 68)[:, None], 2, axis=1)) + "\n",
             "line 2: the 68 points lie on a line"),
    "upside_down": ("row,facial_landmarks\n0," + _face(MEAN_FACE * [1, -1] + [0, 48]) + "\n",
                    "line 2: the mouth is above the eyes"),
    "rotated_180": ("row,facial_landmarks\n0," + _face(48 - MEAN_FACE) + "\n", "line 2: the mouth is above the eyes"),
    "mirrored": ("row,facial_landmarks\n0," + _face(MEAN_FACE * [-1, 1] + [48, 0]) + "\n", "line 2: the points are mirrored"),
    "box_far": ("row,face_x,face_y,face_width,face_height\n0,200,200,10,10\n", "line 2: face box .* is far outside"),
    "box_beside": ("row,face_x,face_y,face_width,face_height\n0,-20,5,15,30\n", "line 2: face box .* is far outside"),
    "nokey": ("id,facial_landmarks\n0,1\n", "line 1: need exactly one key column"),
    "nocols": ("row,other\n0,1\n", "line 1: no landmark columns"),
    "box": ("row,face_x,face_y,face_width,face_height\n0,1,1,0,5\n", "line 2: face box of size 0x5"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_landmark_files_are_rejected_with_the_line(faces, tmp_path: Path, case: str) -> None:
    src, _ = faces
    text, message = BAD_FILES[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(main, ["build-smfer", str(src), "-o", str(out), "--landmarks", str(path), "--quiet"])
    assert result.exit_code == 2, result.output
    import re

    assert re.search(message, result.output), result.output
    assert not out.exists() and not list(tmp_path.glob("out*"))


def test_reader_without_an_image_size_skips_the_range_check(tmp_path: Path) -> None:
    path = tmp_path / "far.csv"
    path.write_text("row,facial_landmarks\n0," + _face(MEAN_FACE + 500) + "\n")
    assert read_landmarks_file(path).points["0"].shape == (68, 2)
    with pytest.raises(LandmarksFileError, match="far outside the 48x48 image"):
        read_landmarks_file(path, (48, 48))


def test_folder_pictures_get_the_frame_checks_when_read(tmp_path: Path) -> None:
    """A folder's pictures differ in size: supplied points / boxes far outside one are that picture's error."""
    from maskgen.landmarks.supplied import SuppliedSource

    path = tmp_path / "marks.csv"
    path.write_text("path,facial_landmarks,face_x,face_y,face_width,face_height\n"
                    f"a.png,{_face()},,,,\nb.png,,400,400,20,20\n")
    source = SuppliedSource(read_landmarks_file(path), fallback=None)  # type: ignore[arg-type]
    small = np.zeros((20, 20), np.uint8)
    with pytest.raises(LandmarksFileError, match="line 2: point .* far outside the 20x20 image"):
        source.for_crop(small, "a.png")
    with pytest.raises(LandmarksFileError, match="line 3: face box .* far outside the 20x20 image"):
        source.for_crop(small, "b.png")
