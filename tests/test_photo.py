"""maskgen.photo: every detected face in a photo is masked; photos without faces are reported."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from maskgen.io import read_image, write_image
from maskgen.photo import expand_paths, mask_files, mask_photo


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    data = pytest.importorskip("skimage.data")

    return cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)


def test_mask_photo_masks_the_face_in_colour(astronaut):
    res = mask_photo(astronaut, seed=1, masks=["surgical"])
    assert len(res.faces) == 1
    face = res.faces[0]
    assert face.qa.passed and face.params.use_color
    assert res.image.shape == astronaut.shape and res.alpha.max() > 0.99
    changed = np.abs(res.image.astype(int) - astronaut).sum(axis=2) > 0
    assert not changed[res.alpha == 0].any()
    l, t, r, b = face.box
    ys, xs = np.nonzero(res.alpha > 0.5)
    assert l - 10 < xs.mean() < r + 10 and t < ys.mean() < b + 30
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    assert mask_photo(gray, seed=1).image.ndim == 2


def test_two_faces_both_masked(astronaut):
    two = np.hstack([astronaut, astronaut[:, ::-1]])
    res = mask_photo(two, seed=2)
    assert len(res.faces) == 2
    assert all(f.qa.passed for f in res.faces)
    half = two.shape[1] // 2
    assert res.alpha[:, :half].max() > 0.99 and res.alpha[:, half:].max() > 0.99


def test_folder_and_cli_report_photos_without_faces(tmp_path, astronaut):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    write_image(src / "face.jpg", astronaut)
    write_image(src / "sub" / "wall.png", np.full((120, 160, 3), 90, np.uint8))
    (src / "notes.txt").write_text("not an image")
    assert [rel.as_posix() for _, rel in expand_paths([src])] == ["face.jpg", "sub/wall.png"]
    report = mask_files([src], tmp_path / "out", seed=0)
    assert [p.name for p in report.written] == ["face.jpg"]
    assert [p.name for p in report.no_face] == ["wall.png"]
    assert read_image(tmp_path / "out" / "face.jpg").shape == astronaut.shape
    again = mask_files([src / "face.jpg"], tmp_path / "out2", seed=0)
    np.testing.assert_array_equal(read_image(again.written[0]), read_image(report.written[0]))

    from maskgen.cli import main
    result = CliRunner().invoke(main, ["mask-image", str(src), "-o", str(tmp_path / "cli"), "--masks", "n95"])
    assert result.exit_code == 0, result.output
    assert "masked 1 faces in 1 photos" in result.output and "no face found" in result.output
    assert "wall.png" in result.output


def test_unreadable_and_missing(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    report = mask_files([bad], tmp_path / "out")
    assert report.failed and "cannot read" in report.failed[0][1]
    with pytest.raises(FileNotFoundError):
        mask_files([tmp_path / "nope.jpg"], tmp_path / "out")


def test_a_failing_face_is_recorded_and_the_others_are_masked(monkeypatch) -> None:
    """Per-face error handling: the photo path goes through pipeline.mask_with_landmarks face by face."""
    from maskgen import photo
    from maskgen.landmarks import Landmarks, load_prior

    shape = load_prior().mean_shape
    faces = [Landmarks(points=(shape * 60 + [x, 20]).astype(np.float32), source="hog", score=0.01, accepted=True,
                       box=(x, 20.0, x + 60.0, 80.0)) for x in (10.0, 100.0)]

    class TwoFaces:
        def detect_faces(self, image, key=None):
            return faces

    real = photo.mask_with_landmarks
    calls = []

    def flaky(image, points, rng, **kw):
        calls.append(points)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(image, points, rng, **kw)

    monkeypatch.setattr(photo, "mask_with_landmarks", flaky)
    image = np.full((100, 180, 3), 128, np.uint8)
    result = photo.mask_photo(image, detector=TwoFaces())
    assert len(calls) == 2 and len(result.faces) == 1 and result.faces[0].box[0] == 100.0
    assert result.errors == [(0, (10.0, 20.0, 70.0, 80.0), "RuntimeError: boom")]
    assert result.alpha[:, 100:].max() > 0.5 and result.alpha[:, :60].max() == 0  # only the second face masked
