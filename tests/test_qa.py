"""Tests for maskgen.qa on synthetic alpha masks (exact outcomes)."""
from __future__ import annotations

import numpy as np
import pytest

from maskgen.fits import FITS
from maskgen.landmarks import load_prior
from maskgen.points import LANDMARK_GROUPS
from maskgen.qa import COVERED_ALPHA, QAResult, qa_check, sample_alpha

SIZE = 96


@pytest.fixture(scope="module")
def points() -> np.ndarray:
    """A canonical face: the prior's mean shape in a box (10, 10)-(86, 86), (68, 2) float32 (x, y)."""
    return (load_prior().mean_shape * 76 + 10).astype(np.float32)


def rows_alpha(top: float, bottom: float, value: float = 1.0) -> np.ndarray:
    """Alpha = ``value`` on image rows top <= y < bottom, 0 elsewhere."""
    a = np.zeros((SIZE, SIZE), np.float32)
    a[int(np.ceil(top)):int(np.ceil(bottom)), :] = value
    return a


def midway(a: float, b: float) -> float:
    return (a + b) / 2


def test_levels(points: np.ndarray) -> None:
    # the canonical face has clear vertical gaps between these features
    eyes_bottom = points[LANDMARK_GROUPS["eyes"], 1].max()
    nose_y = points[30, 1]
    mouth_top = points[LANDMARK_GROUPS["mouth"], 1].min()
    mouth_bottom = points[LANDMARK_GROUPS["mouth"], 1].max()
    assert eyes_bottom + 3 < nose_y < mouth_top - 3 < mouth_bottom + 3 < SIZE


def test_correct_fit(points: np.ndarray) -> None:
    eyes_bottom = points[LANDMARK_GROUPS["eyes"], 1].max()
    alpha = rows_alpha(midway(eyes_bottom, points[30, 1]), SIZE)
    r = qa_check(points, alpha, "correct")
    assert r == QAResult(passed=True, nose_covered=True, mouth_covered=True, eyes_visible=True, chin_covered=True)
    assert not qa_check(points, alpha, "nose_exposed").passed
    assert not qa_check(points, alpha, "chin_only").passed


def test_mask_over_the_eyes_fails(points: np.ndarray) -> None:
    alpha = rows_alpha(0, SIZE)
    r = qa_check(points, alpha, "correct")
    assert r.nose_covered and r.mouth_covered and not r.eyes_visible and not r.passed


def test_nose_exposed_fit(points: np.ndarray) -> None:
    alpha = rows_alpha(midway(points[30, 1], points[LANDMARK_GROUPS["mouth"], 1].min()), SIZE)
    r = qa_check(points, alpha, "nose_exposed")
    assert r == QAResult(passed=True, nose_covered=False, mouth_covered=True, eyes_visible=True, chin_covered=True)
    assert not qa_check(points, alpha, "correct").passed


def test_chin_only_fit(points: np.ndarray) -> None:
    alpha = rows_alpha(points[LANDMARK_GROUPS["mouth"], 1].max() + 1.5, SIZE)
    r = qa_check(points, alpha, "chin_only")
    assert r == QAResult(passed=True, nose_covered=False, mouth_covered=False, eyes_visible=True, chin_covered=True)
    assert not qa_check(points, alpha, "correct").passed


def test_no_mask(points: np.ndarray) -> None:
    r = qa_check(points, np.zeros((SIZE, SIZE), np.float32), "correct")
    assert r == QAResult(passed=False, nose_covered=False, mouth_covered=False, eyes_visible=True, chin_covered=False)
    assert r.to_dict() == {"qa_passed": False, "qa_nose_covered": False, "qa_mouth_covered": False,
                           "qa_eyes_visible": True, "qa_chin_covered": False, "qa_out_of_frame": 0}


def test_faint_alpha_is_not_coverage(points: np.ndarray) -> None:
    alpha = rows_alpha(0, SIZE, value=COVERED_ALPHA - 0.01)
    r = qa_check(points, alpha)
    assert not r.nose_covered and not r.mouth_covered and r.eyes_visible
    alpha = rows_alpha(0, SIZE, value=COVERED_ALPHA)
    assert qa_check(points, alpha).nose_covered


def test_partly_covered_mouth(points: np.ndarray) -> None:
    """Covering only the upper lip is not 'mouth covered'."""
    mouth = points[LANDMARK_GROUPS["mouth"]]
    alpha = rows_alpha(0, midway(mouth[:, 1].min(), mouth[:, 1].max()))
    assert not qa_check(points, alpha).mouth_covered


def test_points_outside_the_image_are_uncovered(points: np.ndarray) -> None:
    shifted = points + np.array([0, 200], np.float32)
    r = qa_check(shifted, np.ones((SIZE, SIZE), np.float32))
    assert not r.nose_covered and not r.mouth_covered and r.eyes_visible


def test_sample_alpha_bilinear() -> None:
    a = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)
    xy = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5], [0.25, 1.0], [-1.0, 0.0], [2.0, 0.0], [5.0, 5.0]])
    np.testing.assert_allclose(sample_alpha(a, xy), [0.0, 1.0, 0.5, 0.25, 0.0, 0.0, 0.0])


def test_validation(points: np.ndarray) -> None:
    alpha = np.zeros((SIZE, SIZE), np.float32)
    with pytest.raises(ValueError, match="unknown fit"):
        qa_check(points, alpha, "upside_down")
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        qa_check(points[:10], alpha)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        qa_check(points, np.zeros((SIZE, SIZE, 3)))
    bad = points.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        qa_check(bad, alpha)
    assert FITS == ("correct", "nose_exposed", "chin_only")


def test_points_outside_the_image_are_not_judged() -> None:
    """A mouth cut by the bottom border: only its in-frame points must be covered."""
    from maskgen.points import LANDMARK_GROUPS
    from maskgen.qa import qa_check

    pts = np.zeros((68, 2), np.float32)
    pts[:, 0] = 24.0
    pts[LANDMARK_GROUPS["eyes"], 1] = 15.0
    pts[30] = (24.0, 28.0)                      # nose tip
    mouth = LANDMARK_GROUPS["mouth"]
    pts[mouth, 1] = np.linspace(44.0, 52.0, len(mouth))   # half of the mouth below the 48-px frame
    pts[[6, 7, 8, 9, 10], 1] = 56.0             # chin outside the frame
    alpha = np.zeros((48, 48), np.float32)
    alpha[24:, :] = 1.0                         # covers everything from just above the nose tip down
    result = qa_check(pts, alpha, "correct")
    assert result.passed and result.mouth_covered and result.nose_covered and result.eyes_visible
    assert result.out_of_frame > 0
    assert not result.chin_covered             # no chin point in the frame: cannot be verified
    alpha[44:, :] = 0.0                         # in-frame mouth points uncovered -> fails
    assert not qa_check(pts, alpha, "correct").mouth_covered
