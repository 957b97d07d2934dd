"""One face in, one masked face out: landmarks -> sampled parameters -> render -> QA.

The one place a face goes through the stages (:func:`mask_with_landmarks`): the per-row step
of ``build-smfer`` (:func:`mask_face`, :func:`mask_chunk`), of ``preview`` and the demo, and
of every face in a photo (:mod:`maskgen.photo`). Everything random comes from the row's own
generator (``numpy.random.default_rng([seed, row_id])`` for crops), so a row's result does
not depend on which worker or chunk processed it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from maskgen import landmarks as lm
from maskgen import masks
from maskgen.fits import MaskParams, check_fit_probs, sample_params
from maskgen.imageops import to_gray
from maskgen.qa import QAResult, qa_check
from maskgen.render import render_mask
from maskgen.styles import check_styles, pick_style, style_pool, style_rng
from maskgen.templates import MaskTemplate

#: row status values written to the sidecar
MASKED = "masked"                 # landmarks accepted, mask drawn
MASKED_IMPLAUSIBLE = "masked_implausible"  # best landmarks failed the plausibility check; drawn there anyway, flagged
KEPT = "kept"                     # left unmasked (on_implausible="keep")
ERROR = "error"                   # an exception; image left unchanged, error text recorded
STATUSES = (MASKED, MASKED_IMPLAUSIBLE, KEPT, ERROR)

#: sidecar columns, in order
SIDECAR_COLUMNS = (
    "row_id", "status", "mask", "fit", "landmark_source", "landmark_score", "face_evidence",
    "qa_passed", "qa_nose_covered", "qa_mouth_covered", "qa_eyes_visible", "qa_chin_covered", "qa_out_of_frame",
    "params", "error",
)


def check_seed(seed: object, option: str = "seed") -> int:
    """``seed`` as an int, refused (ValueError naming ``option``) unless it is a non-negative integer: numpy's
    generators take no negative seed, and a build would leave every row unmasked with that error."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{option} must be a non-negative integer, got {seed!r}")
    return int(seed)


@dataclass(frozen=True)
class BuildConfig:
    """What a build samples from; identical in every worker.

    Attributes:
        seed: base seed; row ``i`` uses ``default_rng([seed, i])``.
        masks: mask names to sample from (None: every registered mask).
        fit_probs: fit name -> probability (None: correct fit only).
        mask_specs: custom mask spec files to register in each worker before use.
        templates: custom mask templates (e.g. registered through the Python API in the
            parent process) to register in each worker; see :func:`resolve_masks`.
        on_implausible: "mask" (draw on the best landmarks and flag the row) or "keep"
            (leave the row unmasked and flag it).
        landmarks: a landmarks file (:mod:`maskgen.landmarks.supplied`): its points or boxes
            are used for the rows it names; other rows are detected.
        styles: mask styles to sample from (:mod:`maskgen.styles`); None (or ``("classic",)``) = the
            classic look only, drawing nothing from the style stream: today's bytes.
    """

    seed: int = 0
    masks: tuple[str, ...] | None = None
    fit_probs: Mapping[str, float] | None = None
    mask_specs: tuple[str, ...] = ()
    on_implausible: str = "mask"
    templates: tuple[MaskTemplate, ...] = field(default=(), repr=False)
    landmarks: str | None = None
    styles: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.on_implausible not in ("mask", "keep"):
            raise ValueError(f"on_implausible must be 'mask' or 'keep', not {self.on_implausible!r}")
        check_seed(self.seed)


@dataclass
class RowResult:
    """Outcome of masking one face. ``image`` has the input's shape and dtype."""

    row_id: int
    image: np.ndarray
    status: str
    alpha: np.ndarray | None = None
    landmarks: lm.Landmarks | None = None
    params: MaskParams | None = None
    qa: QAResult | None = None
    error: str = ""

    def record(self) -> dict[str, object]:
        """One sidecar row (keys = SIDECAR_COLUMNS)."""
        q = self.qa
        p = self.params.to_dict() if self.params is not None else {}
        return {
            "row_id": self.row_id,
            "status": self.status,
            "mask": p.get("mask", ""),
            "fit": p.get("fit", ""),
            "landmark_source": self.landmarks.source if self.landmarks is not None else "",
            "landmark_score": round(float(self.landmarks.score), 4) if self.landmarks is not None else "",
            "face_evidence": _rounded(self.landmarks.evidence) if self.landmarks is not None else "",
            "qa_passed": int(q.passed) if q is not None else "",
            "qa_nose_covered": int(q.nose_covered) if q is not None else "",
            "qa_mouth_covered": int(q.mouth_covered) if q is not None else "",
            "qa_eyes_visible": int(q.eyes_visible) if q is not None else "",
            "qa_chin_covered": int(q.chin_covered) if q is not None else "",
            "qa_out_of_frame": q.out_of_frame if q is not None else "",
            "params": json.dumps(p, sort_keys=True, separators=(",", ":")) if p else "",
            "error": self.error,
        }


def _rounded(value: float) -> float | str:
    """4-digit value for the sidecar; '' where not measured (nan)."""
    return "" if value != value else round(float(value), 4)


#: spec file key (:func:`_file_key`) -> the template read from it, in this process
_loaded_specs: dict[tuple[str, int, int], MaskTemplate] = {}
#: mask name -> the template :func:`prepare_worker` registered under it: a later config may replace those (a
#: changed spec file, a long-lived worker's next build); any other custom mask came through the Python API
_prepared: dict[str, MaskTemplate] = {}


def _file_key(path: str) -> tuple[str, int, int]:
    """(resolved path, mtime, size): a per-process cache entry goes stale when its file changes
    (long-lived dask or loky workers serve many builds)."""
    resolved = Path(path).resolve()
    st = resolved.stat()
    return str(resolved), st.st_mtime_ns, st.st_size


def _registered(name: str) -> MaskTemplate | None:
    return masks.get_mask(name) if name in masks.list_masks() else None


def _same_mask(a: MaskTemplate, b: MaskTemplate) -> bool:
    """Two templates that draw the same mask (e.g. one spec file loaded twice)."""
    return (a.name == b.name and a.image.shape == b.image.shape and np.array_equal(a.image, b.image)
            and a.anchors == b.anchors and a.landmarks == b.landmarks and a.tintable == b.tintable
            and a.colors == b.colors and a.patterns == b.patterns)


def prepare_worker(config: BuildConfig) -> None:
    """Register the config's custom masks in this process: spec files (each read once while unchanged), then templates.

    Raises:
        maskgen.masks.MaskSpecError: two spec files naming one mask (both files named), or a spec named like a
            different mask registered through the Python API (``maskgen.register_mask``): either would be ignored
            silently, the build drawing another mask than the file given.
    """
    by_name: dict[str, tuple[str, str]] = {}  # mask name -> (spec as given, resolved)
    loaded = []
    for spec in config.mask_specs:
        key = _file_key(spec)
        template = _loaded_specs.get(key)
        if template is None:
            template = _loaded_specs[key] = masks.load_mask_spec(spec, register=False)
        first, first_resolved = by_name.setdefault(template.name, (spec, key[0]))
        if first_resolved != key[0]:
            raise masks.MaskSpecError(f"mask specs {first} and {spec} both name a mask {template.name!r}: only one "
                                      "would be used; give each spec its own name")
        loaded.append((spec, template))
    for spec, template in loaded:
        current = _registered(template.name)
        if current is template:
            continue
        if current is not None and _prepared.get(template.name) is not current and not _same_mask(current, template):
            raise masks.MaskSpecError(f"mask spec {spec}: {template.name!r} is the name of a mask registered through "
                                      "the Python API (maskgen.register_mask); give the spec another name")
        masks.register_mask(template, overwrite=True)
        _prepared[template.name] = template
    for template in config.templates:  # masks of the parent process (API, specs), sent to workers in the config
        if template.name in by_name:
            continue  # the spec file registered it above
        current = _registered(template.name)
        if current is None or (current is not template and _prepared.get(template.name) is current):
            masks.register_mask(template, overwrite=True)
            _prepared[template.name] = template


def resolve_masks(config: BuildConfig) -> BuildConfig:
    """Pin the mask list in the parent process, so that every worker samples from the same one.

    ``masks=None`` becomes the names registered here (built-ins, spec files and masks registered
    through the Python API); custom templates travel to the workers inside the config. Unknown
    names raise ``ValueError`` listing the valid ones, before any work starts; so do bad fit
    probabilities (:func:`maskgen.fits.check_fit_probs`).
    """
    check_fit_probs(config.fit_probs)
    prepare_worker(config)
    styles = check_styles(config.styles)  # unknown style names too; ("classic",) becomes the default None
    names = tuple(config.masks) if config.masks else tuple(masks.list_masks())
    templates = tuple(masks.get_mask(name) for name in names)
    custom = tuple(t for t in templates if t.name not in masks.BUILTIN_MASKS + masks.EXTRA_MASKS)
    return replace(config, masks=names, templates=custom, styles=styles)


_supplied_sources: dict[tuple[str, int, int], lm.LandmarkSource] = {}


def landmark_source(config: BuildConfig) -> lm.LandmarkSource:
    """The landmark source of a build: the dlib chain, wrapped by the supplied points when
    ``config.landmarks`` names a file (read once per process; validated by the caller)."""
    if config.landmarks is None:
        return lm.get_detector()
    key = _file_key(config.landmarks)
    if key not in _supplied_sources:
        from maskgen.landmarks.supplied import SuppliedSource, read_landmarks_file

        _supplied_sources[key] = SuppliedSource(read_landmarks_file(key[0]), lm.get_detector())
    return _supplied_sources[key]


def row_rng(seed: int, row_id: int) -> np.random.Generator:
    """The row's own random generator: depends only on (seed, row_id)."""
    return np.random.default_rng([int(seed), int(row_id)])


def apply_mask(image: np.ndarray, points: np.ndarray, params: MaskParams,
               template: MaskTemplate | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw the mask ``params`` describe (template looked up by ``params.mask`` unless given).

    image (H, W) or (H, W, 3) uint8; points (68, 2) (x, y). Returns (masked image of the same
    shape and dtype, alpha (H, W) float32 in [0, 1]); see :func:`maskgen.render.render_mask`.
    """
    return render_mask(image, points, template or masks.get_mask(params.mask), params)


def mask_with_landmarks(image: np.ndarray, points: np.ndarray, rng: np.random.Generator, *,
                        mask_names: Sequence[str] | None = None, fit_probs: Mapping[str, float] | None = None,
                        color: bool = False, styles: Sequence[str] | None = None,
                        ) -> tuple[np.ndarray, np.ndarray, MaskParams, QAResult]:
    """Sample one mask from ``rng``, draw it at ``points`` and check it.

    Returns (masked image, alpha (H, W) float32, params, QA result). ``color`` draws colours
    on RGB images (gray images always get gray tones). ``styles``: the style set to draw the row's
    style from (:mod:`maskgen.styles`); the style and its parameters come from the style stream
    (:func:`maskgen.styles.style_rng`), so ``rng``'s draws are the classic ones whatever the styles.
    """
    style_names = check_styles(styles)   # None: the default set, classic only
    if style_names is None:
        params = sample_params(rng, points, masks=mask_names, fit_probs=fit_probs, color=color and image.ndim == 3)
    else:
        style, look = pick_style(style_rng(rng), style_names)
        params = sample_params(rng, points, masks=style_pool(style, mask_names), fit_probs=fit_probs,
                               color=color and image.ndim == 3)
        params = replace(params, style=style.name, look=look)
    out, alpha = apply_mask(image, points, params)
    return out, alpha, params, qa_check(points, alpha, params.fit)


def mask_face(image: np.ndarray, row_id: int, config: BuildConfig,
              detector: lm.LandmarkSource | None = None, marks: lm.Landmarks | None = None) -> RowResult:
    """Mask one aligned face crop (e.g. a (48, 48) uint8 FER2013 row).

    ``marks``: the crop's landmarks when already found (see :func:`mask_chunk`); else they are
    found here. Never raises for a valid image: failures become ``status="error"`` with the
    image unchanged and the error text recorded.
    """
    try:
        prepare_worker(config)
        if marks is None:
            marks = (detector or landmark_source(config)).for_crop(to_gray(image), key=row_id)
        if not marks.accepted and config.on_implausible == "keep":
            return RowResult(row_id, image.copy(), KEPT, landmarks=marks)
        out, alpha, params, check = mask_with_landmarks(
            image, marks.points, row_rng(config.seed, row_id), mask_names=config.masks, fit_probs=config.fit_probs,
            color=True, styles=config.styles,
        )
        status = MASKED if marks.accepted else MASKED_IMPLAUSIBLE
        return RowResult(row_id, out, status, alpha=alpha, landmarks=marks, params=params, qa=check)
    except Exception as exc:  # noqa: BLE001 - recorded per row, never silently
        return _error(row_id, image, exc)


def _error(row_id: int, image: np.ndarray, exc: Exception) -> RowResult:
    return RowResult(row_id, np.array(image, copy=True), ERROR, error=f"{type(exc).__name__}: {exc}")


def mask_chunk(images: np.ndarray, row_ids: Sequence[int], config: BuildConfig
               ) -> tuple[np.ndarray, np.ndarray, list[dict[str, object]]]:
    """Worker task: mask a chunk of rows.

    Landmarks are found for the whole chunk first, then masks drawn: dlib's shape predictor
    (a large, memory-bound model) runs faster back to back than interleaved with rendering
    (``benchmarks/smfer_parts.py ... order``: ~15-20 % less time per row). The result is the
    same as :func:`mask_face` row by row.

    Returns (row_ids (k,) int64, images (k, H, W) uint8, sidecar records).
    """
    detector = landmark_source(config)
    found: list[lm.Landmarks | Exception] = []
    for image, row_id in zip(images, row_ids):
        try:
            found.append(detector.for_crop(to_gray(image), key=int(row_id)))
        except Exception as exc:  # noqa: BLE001 - becomes the row's error record below
            found.append(exc)
    out = np.empty_like(images)
    records = []
    for k, row_id in enumerate(row_ids):
        marks = found[k]
        if isinstance(marks, Exception):
            result = _error(int(row_id), images[k], marks)
        else:
            result = mask_face(images[k], int(row_id), config, detector, marks=marks)
        out[k] = result.image
        records.append(result.record())
    return np.asarray(row_ids, np.int64), out, records
