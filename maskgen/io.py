"""Generic file I/O, used by every stage that writes: atomic writes, checksums, file naming,
manifests, and image files.

Nothing here knows about FER2013 (that codec is :mod:`maskgen.dataset`). Every output goes
through :func:`atomic_write`: written under a temporary name in the same folder and renamed
only when complete, so an interrupted run never leaves a half-written file, and never replaces
anything that is not a regular file (:func:`maskgen.paths.check_write_target`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskgen.paths import PathError, check_write_target


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only on success.

    On any exception (including KeyboardInterrupt) the temporary file is removed, so an
    interrupted run never leaves a half-written file under the real name.

    Raises:
        maskgen.paths.PathError: ``path`` exists and is not a regular file (a symlink, FIFO, device,
            socket or folder), which the rename would replace; checked before and after the write.
    """
    path = Path(path)
    check_write_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _default_file_mode())  # mkstemp makes 0600; give the usual umask mode
        check_write_target(path)  # again: something may have appeared there during the write
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _default_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give: 0o666 minus the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (recorded in manifests)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def csv_stem(path: str | os.PathLike) -> str:
    """File name without ``.csv`` / ``.csv.gz``: ``fer2013.csv.gz`` -> ``fer2013``."""
    stem = Path(path).name
    for suffix in (".gz", ".csv"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem


# ---------------------------------------------------------------- manifests
def machine_info() -> dict[str, Any]:
    """Python, platform, and the SIMD paths numpy and OpenCV may take here (they decide
    which rounding a few float operations get; see docs/results.md, "Determinism")."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            features = {}
    info["numpy"] = np.__version__
    order = ("AVX512_SKX", "AVX512F", "AVX2", "AVX", "SSE42", "ASIMD")
    info["numpy_simd"] = next((k for k in order if features.get(k)), "baseline")
    info["opencv"] = cv2.__version__
    info["opencv_cpu"] = cv2.getCPUFeaturesLine()
    overrides = {k: os.environ[k] for k in ("NPY_DISABLE_CPU_FEATURES", "OPENCV_CPU_DISABLE") if os.environ.get(k)}
    if overrides:
        info["simd_overrides"] = overrides
    return info


#: what a seed guarantees (measured: docs/results.md, "Determinism"); recorded in every manifest
DETERMINISM = (
    "byte-identical for the same seed and version on the same numpy / OpenCV SIMD paths (see 'machine'), "
    "for any --jobs, chunk size or backend; on other SIMD paths rows, labels and sampled parameters are "
    "identical and pixels agree within 1 gray level, except rows whose landmark decision sits on a rounding "
    "boundary (measured: 0 of 3,000 rows without AVX512, 1 of 3,000 on an SSE4.2-only path)"
)


def manifest(tool: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A run manifest: the tool, maskgen's version, ``fields``, the machine and the determinism guarantee."""
    from maskgen import __version__

    return {"tool": tool, "version": __version__, **fields, "machine": machine_info(), "determinism": DETERMINISM}


def manifest_path(csv_path: str | os.PathLike) -> Path:
    """``smfer2013.csv`` -> ``smfer2013.manifest.json`` next to it (every CSV build names its manifest so)."""
    path = Path(csv_path)
    return path.with_name(f"{csv_stem(path)}.manifest.json")


def build_fields(tool: str, options: Mapping[str, Any] | None,
                 inputs: Mapping[str, tuple[str | os.PathLike, str]], output: str | os.PathLike) -> dict[str, Any]:
    """The manifest fields that identify a build: its recipe (``build``), that recipe's id, and the
    sha256 of the output written (which ties the manifest to those bytes).

    The recipe is the tool, maskgen's version, the versions of the libraries that compute pixels
    (numpy, OpenCV, dlib), the options that decide the output, and each input by
    :func:`input_identity` (``inputs``: name -> (path, its sha256, which the caller records anyway));
    nothing about the machine (its SIMD paths are the one difference the
    manifest's ``determinism`` statement allows). ``options=None``: the build cannot be named so
    (custom masks, whose content is not in the options); ``build`` and ``build_id`` are then None.
    maskgen's version must change with any change to what a build writes.
    """
    build = build_recipe(tool, options, inputs)
    return {"build": build, "build_id": build_id(build) if build is not None else None,
            "output_sha256": file_sha256(output)}


def build_recipe(tool: str, options: Mapping[str, Any] | None,
                 inputs: Mapping[str, tuple[str | os.PathLike, str]]) -> dict[str, Any] | None:
    """A build's recipe as :func:`build_fields` records it (``build``), without writing or reading any output:
    so a caller can tell whether an existing output's manifest names the build it would make now."""
    from maskgen import __version__

    return None if options is None else {
        "tool": tool, "version": __version__, "libraries": _pixel_libraries(), "options": dict(options),
        "inputs": {name: input_identity(p, sha) for name, (p, sha) in inputs.items()},
    }


def _pixel_libraries() -> dict[str, str | None]:
    """Versions of the libraries whose arithmetic ends up in a build's pixels (landmarks, warps, blends)."""
    from importlib import metadata

    def version(*dists: str) -> str | None:
        for dist in dists:
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
        return None

    return {"numpy": np.__version__, "opencv": cv2.__version__, "dlib": version("dlib-bin", "dlib")}


def build_id(build: Mapping[str, Any]) -> str:
    """Hex SHA-256 of a build's recipe (canonical JSON): equal for every build of the same recipe."""
    return hashlib.sha256(json.dumps(build, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def input_identity(path: str | os.PathLike, sha256: str) -> dict[str, str]:
    """How a build names one of its inputs (``sha256``: of its bytes): the input's own build id if
    maskgen made it (so an input rebuilt on another SIMD path names the same recipe), else its sha256."""
    found = dataset_build(path, sha256)
    return {"build_id": found} if found is not None else {"sha256": sha256}


def dataset_build(path: str | os.PathLike, sha256: str | None = None) -> str | None:
    """The build id of a CSV that maskgen made, or None.

    It is read from the manifest beside the file, and only if that manifest records these bytes
    (``output_sha256``): a file edited after its build, or a manifest of another file, gives None.
    Two files with the same build id came from the same inputs, seed, options, maskgen and library versions;
    their bytes are equal on the same SIMD paths and within the manifest's ``determinism`` statement
    elsewhere. ``sha256``: the file's checksum if the caller has it.
    """
    mpath = manifest_path(path)
    try:
        found = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):  # none there, unreadable or not JSON
        return None
    if not isinstance(found, dict) or not isinstance(found.get("build"), dict) or not found.get("output_sha256"):
        return None
    if found["output_sha256"] != (sha256 or file_sha256(path)):
        return None
    return build_id(found["build"])


def write_json(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON (newline at the end) to ``path`` (a temporary path of atomic_write)."""
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


class OutputRecord:
    """The files a command wrote into an output folder, so that a rerun replaces those and nothing else.

    Kept in ``folder/name`` as JSON ``{"tool": tool, "files": {name relative to folder: sha256}}``.
    :meth:`may_replace` is True only for a file listed there with the same bytes: a file of the
    user's own with the same name, or one they edited since, is refused by
    :func:`maskgen.paths.check_targets`. Used by ``mask-image -o`` and ``predict --annotate``.
    """

    def __init__(self, folder: str | os.PathLike, name: str, tool: str) -> None:
        self.folder, self.path, self.tool = Path(folder), Path(folder) / name, tool
        self.files: dict[str, str] = {}
        self.written: dict[str, str] = {}
        check_write_target(self.path, "record")  # a symlink, FIFO (a read would block forever) or folder: before any work
        if not self.path.exists():
            return
        try:
            found = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            found = None
        if not isinstance(found, dict) or found.get("tool") != tool or not isinstance(found.get("files"), dict):
            raise PathError(f"{self.path} exists and was not written by {tool}: remove it or choose another folder")
        self.files = {str(k): str(v) for k, v in found["files"].items()}

    def _name(self, path: str | os.PathLike) -> str:
        return Path(path).relative_to(self.folder).as_posix()

    def may_replace(self, path: str | os.PathLike) -> bool:
        """``path`` (in the folder) was written by an earlier run and is unchanged since."""
        return self.files.get(self._name(path)) == file_sha256(path)

    def add(self, path: str | os.PathLike) -> None:
        """Note a file this run wrote (call :meth:`save` to record it)."""
        self.written[self._name(path)] = file_sha256(path)

    def save(self) -> None:
        """Record the files written so far (atomically; nothing when none was)."""
        if not self.written:
            return
        self.files.update(self.written)
        self.written = {}
        with atomic_write(self.path) as tmp:
            write_json(tmp, {"tool": self.tool, "files": dict(sorted(self.files.items()))})


# ---------------------------------------------------------------- images
#: picture files read from folders
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: the most pixels (width x height) a picture may declare; checked from its header before any decoding, so a
#: decompression bomb (a 300 kB PNG declaring 50000x50000) is refused as "too large" instead of allocating
#: gigabytes or tripping OpenCV's own limit with a traceback. Pillow's bomb limit: 4x the largest common camera.
MAX_IMAGE_PIXELS = 178_956_970


class ImageTooLargeError(ValueError):
    """A picture whose header declares more than :data:`MAX_IMAGE_PIXELS` pixels (refused before decoding)."""


class ImageConversionWarning(UserWarning):
    """A picture read with a lossy conversion (16-bit to 8-bit, alpha channel dropped)."""


def check_image_size(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int] | None:
    """(width, height) from a picture's header, without decoding it; None if the format is not known here.

    Raises:
        ImageTooLargeError: the header declares more than ``max_pixels`` pixels.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    too_large = f"{path}: image too large (more than {max_pixels:,} pixels, maskgen.io.MAX_IMAGE_PIXELS)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                width, height = im.size
        except Image.DecompressionBombError:  # Pillow's own limit (2x its MAX_IMAGE_PIXELS) was passed
            raise ImageTooLargeError(too_large) from None
        except (UnidentifiedImageError, OSError, ValueError):  # OpenCV may still know it; it says if not
            return None
    if width * height > max_pixels:
        raise ImageTooLargeError(f"{path}: image too large ({width}x{height}; the limit is {max_pixels:,} pixels, "
                                 "maskgen.io.MAX_IMAGE_PIXELS)")
    return width, height


_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved = 0


@contextlib.contextmanager
def _opencv_quiet() -> Iterator[None]:
    """OpenCV's own log lines off while decoding (a truncated picture is reported once, as a ValueError or a
    status, not also as OpenCV's ``[ WARN:0@...]`` line); counted, so concurrent threads restore it once."""
    global _quiet_depth, _quiet_saved
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None or not hasattr(logging, "setLogLevel"):  # an OpenCV build without it: nothing to quiet
        yield
        return
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_saved = logging.getLogLevel()
            logging.setLogLevel(logging.LOG_LEVEL_SILENT)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                logging.setLogLevel(_quiet_saved)


def _imread(path: str | os.PathLike) -> np.ndarray | None:
    """The file's bytes read by Python, decoded by ``cv2.imdecode(IMREAD_UNCHANGED)``; a file that cannot be
    read and OpenCV's own errors (its pixel limit, for a format whose header Pillow does not read) become a
    ValueError naming the file."""
    try:  # Python reads the bytes: any file name (cv2.imread(str(path)) crashed on names that are not UTF-8)
        with open(path, "rb") as fh:
            data = np.frombuffer(fh.read(), np.uint8)
    except OSError as exc:  # a per-picture status, as OpenCV's "cannot read" was
        raise ValueError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if data.size == 0:
        return None
    try:
        with _opencv_quiet():  # its log lines ('PNG input buffer is incomplete') broke the one-line error
            return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ValueError(f"cannot read image {path}: {' '.join(str(exc.err).split())}") from None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a picture as (H, W) uint8 (gray files) or (H, W, 3) uint8 RGB.

    The size is checked from the header first (:func:`check_image_size`). 16-bit pictures are
    scaled to 8 bits and an alpha channel is dropped, each with an :class:`ImageConversionWarning`.

    Raises:
        ImageTooLargeError: more than :data:`MAX_IMAGE_PIXELS` pixels (a ValueError).
        ValueError: unreadable, or an unsupported pixel type.
    """
    import warnings

    check_image_size(path)
    im = _imread(path)
    if im is None:
        raise ValueError(f"cannot read image {path}")
    if im.dtype == np.uint16:
        warnings.warn(f"{path}: 16-bit picture converted to 8 bits", ImageConversionWarning, stacklevel=2)
        im = (im // 257).astype(np.uint8)
    if im.dtype != np.uint8:
        raise ValueError(f"{path}: unsupported pixel type {im.dtype}")
    if im.ndim == 2:
        return im
    if im.shape[2] == 4:
        warnings.warn(f"{path}: alpha channel dropped (transparent pixels keep their colour)",
                      ImageConversionWarning, stacklevel=2)
        return cv2.cvtColor(im, cv2.COLOR_BGRA2RGB)
    if im.shape[2] == 1:
        return im[..., 0]
    return cv2.cvtColor(im, cv2.COLOR_BGR2RGB)


def read_rgba(path: str | os.PathLike, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read a picture with an alpha channel as (H, W, 4) uint8 RGBA; ValueError if unreadable or opaque,
    :class:`ImageTooLargeError` if its header declares more than ``max_pixels`` pixels."""
    check_image_size(path, max_pixels)
    im = _imread(path)
    if im is None:
        raise ValueError(f"cannot read image {path}")
    if im.ndim != 3 or im.shape[2] != 4:
        raise ValueError(f"image {path} has no alpha channel (need an RGBA PNG)")
    if im.dtype == np.uint16:
        im = (im // 257).astype(np.uint8)
    return cv2.cvtColor(im, cv2.COLOR_BGRA2RGBA)


#: PNG files are written with the smallest encoding (lossless either way)
PNG_PARAMS = (cv2.IMWRITE_PNG_COMPRESSION, 9)


def encode_image(image: np.ndarray, suffix: str = ".png", params: tuple[int, ...] | None = None) -> bytes:
    """(H, W) or (H, W, 3) RGB uint8 -> the bytes of an image file of type ``suffix``.

    ``params``: OpenCV ``imencode`` flags (default: :data:`PNG_PARAMS` for PNG, none otherwise).
    """
    suffix = suffix or ".png"
    if params is None:
        params = PNG_PARAMS if suffix.lower() == ".png" else ()
    bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(suffix, bgr, list(params))
    if not ok:
        raise ValueError(f"cannot encode an image as {suffix}")
    return data.tobytes()


def write_image(path: str | os.PathLike, image: np.ndarray, params: tuple[int, ...] | None = None) -> Path:
    """Write (H, W) or (H, W, 3) RGB uint8 atomically; the format comes from the suffix."""
    path = Path(path)
    try:
        data = encode_image(image, path.suffix or ".png", params)
    except (ValueError, cv2.error) as exc:  # cv2.error: a suffix OpenCV has no encoder for
        reason = f"no image encoder for {path.suffix!r}" if isinstance(exc, cv2.error) else " ".join(str(exc).split())
        raise ValueError(f"cannot encode {path} ({reason[:160]})") from None
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return path


__all__ = ["IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS", "ImageConversionWarning", "ImageTooLargeError", "OutputRecord", "atomic_write", "check_image_size", "build_fields", "build_id", "build_recipe", "csv_stem", "dataset_build", "encode_image", "file_sha256", "input_identity",
           "machine_info", "manifest", "manifest_path", "read_image", "read_rgba", "write_image", "write_json"]
