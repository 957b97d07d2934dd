"""maskgen.preview: contact sheet layout, landmarks overlay, atomic PNG, preview of random rows."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from maskgen.io import write_image as save_png
from maskgen.preview import GAP, LABEL_HEIGHT, MARGIN, contact_sheet, preview_table


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
    data = pytest.importorskip("skimage.data")

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


def test_preview_cli_with_a_custom_mask_spec(tmp_path):
    """`maskgen preview` writes the sheet; a --mask-spec mask can be chosen with --masks."""
    from click.testing import CliRunner
    data = pytest.importorskip("skimage.data")

    from maskgen.cli import main

    faces = [cv2.resize((im * 255).round().astype(np.uint8), (48, 48), interpolation=cv2.INTER_CUBIC)
             for im in data.lfw_subset()[:6]]
    csv_path = tmp_path / "faces.csv"
    csv_path.write_text("emotion,pixels,Usage\n" + "".join(
        f"3,{' '.join(map(str, f.ravel()))},Training\n" for f in faces))
    rgba = np.zeros((160, 200, 4), np.uint8)
    cv2.ellipse(rgba, (100, 80), (96, 76), 0, 0, 360, (60, 60, 200, 255), -1, cv2.LINE_AA)
    cv2.imwrite(str(tmp_path / "blob.png"), rgba)
    anchors = {"jaw_2": [12, 50], "jaw_14": [188, 50], "chin": [100, 150], "nose_bridge_1": [100, 8],
               "mouth_3": [100, 95]}
    (tmp_path / "blob.json").write_text(
        '{"name": "cli_blob", "image": "blob.png", "anchors": {'
        + ", ".join(f'"{k}": {{"xy": {v}, "landmark": "{k}"}}' for k, v in anchors.items()) + "}}")
    out = tmp_path / "sheet.png"
    try:
        result = CliRunner().invoke(main, ["preview", str(csv_path), "-n", "4", "-o", str(out), "--landmarks",
                                           "--mask-spec", str(tmp_path / "blob.json"), "--masks", "cli_blob"])
    finally:                                    # leave the process-wide registry as we found it
        from maskgen.masks import list_masks, unregister_mask
        if "cli_blob" in list_masks():
            unregister_mask("cli_blob")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and out.is_file()
    assert cv2.imread(str(out)).shape[0] > 48 * 4
    bad = CliRunner().invoke(main, ["preview", str(csv_path), "-n", "4", "-o", str(out), "--masks", "nope"])
    assert bad.exit_code != 0 and "unknown mask 'nope'" in bad.output
