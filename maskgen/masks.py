"""The mask registry: named :class:`~maskgen.templates.MaskTemplate` objects.

Built-in templates live in ``assets/masks/`` (``<name>.png`` + ``<name>.json``, drawn by
``scripts/draw_masks.py``) and are registered lazily on first use. Custom masks are added
with :func:`register_mask` (Python) or :func:`load_mask_spec` (spec file). Templates
themselves (and their validation) are :mod:`maskgen.templates`; how a mask is worn and what
is sampled per row is :mod:`maskgen.fits`; drawing is :mod:`maskgen.render`.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from maskgen.templates import MaskSpecError, MaskTemplate, build_template

__all__ = [
    "BUILTIN_MASKS", "EXTRA_MASKS",
    "MaskSpecError", "MaskTemplate", "get_mask", "list_masks", "load_mask_spec", "register_mask",
    "unregister_mask",
]

_LOCK = threading.RLock()
_REGISTRY: dict[str, MaskTemplate] = {}
_BUILTINS_LOADED = False
#: the built-in mask types (assets/masks/<name>.png + .json, drawn by scripts/draw_masks.py), in sampling order
BUILTIN_MASKS = ("surgical", "n95", "kn95", "cloth", "gaiter")
#: more built-in artwork (same folder, same script), registered but *not* in the default pool of
#: :func:`list_masks`: drawn only where ``--masks`` names it or a mask style adds it (maskgen.styles), so a
#: build without either keeps its bytes
EXTRA_MASKS = ("bandana", "duckbill", "valve")
_PROTECTED = BUILTIN_MASKS + EXTRA_MASKS


def _builtin_dir() -> Path:
    try:
        from maskgen._resources import asset_dir
        d = asset_dir()
    except ModuleNotFoundError:  # not pip-installed: running from the repository root
        d = Path(__file__).resolve().parent.parent / "assets" / "masks"
    return d


def _ensure_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    with _LOCK:
        if _BUILTINS_LOADED:
            return
        folder = _builtin_dir()
        loaded = {}
        for name in _PROTECTED:
            spec = folder / f"{name}.json"
            if not spec.is_file():
                raise FileNotFoundError(f"built-in mask spec {spec} is missing; run scripts/draw_masks.py")
            loaded[name] = load_mask_spec(spec, register=False, _builtin=True)
        custom = {k: v for k, v in _REGISTRY.items() if k not in loaded}
        _REGISTRY.clear()
        _REGISTRY.update(loaded)
        _REGISTRY.update(custom)
        _BUILTINS_LOADED = True


def register_mask(name: str | MaskTemplate, image: np.ndarray | str | Path | None = None,
                  anchors: Mapping[str, Any] | None = None, *, description: str = "", tintable: bool = False,
                  colors: Sequence[Any] = (), patterns: Sequence[str] = ("plain",),
                  overwrite: bool = False) -> MaskTemplate:
    """Validate and register a mask; returns the :class:`MaskTemplate`.

    Either pass a ready ``MaskTemplate``, or ``name``, an RGBA ``image`` ((h, w, 4) uint8 array, or a
    PNG path) and ``anchors``: ``{anchor_name: {"xy": (x, y), "landmark": ref}}`` where ``xy`` is the
    template pixel and ``ref`` a landmark index/name/mix (see :func:`resolve_landmark`); the shorthand
    ``{landmark_name: (x, y)}`` ties each anchor to the landmark of the same name.  At least
    four anchors, not all on one line, inside the image.  ``tintable`` masks have a gray detail layer
    in RGB that is multiplied by one of ``colors`` (``[name, "#rrggbb", weight]``).
    """
    if isinstance(name, MaskTemplate):
        template = name
    else:
        if image is None or anchors is None:
            raise TypeError("register_mask(name, image, anchors, ...) needs an image and anchors")
        template = build_template(name, image, anchors, description=description, tintable=tintable,
                                  colors=colors, patterns=patterns)
    _ensure_builtins()
    with _LOCK:
        if template.name in _PROTECTED and _REGISTRY.get(template.name) is not template:
            raise ValueError(f"{template.name!r} is a built-in mask; register yours under another name")
        if template.name in _REGISTRY and not overwrite and _REGISTRY[template.name] is not template:
            raise ValueError(f"mask {template.name!r} is already registered (pass overwrite=True to replace it)")
        _REGISTRY[template.name] = template
    return template


def unregister_mask(name: str) -> None:
    """Remove a custom mask (built-ins cannot be removed); unknown name -> ValueError."""
    _ensure_builtins()
    with _LOCK:
        if name not in _REGISTRY:
            raise ValueError(f"unknown mask {name!r}; valid masks: {', '.join(_REGISTRY)}")
        if name in _PROTECTED:
            raise ValueError(f"{name!r} is a built-in mask and cannot be unregistered")
        del _REGISTRY[name]


def get_mask(name: str) -> MaskTemplate:
    """Registered template by name; unknown name -> ValueError listing the valid names."""
    _ensure_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown mask {name!r}; valid masks: {', '.join(list_masks(extra=True))}") from None


def list_masks(*, extra: bool = False) -> list[str]:
    """Names of the registered masks a build samples from by default: the built-ins first, then custom
    ones in registration order. ``extra=True`` adds :data:`EXTRA_MASKS` (after the built-ins)."""
    _ensure_builtins()
    return [name for name in _REGISTRY if extra or name not in EXTRA_MASKS]


def load_mask_spec(path: str | Path, *, register: bool = True, _builtin: bool = False) -> MaskTemplate:
    """Read a mask spec (``.json``, or ``.toml`` on Python >= 3.11) and its image; registers it by default.

    Spec keys: ``name`` (default: file stem), ``image`` (PNG path relative to the spec), ``anchors``
    (``{anchor: {xy = [x, y], landmark = "jaw_8"}}``), optional ``description``, ``tintable``,
    ``colors``, ``patterns``.  See docs/masks.md.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO would block the read forever
        from maskgen.paths import describe

        raise MaskSpecError(f"mask spec {path} is {describe(path.resolve()) or 'not a regular file'}, not a regular file")
    if not path.is_file():
        raise MaskSpecError(f"mask spec {path} not found")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib
            spec = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            spec = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, ImportError) as e:
        raise MaskSpecError(f"mask spec {path}: cannot parse: {e}") from None
    if not isinstance(spec, dict):
        raise MaskSpecError(f"mask spec {path}: top level must be a table/object")
    for key, kind, ok in (("image", "a file name (text)", lambda v: isinstance(v, str) and v.strip()),
                          ("anchors", "a table of anchors", lambda v: isinstance(v, dict)),
                          ("name", "text", lambda v: isinstance(v, str)),
                          ("colors", "a list", lambda v: isinstance(v, list)),
                          ("patterns", "a list of pattern names",
                           lambda v: isinstance(v, list) and all(isinstance(p, str) for p in v))):
        if key in spec and not ok(spec[key]):
            raise MaskSpecError(f"mask spec {path}: {key!r} must be {kind}, got {spec[key]!r}")
    name = spec.get("name", path.stem)
    if name in _PROTECTED and not _builtin:  # every command refuses it (build-smfer used to skip it silently)
        raise MaskSpecError(f"mask spec {path}: {name!r} is the name of a built-in mask; give yours another name")
    for key in ("image", "anchors"):
        if key not in spec:
            raise MaskSpecError(f"mask spec {path}: missing required key {key!r}")
    unknown = set(spec) - {"name", "image", "anchors", "description", "tintable", "colors", "patterns"}
    if unknown:
        raise MaskSpecError(f"mask spec {path}: unknown keys {sorted(unknown)}")
    try:
        template = build_template(name, path.parent / spec["image"], spec["anchors"],
                                  description=str(spec.get("description", "")),
                                  tintable=bool(spec.get("tintable", False)),
                                  colors=spec.get("colors", ()), patterns=spec.get("patterns", ("plain",)))
    except MaskSpecError as e:
        raise MaskSpecError(f"mask spec {path}: {e}") from None
    if register:
        register_mask(template, overwrite=True)
    return template
