"""maskgen.photo: every detected face in a photo is masked; photos without faces are reported."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import bomb_png, checksums
from maskgen.cli_errors import EXIT_PARTIAL
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


# ---------------------------------------------------------------- #28: per-item failures, pixel limit, one key
def test_read_image_refuses_a_decompression_bomb_from_its_header(tmp_path):
    from maskgen.io import MAX_IMAGE_PIXELS, ImageTooLargeError, check_image_size

    bomb = bomb_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 10_000
    with pytest.raises(ImageTooLargeError, match="too large"):
        read_image(bomb)
    assert MAX_IMAGE_PIXELS < 50000 * 50000
    with pytest.raises(ImageTooLargeError, match="100x100"):
        check_image_size(bomb_png(tmp_path / "big.png", 100, 100), max_pixels=9999)
    assert check_image_size(bomb_png(tmp_path / "ok.png", 640, 480)) == (640, 480)


def test_16_bit_and_alpha_pictures_are_read_with_a_warning(tmp_path):
    from maskgen.io import ImageConversionWarning

    cv2.imwrite(str(tmp_path / "deep.png"), np.full((8, 8), 65535, np.uint16))
    cv2.imwrite(str(tmp_path / "alpha.png"), np.full((8, 8, 4), 200, np.uint8))
    with pytest.warns(ImageConversionWarning, match="16-bit"):
        assert read_image(tmp_path / "deep.png").max() == 255
    with pytest.warns(ImageConversionWarning, match="alpha"):
        assert read_image(tmp_path / "alpha.png").shape == (8, 8, 3)


def test_one_bad_picture_is_one_status_row_and_the_rest_are_masked(tmp_path, astronaut):
    """#28 case 7: a 1x1 picture stopped mask-image half-way; a decompression bomb gave OpenCV's traceback."""
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a_tiny.png"), np.zeros((1, 1), np.uint8))
    bomb_png(src / "b_bomb.png")
    write_image(src / "c_face.png", astronaut)
    before = checksums(src)
    report = mask_files([src], tmp_path / "out", seed=0)
    assert report.status == {str(src / "a_tiny.png"): "error", str(src / "b_bomb.png"): "too_large",
                             str(src / "c_face.png"): "masked"}
    assert report.failed_pictures == 2 and [p.name for p in report.written] == ["c_face.png"]
    assert "too small" in dict(report.failed)[src / "a_tiny.png"]

    from maskgen.cli import main
    result = CliRunner().invoke(main, ["mask-image", str(src), "-o", str(tmp_path / "cli")])
    assert result.exit_code == EXIT_PARTIAL, result.output  # some pictures failed; the others were written
    assert (tmp_path / "cli" / "c_face.png").is_file()
    assert "failed (too_large)" in result.output and "failed (error)" in result.output
    assert "2 of 3 pictures failed" in result.output
    assert checksums(src) == before


def test_mask_image_and_build_smfer_photo_use_one_key_per_picture(tmp_path, astronaut):
    """#28: mask-image keyed a photo by CRC32 of its name, build-smfer --photo by SHA-256: other masks."""
    from maskgen import folders
    from maskgen.folders import build_folder
    from maskgen.photo import path_key
    from maskgen.pipeline import BuildConfig

    assert folders.path_key is path_key and path_key("a/b.png") == path_key(__import__("pathlib").Path("a/b.png"))
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    write_image(src / "sub" / "face.png", astronaut)
    mask_files([src], tmp_path / "photo", seed=5)
    build_folder(src, tmp_path / "smfer", config=BuildConfig(seed=5), mode="photo", jobs=1, backend="sequential",
                 progress=False)
    np.testing.assert_array_equal(read_image(tmp_path / "photo" / "sub" / "face.png"),
                                  read_image(tmp_path / "smfer" / "sub" / "face.png"))
    assert not np.array_equal(read_image(tmp_path / "photo" / "sub" / "face.png"), astronaut)


def test_opencv_errors_are_that_pictures_value_error(tmp_path, monkeypatch):
    """A format Pillow cannot size falls to OpenCV, whose own pixel limit must not be a traceback."""
    from maskgen import io

    monkeypatch.setattr(io, "check_image_size", lambda path, max_pixels=io.MAX_IMAGE_PIXELS: None)
    with pytest.raises(ValueError, match="cannot read image .*bomb.png"):
        read_image(bomb_png(tmp_path / "bomb.png"))


def test_write_image_with_a_suffix_no_encoder_takes_is_a_value_error(tmp_path: Path) -> None:
    """OpenCV raises its own cv2.error for an unknown suffix; callers (and the one-line convention) expect
    a ValueError naming the file, and nothing is written."""
    target = tmp_path / "sheet.qqq"
    with pytest.raises(ValueError, match=r"cannot encode .*sheet\.qqq \(no image encoder for '\.qqq'\)"):
        write_image(target, np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []
