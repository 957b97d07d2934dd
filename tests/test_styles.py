"""maskgen.styles: mask styles (#29) sampled per row from their own stream, drawn purely by maskgen.render.

Faces: a synthetic one (the crop prior's mean face on a drawn head) and real ones with *supplied* landmarks
(the golden images' fixed points: scikit-image's LFW face 0 and the astronaut), so no dlib detection runs.
"""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from maskgen.cli import main
from maskgen.fits import MaskParams, StyleParams, sample_params
from maskgen.masks import EXTRA_MASKS, list_masks
from maskgen.pipeline import BuildConfig, mask_with_landmarks, resolve_masks, row_rng
from maskgen.styles import (DEFAULT_STYLES, STYLES, check_styles, get_style, list_styles, pick_style, style_pool,
                            style_rng)

GOLDEN_DIR = Path(__file__).parent / "golden"
SEEDS = range(8)


def synthetic_face() -> tuple[np.ndarray, np.ndarray]:
    """(48x48 uint8 gray head with eyes, nose and mouth drawn at the mean face's points, (68, 2) points)."""
    from maskgen.landmarks import load_prior

    pts = load_prior().mean_shape * 30 + 9
    img = np.full((48, 48), 70, np.uint8)
    centre = tuple(int(v) for v in pts.mean(axis=0))
    cv2.ellipse(img, centre, (17, 22), 0, 0, 360, 160, -1)
    for group in (range(36, 42), range(42, 48), range(48, 60)):
        cv2.fillPoly(img, [np.round(pts[list(group)]).astype(np.int32)], 60)
    return cv2.GaussianBlur(img, (0, 0), 0.8), pts


def lfw_face() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's LFW face 0 at 48x48 and its fixed (supplied) points from tests/golden."""
    data = pytest.importorskip("skimage.data")
    big = cv2.resize((data.lfw_subset()[0] * 255).round().astype(np.uint8), (200, 200), interpolation=cv2.INTER_CUBIC)
    pts = np.array(json.loads((GOLDEN_DIR / "surgical_lfw0.points.json").read_text()))
    return cv2.resize(big, (48, 48), interpolation=cv2.INTER_AREA), pts


def astronaut_face() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's face, 128x128 RGB, and its fixed points from tests/golden."""
    data = pytest.importorskip("skimage.data")
    img = cv2.resize(data.astronaut()[0:256, 120:376], (128, 128), interpolation=cv2.INTER_AREA)
    return img, np.array(json.loads((GOLDEN_DIR / "n95_colour_astronaut.points.json").read_text()))


@pytest.fixture(scope="module")
def faces() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"synthetic": synthetic_face(), "lfw0": lfw_face(), "astronaut": astronaut_face()}


# ------------------------------------------------------------------------------------------ registry
def test_registry_and_validation():
    assert list_styles()[0] == "classic" == DEFAULT_STYLES[0] and len(STYLES) >= 6
    assert {"flat_hard", "rigid_homography", "patterned", "feathered_halo"} <= set(STYLES)
    assert all(s.description for s in STYLES.values()) and STYLES["classic"].sample is None
    assert check_styles(None) is None and check_styles(["classic"]) is None   # the default set
    assert check_styles(["flat_hard", "classic", "flat_hard"]) == ("flat_hard", "classic")
    with pytest.raises(ValueError, match=r"unknown style 'nope'; valid styles: classic, flat_hard"):
        check_styles(["flat_hard", "nope"])
    with pytest.raises(ValueError, match="no styles given"):
        check_styles([])
    with pytest.raises(ValueError, match="an empty style name in the list"):  # --styles "flat_hard,,classic"
        check_styles(["flat_hard", "", "classic"])
    with pytest.raises(ValueError, match="unknown style"):
        get_style("Classic")


def test_style_params_validate_and_round_trip():
    look = StyleParams(warp="homography", tone=0.3, color=(0.1, 0.2, 0.3), pattern="camo", halo=-0.5)
    p = MaskParams(mask="cloth", style="mixed", look=look)
    d = p.to_dict()
    assert d["style"] == "mixed" and d["look"]["warp"] == "homography" and MaskParams.from_dict(d) == p
    assert "style" not in MaskParams(mask="cloth").to_dict() and "look" not in MaskParams(mask="cloth").to_dict()
    assert MaskParams.from_dict(MaskParams(mask="cloth", style="classic").to_dict()).style == "classic"
    for bad in (dict(warp="bent"), dict(light_from="mouth"),
                dict(pattern="paisley"), dict(lighting=2.0), dict(hardness=-1.0), dict(scale=0.0),
                dict(halo=1.5), dict(feather=-0.1)):
        with pytest.raises(ValueError):
            StyleParams(**bad)
    for style in STYLES.values():   # every sampler gives valid params for any draws, including the extremes
        if style.sample is not None:
            for u in (np.zeros(32), np.full(32, 0.999999), np.random.default_rng(0).random(32)):
                assert isinstance(style.sample(u), StyleParams)


def test_style_pools_add_the_extra_artwork_only_where_a_style_says_so():
    assert style_pool(get_style("classic"), None) == list_masks()
    assert not set(EXTRA_MASKS) & set(list_masks()), "the default pool is today's"
    assert style_pool(get_style("patterned"), None) == list_masks() + list(EXTRA_MASKS)
    assert style_pool(get_style("flat_hard"), ["n95"]) == ["n95"]
    assert set(style_pool(get_style("mixed"), ["n95"])) == {"n95", *EXTRA_MASKS}


# ------------------------------------------------------------------------------------------ rendering
@pytest.mark.parametrize("style", list(STYLES))
def test_every_style_renders_inside_the_image_and_covers_nose_and_mouth(faces, style):
    passed = total = 0
    for face, (image, pts) in faces.items():
        for seed in SEEDS:
            out, alpha, params, q = mask_with_landmarks(image, pts, np.random.default_rng([seed, 5]), styles=[style],
                                                        color=True)
            assert out.shape == image.shape and out.dtype == np.uint8
            assert alpha.shape == image.shape[:2] and alpha.dtype == np.float32
            assert 0.0 <= alpha.min() and alpha.max() <= 1.0 and alpha.max() > 0.9, (face, seed)
            assert params.style == (None if style == "classic" else style)   # classic alone: the default set
            assert (params.look is None) == (style == "classic")
            assert q.nose_covered and q.mouth_covered, (style, face, seed, params)
            assert np.abs(out.astype(int) - image).max() > 30, "something visible was drawn"
            passed += q.passed
            total += 1
    assert passed >= 0.9 * total, f"{style}: QA passed on {passed}/{total}"


@pytest.mark.parametrize("style", list(STYLES))
def test_styles_are_deterministic_and_pure(faces, style):
    image, pts = faces["astronaut"]
    before = (image.copy(), pts.copy())
    a = mask_with_landmarks(image, pts, np.random.default_rng([1, 2]), styles=[style], color=True)
    b = mask_with_landmarks(image, pts, np.random.default_rng([1, 2]), styles=[style], color=True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    np.testing.assert_array_equal(image, before[0])
    np.testing.assert_array_equal(pts, before[1])
    c = mask_with_landmarks(image, pts, np.random.default_rng([1, 3]), styles=[style], color=True)
    assert c[2] != a[2]
    d = a[2].to_dict()
    assert json.loads(json.dumps(d)) == d and MaskParams.from_dict(d).to_dict() == d


def test_styles_look_different_from_classic(faces):
    """Same row, same classic draws: each style changes the picture by more than the golden tolerance."""
    gray, pts = faces["lfw0"]
    for style in list(STYLES)[1:]:
        diffs = []
        for seed in SEEDS:
            classic, *_ = mask_with_landmarks(gray, pts, np.random.default_rng([seed, 1]))
            styled, *_ = mask_with_landmarks(gray, pts, np.random.default_rng([seed, 1]), styles=[style])
            diffs.append(np.abs(classic.astype(int) - styled).mean())
        assert np.mean(diffs) > 1.0, (style, diffs)


def test_classic_shading_shows_the_covered_face_and_unlit_does_not(faces):
    """Change only the face under the mask (a dark open mouth): where the mask is opaque, a classic mask's
    pixels change with it (its shading is the face's blurred luminance), an ``unlit`` or ``visible_lit``
    mask's do not."""
    gray, pts = faces["synthetic"]
    mouth = gray.copy()
    cv2.fillPoly(mouth, [np.round(pts[48:60] + [0, 2]).astype(np.int32)], 10)   # a wide-open, dark mouth
    for seed in SEEDS:
        changed = {}
        for style in ("classic", "unlit", "visible_lit"):
            before, alpha, *_ = mask_with_landmarks(gray, pts, np.random.default_rng([seed, 2]), styles=[style])
            after, alpha2, *_ = mask_with_landmarks(mouth, pts, np.random.default_rng([seed, 2]), styles=[style])
            np.testing.assert_array_equal(alpha, alpha2)
            opaque = alpha > 0.999
            assert opaque.sum() > 100
            changed[style] = np.abs(before.astype(int) - after)[opaque].max()
        assert changed["classic"] >= 3 and changed["unlit"] == 0 and changed["visible_lit"] == 0, (seed, changed)


@pytest.mark.parametrize("face", ["lfw0", "astronaut"])
def test_visible_lit_reads_nothing_under_the_mask(faces, face):
    """Replace every pixel the mask covers at all by noise: a ``visible_lit`` mask is the same wherever it is
    opaque (its light comes from the uncovered face only; 1 grey level of rounding where the 0.1 % of the
    face still blended in changes); a classic one is not."""
    image, pts = faces[face]
    for seed in SEEDS[:4]:
        out, alpha, *_ = mask_with_landmarks(image, pts, np.random.default_rng([seed, 4]), styles=["visible_lit"],
                                             color=True)
        covered = alpha > 0
        noisy = image.copy()
        noisy[covered] = np.random.default_rng(seed).integers(0, 256, noisy[covered].shape, dtype=np.uint8)
        again, alpha2, *_ = mask_with_landmarks(noisy, pts, np.random.default_rng([seed, 4]), styles=["visible_lit"],
                                                color=True)
        np.testing.assert_array_equal(alpha, alpha2)
        opaque = alpha > 0.999
        assert opaque.sum() > 100
        assert np.abs(out.astype(int) - again)[opaque].max() <= 1
        classic, *_ = mask_with_landmarks(image, pts, np.random.default_rng([seed, 4]), color=True)
        classic2, *_ = mask_with_landmarks(noisy, pts, np.random.default_rng([seed, 4]), color=True)
        assert np.abs(classic.astype(int) - classic2)[opaque].max() >= 3


def test_visible_lit_follows_a_side_light(faces):
    """Add a side light (brightness ramps 0.45 -> 1 from the image's left to its right): the right half
    of a ``visible_lit`` mask gains on its left half about as much as a classic mask's does (more than
    half of it, and at least 3 grey levels), an ``unlit`` mask's not (within rounding)."""
    gray, pts = faces["lfw0"]
    ramp = np.linspace(0.45, 1.0, gray.shape[1])[None, :]
    lit = np.clip(gray * ramp, 0, 255).astype(np.uint8)
    xs = np.arange(gray.shape[1])[None, :].repeat(gray.shape[0], 0)

    def right_minus_left(image: np.ndarray, style: str, seed: int) -> float:
        out, alpha, *_ = mask_with_landmarks(image, pts, np.random.default_rng([seed, 6]), styles=[style])
        opaque = alpha > 0.999
        cols = np.nonzero(opaque.any(0))[0]
        mid = (cols.min() + cols.max()) / 2
        return float(out[opaque & (xs > mid)].mean() - out[opaque & (xs < mid)].mean())

    for seed in SEEDS[:4]:
        gain = {style: right_minus_left(lit, style, seed) - right_minus_left(gray, style, seed)
                for style in ("classic", "visible_lit", "unlit")}
        assert gain["classic"] > 3 and gain["visible_lit"] > max(3.0, 0.5 * gain["classic"]), (seed, gain)
        assert abs(gain["unlit"]) < 0.5, (seed, gain)   # the 0.1 % of the face blended into "opaque" pixels


# ------------------------------------------------------------------------------------------ default bytes
def test_default_and_classic_style_sets_draw_exactly_todays_bytes(faces):
    for face, (image, pts) in faces.items():
        for seed in SEEDS:
            today = mask_with_landmarks(image, pts, np.random.default_rng([seed, 9]), color=True)
            for styles in (None, ("classic",), ["classic", "classic"]):
                again = mask_with_landmarks(image, pts, np.random.default_rng([seed, 9]), color=True, styles=styles)
                np.testing.assert_array_equal(today[0], again[0])
                assert today[2] == again[2] and "style" not in again[2].to_dict()


def test_style_stream_leaves_the_row_stream_alone(faces):
    """The style comes from its own stream: the classic draws (mask, colour, fit, jitter) are the same, and a
    classic row inside a styled build has today's pixels."""
    gray, pts = faces["lfw0"]
    for seed in range(30):
        rng = np.random.default_rng([seed, 4])
        styled = mask_with_landmarks(gray, pts, rng, styles=["classic", "flat_hard", "feathered_halo"])
        today = mask_with_landmarks(gray, pts, np.random.default_rng([seed, 4]))
        assert replace(styled[2], style=None, look=None) == today[2]
        if styled[2].style == "classic":
            np.testing.assert_array_equal(styled[0], today[0])
        after = np.random.default_rng([seed, 4])
        sample_params(after, pts)
        assert rng.random() == after.random(), "the row stream advanced exactly as today"
    first = style_rng(np.random.default_rng([3, 7]))
    used = np.random.default_rng([3, 7])
    used.random(50)
    assert first.random() == style_rng(used).random(), "the style stream depends on the seed, not the state"
    seen = {pick_style(style_rng(np.random.default_rng([s, 0])), list(STYLES))[0].name for s in range(200)}
    assert seen == set(STYLES)


# ------------------------------------------------------------------------------------------ builds and CLI
def _supplied_build_inputs(tmp_path: Path, n: int = 12) -> tuple[Path, Path]:
    """A FER2013 CSV of ``n`` synthetic faces and a landmarks file supplying their points (no detection)."""
    image, pts = synthetic_face()
    csv_path = tmp_path / "fer2013.csv"
    rows = [f"{i % 7},{' '.join(map(str, np.roll(image, i % 3, axis=1).ravel()))},Training" for i in range(n)]
    csv_path.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    marks = tmp_path / "landmarks.csv"
    text = ";".join(f"{v:.3f}" for v in pts.ravel())
    marks.write_text("row,facial_landmarks\n" + "".join(f"{i},{text}\n" for i in range(n)))
    return csv_path, marks


def _sidecar(path: Path) -> list[dict]:
    with open(path.with_name(path.stem + ".meta.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_held_out_style_never_appears_and_the_recipe_names_the_styles(tmp_path):
    from maskgen.smfer import build_smfer

    src, marks = _supplied_build_inputs(tmp_path)
    ids = {}
    for name, styles in {"default": None, "classic": ("classic",), "train": ("classic", "flat_hard", "patterned"),
                         "test": ("rigid_homography",)}.items():
        out = tmp_path / f"{name}.csv"
        build_smfer(src, out, config=BuildConfig(landmarks=str(marks), styles=styles), jobs=1,
                    backend="sequential", progress=False)
        manifest = json.loads(out.with_name(f"{name}.manifest.json").read_text())
        ids[name] = manifest["build_id"]
        params = [json.loads(r["params"]) for r in _sidecar(out)]
        assert all(r["status"] == "masked" for r in _sidecar(out))
        if styles is None or styles == ("classic",):
            assert "styles" not in manifest["build"]["options"] and all("style" not in p for p in params)
        else:
            assert manifest["build"]["options"]["styles"] == list(styles)
            assert {p["style"] for p in params} <= set(styles)
    assert {p["style"] for p in params} == {"rigid_homography"}
    train = {json.loads(r["params"])["style"] for r in _sidecar(tmp_path / "train.csv")}
    assert "rigid_homography" not in train and len(train) >= 2
    assert ids["default"] == ids["classic"] and len({ids["default"], ids["train"], ids["test"]}) == 3
    assert (tmp_path / "default.csv").read_bytes() == (tmp_path / "classic.csv").read_bytes()
    assert (tmp_path / "default.meta.csv").read_bytes() == (tmp_path / "classic.meta.csv").read_bytes()


def test_resolve_masks_checks_styles_and_keeps_extra_artwork_builtin():
    with pytest.raises(ValueError, match="valid styles: classic"):
        resolve_masks(BuildConfig(styles=("fancy",)))
    assert resolve_masks(BuildConfig(styles=("classic",))).styles is None
    config = resolve_masks(BuildConfig(masks=("bandana", "n95"), styles=("mixed",)))
    assert config.templates == () and config.styles == ("mixed",), "built-in artwork keeps the recipe id"
    assert row_rng(0, 1).random() == np.random.default_rng([0, 1]).random()


@pytest.mark.parametrize("command", ["build-smfer", "preview", "mask-image"])
def test_cli_styles_are_checked_before_any_work(tmp_path, small_fer, command):
    args = {"build-smfer": [str(small_fer), "-o", str(tmp_path / "out.csv")],
            "preview": [str(small_fer), "-o", str(tmp_path / "sheet.png")],
            "mask-image": [str(small_fer), "-o", str(tmp_path / "masked")]}[command]
    result = CliRunner().invoke(main, [command, *args, "--styles", "classic,nope"])
    assert result.exit_code == 2, result.output
    assert "unknown style 'nope'" in result.output and "valid styles: classic, flat_hard" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fer2013.csv"], "nothing written"


def test_list_masks_lists_extra_artwork_and_styles():
    result = CliRunner().invoke(main, ["list-masks"])
    assert result.exit_code == 0
    words = result.output.split()
    assert set(list_masks()) | set(EXTRA_MASKS) | set(STYLES) <= set(words)
    assert result.output.splitlines()[:len(list_masks())] == list_masks()


def test_every_style_is_documented():
    text = (Path(__file__).resolve().parents[1] / "docs" / "masks.md").read_text()
    for name in [*STYLES, *EXTRA_MASKS]:
        assert f"| `{name}` |" in text, f"docs/masks.md: add {name} to its table"
    assert "scripts/style_sheet.py" in text and (Path(__file__).resolve().parents[1] / "docs" / "mask_styles.png").is_file()


def test_folder_builds_record_styles_and_resume_only_the_same_set(tmp_path):
    from maskgen.folders import META_NAME, build_folder

    image, pts = synthetic_face()
    src = tmp_path / "faces"
    src.mkdir()
    for i in range(4):
        cv2.imwrite(str(src / f"f{i}.png"), np.roll(image, i, axis=1))
    marks = tmp_path / "landmarks.csv"
    text = ";".join(f"{v:.3f}" for v in pts.ravel())
    marks.write_text("path,facial_landmarks\n" + "".join(f"f{i}.png,{text}\n" for i in range(4)))
    config = BuildConfig(landmarks=str(marks), styles=("flat_hard", "feathered_halo"))
    build_folder(src, tmp_path / "out", config=config, jobs=1, backend="sequential", progress=False)
    with open(tmp_path / "out" / META_NAME, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {json.loads(r["params"])["style"] for r in rows} <= {"flat_hard", "feathered_halo"}
    with pytest.raises(ValueError, match="styles"):
        build_folder(src, tmp_path / "out", config=replace(config, styles=("mixed",)), jobs=1, backend="sequential",
                     progress=False, resume=True)
