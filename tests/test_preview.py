"""maskgen.preview: contact sheet layout, landmarks overlay, atomic PNG, preview of random rows."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskgen.preview import GAP, LABEL_HEIGHT, MARGIN, contact_sheet, preview_table, save_png


def _images(n: int, shape=(48, 48), value: int = 100) -> list[np.ndarray]:
    return [np.full(shape, value + i, np.uint8) for i in range(n)]


def test_layout_size_and_content():
    n, scale, cols = 10, 3, 4
    orig, masked = _images(n), _images(n, value=10)
    sheet = contact_sheet(orig, masked, [f"m{i}" for i in range(n)], scale=scale, cols=cols)
    cell_w = 2 * 48 * scale + GAP + 2 * MARGIN
    cell_h = 48 * scale + LABEL_HEIGHT + 2 * MARGIN
    assert sheet.shape == (3 * cell_h, cols * cell_w, 3) and sheet.dtype == np.uint8
    # first pair: original on the left, masked on the right, upscaled
    y, x = MARGIN, MARGIN
    assert (sheet[y:y + 48 * scale, x:x + 48 * scale] == 100).all()
    x2 = x + 48 * scale + GAP
    assert (sheet[y:y + 48 * scale, x2:x2 + 48 * scale] == 10).all()
    label_band = sheet[y + 48 * scale:y + 48 * scale + LABEL_HEIGHT, x:x + 48 * scale]
    assert (label_band < 128).any(), "label text is drawn"


def test_colour_and_gray_mixed_and_landmarks_drawn():
    orig = [np.full((48, 48), 128, np.uint8), np.full((48, 48, 3), 128, np.uint8)]
    pts = np.column_stack([np.linspace(5, 40, 68), np.linspace(5, 40, 68)])
    plain = contact_sheet(orig, orig, ["a", "b"])
    marked = contact_sheet(orig, orig, ["a", "b"], points=[pts, None])
    diff = np.abs(plain.astype(int) - marked).sum(axis=2) > 0
    assert diff.any()
    half = plain.shape[1] // 2
    assert not diff[:, half:].any(), "no points where none were given"


def test_validation():
    with pytest.raises(ValueError, match="2 originals but 1 masked"):
        contact_sheet(_images(2), _images(1), ["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        contact_sheet(_images(2), _images(2), ["a"])
    with pytest.raises(ValueError, match="uint8"):
        contact_sheet([np.zeros((48, 48), np.float32)], _images(1), ["a"])
    with pytest.raises(ValueError, match="at least one"):
        contact_sheet([], [], [])


def test_save_png_atomic_roundtrip(tmp_path):
    img = np.zeros((20, 30, 3), np.uint8)
    img[..., 0] = 255                                   # red in RGB
    path = save_png(tmp_path / "sub" / "sheet.png", img)
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, img)
    assert [p.name for p in path.parent.iterdir()] == ["sheet.png"], "no temp file left behind"


def test_preview_table_masks_real_faces_like_build_smfer():
    from skimage import data

    from maskgen.pipeline import BuildConfig, mask_face

    faces = np.stack([cv2.resize((im * 255).round().astype(np.uint8), (48, 48), interpolation=cv2.INTER_CUBIC)
                      for im in data.lfw_subset()[:20]])
    sheet, results = preview_table(faces, 4, seed=3, draw_landmarks=True, cols=2)
    assert sheet.ndim == 3 and len(results) == 4
    rows = np.sort(np.random.default_rng(3).choice(len(faces), 4, replace=False))
    for i, r in zip(rows, results):
        assert r.row_id == i
        np.testing.assert_array_equal(r.image, mask_face(faces[i], int(i), BuildConfig(seed=3)).image)
    assert sum(r.qa.passed for r in results if r.qa is not None) >= 3
