"""maskgen: synthetic face masks on FER2013-format data (SMFER2013 / MFER2013).

Public API (models load lazily, on first use, never at import time):

- :func:`maskgen.dataset.read_fer_csv` / :func:`maskgen.dataset.write_fer_csv`
- :func:`maskgen.smfer.build_smfer` (the ``maskgen build-smfer`` command)
- :func:`maskgen.pipeline.mask_face` (one aligned face crop)
- mask registry: :func:`register_mask`, :func:`get_mask`, :func:`list_masks`
"""
__version__ = "0.1.0"

#: names re-exported from maskgen.masks, imported on first access (keeps ``import maskgen`` light)
_MASK_API = ("register_mask", "unregister_mask", "get_mask", "list_masks", "load_mask_spec", "sample_params",
             "apply_mask", "MaskTemplate", "MaskParams")


def __getattr__(name: str):
    if name in _MASK_API:
        from maskgen import masks

        return getattr(masks, name)
    raise AttributeError(f"module 'maskgen' has no attribute {name!r}")
