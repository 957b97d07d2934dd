"""maskgen: synthetic face masks on FER2013-format data (SMFER2013 / MFER2013).

Public API, importable from the package (each name is imported on first use, so
``import maskgen`` stays light; models load lazily, never at import time):

- data: :func:`read_fer_csv`, :func:`write_fer_csv` (:mod:`maskgen.dataset`)
- builds: :func:`build_smfer`, :func:`build_mfer` (the ``build-smfer`` / ``build-mfer`` commands)
- one face: :class:`BuildConfig`, :func:`mask_face` (an aligned crop), :func:`apply_mask`
  (:mod:`maskgen.pipeline`); :func:`mask_photo` (every face in a photo)
- landmarks: :func:`landmarks_for_crop`, :func:`detect_faces`, :func:`get_detector`
- masks: :func:`register_mask`, :func:`unregister_mask`, :func:`get_mask`, :func:`list_masks`,
  :func:`load_mask_spec`, :class:`MaskTemplate`; per-row parameters :class:`MaskParams`,
  :func:`sample_params`

Where each part lives and what it may import: docs/architecture.md.
"""
__version__ = "0.1.0"

#: public name -> the module that defines it
_API = {
    "read_fer_csv": "dataset", "write_fer_csv": "dataset",
    "build_smfer": "smfer", "build_mfer": "mfer",
    "BuildConfig": "pipeline", "mask_face": "pipeline", "apply_mask": "pipeline",
    "mask_photo": "photo",
    "landmarks_for_crop": "landmarks", "detect_faces": "landmarks", "get_detector": "landmarks",
    "register_mask": "masks", "unregister_mask": "masks", "get_mask": "masks", "list_masks": "masks",
    "load_mask_spec": "masks", "MaskTemplate": "templates", "MaskParams": "fits", "sample_params": "fits",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f"maskgen.{_API[name]}"), name)
    raise AttributeError(f"module 'maskgen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
