"""Tests for maskgen.landmarks with real faces shipped by scikit-image."""
from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

skimage_data = pytest.importorskip("skimage.data")

from maskgen import landmarks as lm  # noqa: E402
from maskgen.landmarks import (  # noqa: E402
    Landmarks,
    LandmarkDetector,
    detect_faces,
    get_detector,
    landmarks_for_crop,
    load_prior,
)
from maskgen.points import CHIN, LANDMARK_GROUPS, NOSE_TIP, fit_box_to_points, procrustes_distance  # noqa: E402


@pytest.fixture(scope="module")
def lfw_faces() -> np.ndarray:
    """(100, 25, 25) uint8 face crops (the first half of lfw_subset)."""
    return (skimage_data.lfw_subset()[:100] * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


def to_fer(face: np.ndarray) -> np.ndarray:
    """An lfw crop resized to a FER2013-like (48, 48) uint8 image."""
    return cv2.resize(face, (48, 48), interpolation=cv2.INTER_LINEAR)


def assert_face_geometry(p: Landmarks) -> None:
    """Eyes above nose tip above mouth above chin; subject's right eye on the image's left."""
    eyes_y = p.group("eyes")[:, 1].mean()
    nose_y = p.points[NOSE_TIP, 1]
    mouth_y = p.group("mouth")[:, 1].mean()
    chin_y = p.points[CHIN, 1]
    assert eyes_y < nose_y < mouth_y < chin_y
    assert p.group("right_eye")[:, 0].mean() < p.group("left_eye")[:, 0].mean()
    assert p.group("right_eyebrow")[:, 1].mean() < p.group("right_eye")[:, 1].mean()


def test_groups_cover_the_68_points_once() -> None:
    base = ["jaw", "right_eyebrow", "left_eyebrow", "nose_bridge", "nose_tip", "right_eye", "left_eye"]
    idx = np.concatenate([LANDMARK_GROUPS[g] for g in base])
    assert sorted(idx.tolist()) == list(range(48))
    lips = set(LANDMARK_GROUPS["top_lip"].tolist()) | set(LANDMARK_GROUPS["bottom_lip"].tolist())
    assert lips == set(range(48, 68))
    with pytest.raises(ValueError, match="read-only"):
        LANDMARK_GROUPS["jaw"][0] = 3  # read-only arrays
    p = Landmarks(points=np.zeros((68, 2), np.float32), source="x", score=0.0, accepted=True, box=(0, 0, 1, 1))
    with pytest.raises(ValueError, match="unknown landmark group"):
        p.group("ears")


def test_models_are_not_loaded_at_import_or_construction() -> None:
    det = LandmarkDetector()
    assert "predictor" not in det.__dict__ and "hog" not in det.__dict__ and "cnn" not in det.__dict__


def test_get_detector_is_a_singleton() -> None:
    assert get_detector() is get_detector()


def test_procrustes_distance_invariances() -> None:
    shape = load_prior().mean_shape
    theta = 0.3
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = 3.7 * shape @ rot.T + np.array([10.0, -4.0])
    assert procrustes_distance(moved, shape) == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(0)
    assert procrustes_distance(rng.normal(size=(68, 2)), shape) > 0.5


def test_fit_box_to_points_inverts_the_box_mapping() -> None:
    shape = load_prior().mean_shape
    box = (5.0, 7.0, 41.0, 43.0)
    pts = shape * 36.0 + np.array([5.0, 7.0])
    assert fit_box_to_points(pts, shape) == pytest.approx(box)


def test_for_crop_on_lfw_faces(lfw_faces: np.ndarray) -> None:
    results = [landmarks_for_crop(to_fer(f)) for f in lfw_faces[:40]]
    accepted = [r for r in results if r.accepted]
    assert len(accepted) >= 38
    for r in accepted:
        assert r.points.shape == (68, 2) and r.points.dtype == np.float32
        assert r.source in ("hog", "prior", "cnn")
        assert_face_geometry(r)
        # the face fills most of an aligned crop
        assert np.all(r.points > -6) and np.all(r.points < 54)


def test_for_crop_accepts_any_crop_size_and_maps_back(lfw_faces: np.ndarray) -> None:
    """Landmarks scale with the crop: 25x25 and its 48x48 resize agree in relative position."""
    face = lfw_faces[0]
    small = landmarks_for_crop(face)
    big = landmarks_for_crop(to_fer(face))
    assert small.accepted and big.accepted
    rel_small = (small.points + 0.5) / 25
    rel_big = (big.points + 0.5) / 48
    iod = np.linalg.norm(rel_big[36:42].mean(0) - rel_big[42:48].mean(0))
    assert np.abs(rel_small - rel_big).mean() < 0.15 * iod


def test_for_crop_prior_fallback_agrees_with_hog(lfw_faces: np.ndarray) -> None:
    det = get_detector()
    errs = []
    for f in lfw_faces[:20]:
        g = to_fer(f)
        ref = det.crop_hog(g, threshold=0.0)
        if ref is None or not ref.accepted:
            continue
        pri = det.crop_prior(g)
        iod = np.linalg.norm(ref.points[36:42].mean(0) - ref.points[42:48].mean(0))
        errs.append(np.linalg.norm(pri.points - ref.points, axis=1).mean() / iod)
    assert len(errs) >= 15
    assert np.median(errs) < 0.08


def test_for_crop_validates_input() -> None:
    with pytest.raises(TypeError, match="uint8"):
        landmarks_for_crop(np.zeros((48, 48), np.float32))
    with pytest.raises(ValueError, match="shape"):
        landmarks_for_crop(np.zeros((48,), np.uint8))


def test_for_crop_never_raises_on_blank_or_noise() -> None:
    rng = np.random.default_rng(1)
    for img in (np.zeros((48, 48), np.uint8), np.full((48, 48), 200, np.uint8),
                rng.integers(0, 256, (48, 48), dtype=np.uint8)):
        r = landmarks_for_crop(img)
        assert r.points.shape == (68, 2) and np.isfinite(r.points).all()
        assert isinstance(r.accepted, bool)


@pytest.mark.parametrize("value", [0, 128, 255])
def test_for_crop_does_not_accept_blank_crops(value: int) -> None:
    r = landmarks_for_crop(np.full((48, 48), value, np.uint8))
    assert not r.accepted and r.points.shape == (68, 2)


def test_detect_faces_astronaut(astronaut: np.ndarray) -> None:
    faces = detect_faces(astronaut)
    assert len(faces) == 1
    f = faces[0]
    assert f.accepted and f.source in ("hog", "cnn")
    left, top, right, bottom = f.box
    # Eileen Collins' face is around x 170-270, y 70-170 in the 512x512 picture
    assert 140 < left < right < 300 and 40 < top < bottom < 200
    assert_face_geometry(f)
    gray = detect_faces(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY))
    assert len(gray) == 1 and np.abs(gray[0].points - f.points).max() < 3


def test_detect_faces_finds_several_faces(astronaut: np.ndarray) -> None:
    face = astronaut[40:220, 120:320]
    scene = np.hstack([face, np.full_like(face, 90), face[:, ::-1]])
    faces = detect_faces(scene)
    assert len(faces) == 2
    assert faces[0].box[0] < faces[1].box[0]  # sorted left to right
    assert faces[0].box[2] < face.shape[1] < 2 * face.shape[1] < faces[1].box[0]


def test_detect_faces_on_upscaled_lfw_faces(lfw_faces: np.ndarray) -> None:
    found = 0
    for f in lfw_faces[:10]:
        img = cv2.resize(cv2.copyMakeBorder(f, 6, 6, 6, 6, cv2.BORDER_REPLICATE), None, fx=4, fy=4)
        faces = detect_faces(img)
        assert len(faces) <= 1
        if faces:
            found += 1
            assert_face_geometry(faces[0])
    assert found >= 8


@pytest.mark.parametrize("kind", ["flat", "noise_gray", "noise_rgb", "black"])
def test_detect_faces_no_face(kind: str) -> None:
    rng = np.random.default_rng(7)
    img = {
        "flat": np.full((120, 160), 128, np.uint8),
        "noise_gray": rng.integers(0, 256, (200, 200), dtype=np.uint8),
        "noise_rgb": rng.integers(0, 256, (160, 240, 3), dtype=np.uint8),
        "black": np.zeros((64, 64, 3), np.uint8),
    }[kind]
    assert detect_faces(img) == []


def test_detector_pickles_without_models(lfw_faces: np.ndarray) -> None:
    det = LandmarkDetector()
    det.for_crop(to_fer(lfw_faces[0]))
    clone = pickle.loads(pickle.dumps(det))
    assert "predictor" not in clone.__dict__
    a, b = det.for_crop(to_fer(lfw_faces[1])), clone.for_crop(to_fer(lfw_faces[1]))
    np.testing.assert_array_equal(a.points, b.points)
    assert a.source == b.source


def test_crop_cnn_stage_on_an_lfw_face(lfw_faces: np.ndarray) -> None:
    r = get_detector().crop_cnn(to_fer(lfw_faces[2]))
    assert r is not None and r.source == "cnn" and r.accepted
    assert_face_geometry(r)


def test_crop_prior_fixed_box_without_regressor(lfw_faces: np.ndarray) -> None:
    """regress=False, max_iter=0 puts the predictor in the fixed median prior box."""
    det = get_detector()
    g = to_fer(lfw_faces[3])
    fixed = det.crop_prior(g, regress=False, max_iter=0)
    pl, pt, pr, pb = det.prior.box
    np.testing.assert_allclose(fixed.box, (pl * 48, pt * 48, pr * 48, pb * 48), atol=0.5)
    assert fixed.source == "prior"


def test_regressed_prior_box_is_not_refined_but_fixed_box_is(lfw_faces: np.ndarray) -> None:
    """One predictor run in the regressed box; the fixed box is re-fitted to the points (refine)."""
    det = LandmarkDetector()
    calls = []
    predict = det._predict

    def counting(image, box):
        calls.append(box)
        return predict(image, box)

    det._predict = counting  # type: ignore[method-assign]
    g = to_fer(lfw_faces[3])
    det.crop_prior(g)
    assert len(calls) == 1
    calls.clear()
    det.crop_prior(g, regress=False)
    assert len(calls) >= 2


def test_mirrored_astronaut_has_exactly_two_faces(astronaut: np.ndarray) -> None:
    """Face evidence: the mission patch (a weak HOG detection) is not confirmed by the CNN."""
    faces = detect_faces(np.hstack([astronaut, astronaut[:, ::-1]]))
    assert len(faces) == 2
    assert all(40 < f.box[1] < 200 for f in faces)  # both are the face, not the patch (y ~ 330-430)
    assert faces[0].box[2] < 512 < faces[1].box[0]


@pytest.mark.slow
def test_photo_mode_precision_and_recall_on_lfw() -> None:
    """lfw_subset: 100 faces and 100 non-faces, upscaled 4x (100x100): >= 95 faces found, <= 1 non-face."""
    crops = (skimage_data.lfw_subset() * 255).round().astype(np.uint8)
    found = [bool(detect_faces(cv2.resize(c, (100, 100), interpolation=cv2.INTER_CUBIC))) for c in crops]
    assert sum(found[:100]) >= 95, sum(found[:100])
    assert sum(found[100:]) <= 1, sum(found[100:])


def test_crop_face_evidence(lfw_faces: np.ndarray) -> None:
    """Faces score higher face evidence than non-faces; blank crops sit at the floor; landmarks unchanged."""
    from maskgen.landmarks.dlib_chain import EVIDENCE_FLOOR

    det = get_detector()
    non_faces = (skimage_data.lfw_subset()[100:130] * 255).round().astype(np.uint8)
    faces = [det.for_crop(f) for f in lfw_faces[:30]]
    others = [det.for_crop(f) for f in non_faces]
    assert all(EVIDENCE_FLOOR <= m.evidence for m in faces + others)
    assert np.median([m.evidence for m in faces]) > np.median([m.evidence for m in others]) + 0.5
    assert det.for_crop(np.full((48, 48), 90, np.uint8)).evidence == EVIDENCE_FLOOR
    hog = [m for m in faces if m.source == "hog"]
    assert hog and all(m.evidence == m.confidence for m in hog)
