"""maskgen.masks: registry, built-in templates, custom masks and spec errors, parameter sampling."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from maskgen.fits import MaskParams, sample_params
from maskgen.masks import (BUILTIN_MASKS, EXTRA_MASKS, MaskSpecError, get_mask, list_masks, load_mask_spec,
                           register_mask, unregister_mask)
from maskgen.pipeline import apply_mask
from maskgen.qa import qa_check
from maskgen.templates import PATTERNS, resolve_landmark

MAX_TEMPLATE_WIDTH = 512


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    """A real 48x48 face (skimage LFW, upscaled for dlib) and its (68, 2) landmarks."""
    import dlib
    data = pytest.importorskip("skimage.data")

    from maskgen._resources import SHAPE_PREDICTOR_68, dlib_model_path

    big = cv2.resize((data.lfw_subset()[0] * 255).round().astype(np.uint8), (200, 200),
                     interpolation=cv2.INTER_CUBIC)
    rect = dlib.get_frontal_face_detector()(big, 1)[0]
    shape = dlib.shape_predictor(str(dlib_model_path(SHAPE_PREDICTOR_68)))(big, rect)
    pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
    return cv2.resize(big, (48, 48), interpolation=cv2.INTER_AREA), (pts + 0.5) * 48 / 200 - 0.5


def oval_rgba(w: int = 200, h: int = 160, colour=(40, 160, 90)) -> np.ndarray:
    """A simple custom mask picture: a filled ellipse, (h, w, 4) uint8 RGBA."""
    img = np.zeros((h, w, 4), np.uint8)
    cv2.ellipse(img, (w // 2, h // 2), (w // 2 - 4, h // 2 - 4), 0, 0, 360, (*colour, 255), -1, cv2.LINE_AA)
    return img


#: anchors of the oval, shorthand form {landmark name: (x, y)}
OVAL_ANCHORS = {"jaw_2": (12.0, 50.0), "jaw_14": (188.0, 50.0), "chin": (100.0, 150.0),
                "nose_bridge_1": (100.0, 8.0), "mouth_3": (100.0, 95.0)}


@pytest.fixture
def custom_name():
    name = "test_oval"
    yield name
    if name in list_masks():
        unregister_mask(name)


def write_spec(folder: Path, picture: np.ndarray | None = None, **overrides) -> Path:
    """An oval spec (JSON) + PNG in ``folder``; ``overrides`` replace spec keys (None deletes one)."""
    img = oval_rgba() if picture is None else picture
    cv2.imwrite(str(folder / "oval.png"), cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA if img.shape[2] == 4
                                                          else cv2.COLOR_RGB2BGR))
    spec = {"name": "spec_oval", "image": "oval.png",
            "anchors": {k: {"xy": list(v), "landmark": k} for k, v in OVAL_ANCHORS.items()}}
    for k, v in overrides.items():
        if v is None:
            spec.pop(k, None)
        else:
            spec[k] = v
    path = folder / "oval.json"
    path.write_text(json.dumps(spec))
    return path


# ------------------------------------------------------------------------------------------ built-ins
def test_builtins_registered_once_in_order():
    names = list_masks()
    assert tuple(names[:len(BUILTIN_MASKS)]) == BUILTIN_MASKS
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", BUILTIN_MASKS)
def test_builtin_templates_are_small_rgba_with_valid_anchors(name):
    t = get_mask(name)
    h, w = t.image.shape[:2]
    assert t.image.dtype == np.uint8 and t.image.shape[2] == 4
    assert w <= MAX_TEMPLATE_WIDTH
    assert t.tintable and t.colors and t.description
    for x, y in t.anchors.values():
        assert 0 <= x < w and 0 <= y < h
    assert t.anchor_weights.shape == (len(t.anchors), 68)
    np.testing.assert_allclose(t.anchor_weights.sum(axis=1), 1.0)
    a = t.image[..., 3]
    assert a.max() == 255 and ((a > 0) & (a < 255)).any(), "opaque body with anti-aliased edges"


def test_get_mask_unknown_lists_valid_names():
    with pytest.raises(ValueError, match="unknown mask 'nope'.*surgical.*gaiter"):
        get_mask("nope")


def test_resolve_landmark_forms():
    assert resolve_landmark("chin").argmax() == 8
    assert resolve_landmark("jaw_8").argmax() == 8
    assert resolve_landmark("mouth_3").argmax() == 51
    assert resolve_landmark(33).argmax() == 33
    mix = resolve_landmark({"jaw_2": 1, "nose_tip_0": 3})
    assert mix[2] == pytest.approx(0.25) and mix[31] == pytest.approx(0.75)
    with pytest.raises(MaskSpecError, match="unknown landmark name 'nostril'"):
        resolve_landmark("nostril")
    with pytest.raises(MaskSpecError, match="outside 0..67"):
        resolve_landmark(68)


# ------------------------------------------------------------------------------------------ custom masks
def test_register_custom_mask_via_api_renders_and_is_listed(face, custom_name):
    t = register_mask(custom_name, oval_rgba(), OVAL_ANCHORS, description="green oval")
    assert custom_name in list_masks() and get_mask(custom_name) is t
    gray, pts = face
    params = sample_params(np.random.default_rng(0), pts, masks=[custom_name])
    assert params.mask == custom_name and params.color_name == "artwork"
    out, alpha = apply_mask(gray, pts, params)
    assert qa_check(pts, alpha, "correct").passed
    rgb = np.repeat(gray[..., None], 3, axis=2)
    out_c, _ = apply_mask(rgb, pts, sample_params(np.random.default_rng(0), pts, masks=[custom_name], color=True))
    inside = alpha > 0.99
    assert (out_c[inside][:, 1].astype(int) - out_c[inside][:, 0]).mean() > 20, "keeps its own green colour"
    with pytest.raises(ValueError, match="already registered"):
        register_mask(custom_name, oval_rgba(), OVAL_ANCHORS)
    import maskgen
    assert maskgen.get_mask(custom_name) is t and custom_name in maskgen.list_masks()   # package-level API
    # ... and the CLI sees it (same process)
    from maskgen.cli import main
    result = CliRunner().invoke(main, ["list-masks"])
    assert result.exit_code == 0 and custom_name in result.output.split()


def test_builtin_names_cannot_be_replaced_or_removed():
    with pytest.raises(ValueError, match="built-in"):
        register_mask("surgical", oval_rgba(), OVAL_ANCHORS, overwrite=True)
    with pytest.raises(ValueError, match="built-in"):
        unregister_mask("surgical")


def test_load_json_and_toml_specs(tmp_path, face):
    t = load_mask_spec(write_spec(tmp_path))
    try:
        assert t.name in list_masks() and t.anchors["chin"] == (100.0, 150.0)
        gray, pts = face
        _, alpha = apply_mask(gray, pts, MaskParams(mask=t.name))
        assert alpha.max() > 0.99
    finally:
        unregister_mask(t.name)
    toml = tmp_path / "oval.toml"
    lines = ['name = "toml_oval"', 'image = "oval.png"', 'tintable = true', 'colors = [["mint", "#a0e0c0", 1]]']
    for k, (x, y) in OVAL_ANCHORS.items():
        lines += [f"[anchors.{k}]", f"xy = [{x}, {y}]", f'landmark = "{k}"']
    toml.write_text("\n".join(lines) + "\n")
    t2 = load_mask_spec(toml, register=False)
    assert t2.name == "toml_oval" and t2.tintable and t2.colors[0][0] == "mint"
    assert "toml_oval" not in list_masks()


@pytest.mark.parametrize("overrides, image, message", [
    (dict(anchors={}), None, "need at least 4 anchors"),
    (dict(anchors=None), None, "missing required key 'anchors'"),
    (dict(image=None), None, "missing required key 'image'"),
    (dict(), np.full((50, 60, 3), 200, np.uint8), "no alpha channel"),
    (dict(image="missing.png"), None, "not found"),
    (dict(anchors={**{k: {"xy": list(v), "landmark": k} for k, v in OVAL_ANCHORS.items()},
                   "far": {"xy": [500, 20], "landmark": "jaw_0"}}), None, r"anchor 'far'.*outside the 200x160 image"),
    (dict(anchors={**{k: {"xy": list(v), "landmark": k} for k, v in OVAL_ANCHORS.items()},
                   "x": {"xy": [50, 20], "landmark": "left_ear"}}), None, "unknown landmark name 'left_ear'"),
    (dict(anchors={**{k: {"xy": list(v), "landmark": k} for k, v in OVAL_ANCHORS.items()},
                   "x": {"xy": [50, 20]}}), None, "needs 'xy' and 'landmark'"),
    (dict(anchors={f"jaw_{i}": {"xy": [10 + 10 * i, 10 + 10 * i], "landmark": f"jaw_{i}"} for i in range(5)}),
     None, "on one line"),
    (dict(colors=[["blue", "blue", 1]]), None, "bad colour"),
    (dict(patterns=["zigzag"]), None, "unknown pattern 'zigzag'"),
    (dict(colour="#ffffff"), None, r"unknown keys \['colour'\]"),
])
def test_bad_specs_give_clear_errors(tmp_path, overrides, image, message):
    path = write_spec(tmp_path, image, **overrides)
    with pytest.raises(MaskSpecError, match=message) as err:
        load_mask_spec(path)
    assert str(path) in str(err.value), "the message names the spec file"


def test_bad_spec_files(tmp_path):
    with pytest.raises(MaskSpecError, match="not found"):
        load_mask_spec(tmp_path / "nothing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(MaskSpecError, match="cannot parse"):
        load_mask_spec(broken)


def test_api_rejects_image_without_alpha_and_float_images():
    with pytest.raises(MaskSpecError, match="RGBA"):
        register_mask("x_rgb", np.zeros((40, 40, 3), np.uint8), OVAL_ANCHORS)
    with pytest.raises(MaskSpecError, match="uint8"):
        register_mask("x_float", np.zeros((40, 40, 4), np.float32), OVAL_ANCHORS)
    with pytest.raises(MaskSpecError, match="all zero"):
        register_mask("x_empty", np.zeros((200, 200, 4), np.uint8), OVAL_ANCHORS)


# ------------------------------------------------------------------------------------------ parameters
def test_sample_params_depends_only_on_rng_state(face):
    _, pts = face
    a = sample_params(np.random.default_rng([3, 17]), pts)
    b = sample_params(np.random.default_rng([3, 17]), pts)
    c = sample_params(np.random.default_rng([3, 18]), pts)
    assert a == b and a != c
    d = a.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert MaskParams.from_dict(d).to_dict() == d
    assert {"mask", "fit", "tone", "pattern", "shading", "noise_seed"} <= set(d)


def test_default_fit_is_correct_and_probabilities_are_honoured(face):
    _, pts = face
    fits = [sample_params(np.random.default_rng(i), pts).fit for i in range(50)]
    assert set(fits) == {"correct"}
    probs = {"correct": 0.5, "nose_exposed": 0.3, "chin_only": 0.2}
    fits = [sample_params(np.random.default_rng(i), pts, fit_probs=probs).fit for i in range(2000)]
    for f, p in probs.items():
        assert abs(fits.count(f) / len(fits) - p) < 0.04
    only = {sample_params(np.random.default_rng(i), pts, fit_probs={"chin_only": 1}).fit for i in range(20)}
    assert only == {"chin_only"}


def test_sample_params_validation(face):
    _, pts = face
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown fit"):
        sample_params(rng, pts, fit_probs={"upside_down": 1})
    with pytest.raises(ValueError, match="sum to > 0"):
        sample_params(rng, pts, fit_probs={"correct": 0})
    with pytest.raises(ValueError, match="unknown mask"):
        sample_params(rng, pts, masks=["nope"])
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        sample_params(rng, pts[:10])
    with pytest.raises(ValueError, match="unknown fit"):
        MaskParams(mask="surgical", fit="sideways")


def test_masks_subset_and_natural_spread_of_gray_tones(face):
    _, pts = face
    ps = [sample_params(np.random.default_rng(i), pts) for i in range(600)]
    assert {p.mask for p in ps} == set(BUILTIN_MASKS)
    tones = np.array([p.tone for p in ps])
    assert tones.min() < 0.2 and tones.max() > 0.85, "dark and light masks"
    assert len(np.unique(np.round(tones, 2))) > 40, "a spread of tones, not a few fixed grays"
    assert {p.pattern for p in ps} >= {"plain", "stripes", "dots", "checks"}
    sub = {sample_params(np.random.default_rng(i), pts, masks=["n95", "kn95"]).mask for i in range(40)}
    assert sub == {"n95", "kn95"}
    colour = sample_params(np.random.default_rng(5), pts, color=True)
    assert colour.use_color and not ps[0].use_color


def test_patterns_are_cached_and_anti_aliased():
    t = get_mask("cloth")
    for name in PATTERNS:
        p = t.pattern_layer(name)
        assert p is t.pattern_layer(name)
        assert p.shape == t.image.shape[:2] and 0 <= p.min() and p.max() <= 1
        if name != "plain":
            assert 0.1 < p.mean() < 0.7 and ((p > 0.05) & (p < 0.95)).any()
    from maskgen.render import prepare_template

    prepared = t.cached(("prepared", "stripes"), lambda: prepare_template(t, "stripes"))
    assert t.cached(("prepared", "stripes"), lambda: 1 / 0) is prepared  # computed once per template


# ------------------------------------------------------------------------------------------ #28: doubtful specs
@pytest.mark.parametrize("command", ["build-smfer", "mask-image", "preview"])
def test_a_spec_named_like_a_builtin_is_refused_by_every_command(tmp_path, small_fer, command):
    """#28: build-smfer silently used the built-in 'surgical' for a custom spec of that name."""
    from click.testing import CliRunner

    from maskgen.cli import main

    spec = write_spec(tmp_path, name="surgical")
    with pytest.raises(MaskSpecError, match="'surgical' is the name of a built-in mask"):
        load_mask_spec(spec, register=False)
    pics = tmp_path / "pics"
    pics.mkdir()
    cv2.imwrite(str(pics / "a.png"), np.full((48, 48), 128, np.uint8))
    out = tmp_path / "out"
    args = {"build-smfer": [str(small_fer), "-o", str(out / "s.csv"), "--quiet"],
            "mask-image": [str(pics), "-o", str(out)], "preview": [str(small_fer), "-o", str(out / "p.png")]}[command]
    before = small_fer.read_bytes()
    result = CliRunner().invoke(main, [command, *args, "--mask-spec", str(spec)])
    assert result.exit_code == 2, result.output
    assert "built-in mask" in result.output and not out.exists() and small_fer.read_bytes() == before
    assert get_mask("surgical").image.shape[:2] != (160, 200)  # the built-in is untouched


def test_mask_pictures_over_the_template_limit_are_refused(tmp_path, monkeypatch):
    """#28: a 20000x16000 mask PNG took 11 GB for a 4-face preview; the size is now checked on load."""
    from maskgen import templates

    monkeypatch.setattr(templates, "MAX_TEMPLATE_PIXELS", 150 * 150)
    with pytest.raises(MaskSpecError, match="too large"):  # from the PNG header, before decoding
        load_mask_spec(write_spec(tmp_path), register=False)
    with pytest.raises(MaskSpecError, match="200x160 is larger than"):
        register_mask("too_big", oval_rgba(), OVAL_ANCHORS)
    assert templates.MAX_TEMPLATE_PIXELS < 20000 * 16000


# ------------------------------------------------------------------------------------------ #29: extra artwork
@pytest.mark.parametrize("name", EXTRA_MASKS)
def test_extra_artwork_is_registered_outside_the_default_pool_and_covers_the_face(face, name):
    gray, pts = face
    assert name in list_masks(extra=True) and name not in list_masks() and get_mask(name).tintable
    assert tuple(list_masks(extra=True)[:len(BUILTIN_MASKS) + len(EXTRA_MASKS)]) == BUILTIN_MASKS + EXTRA_MASKS
    t = get_mask(name)
    assert t.image.shape == get_mask("surgical").image.shape and t.anchors == get_mask("surgical").anchors
    p = sample_params(np.random.default_rng(3), pts, masks=[name])
    out, alpha = apply_mask(gray, pts, p)
    assert qa_check(pts, alpha, "correct").passed and np.abs(out.astype(int) - gray).max() > 30
    with pytest.raises(ValueError, match="built-in"):
        register_mask(name, oval_rgba(), OVAL_ANCHORS)
    with pytest.raises(ValueError, match="built-in"):
        unregister_mask(name)
    assert f"unknown mask 'nope'; valid masks: {', '.join(BUILTIN_MASKS)}" in _error(lambda: get_mask("nope"))
    assert name in _error(lambda: get_mask("nope")), "the error lists the extra artwork too"


def _error(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


def test_default_pool_is_unchanged_by_the_extra_artwork(face):
    _, pts = face
    assert {sample_params(np.random.default_rng(i), pts).mask for i in range(200)} == set(BUILTIN_MASKS)
