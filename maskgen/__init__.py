"""maskgen: synthetic face masks on FER2013-format data (SMFER2013 / MFER2013).

Public API (models load lazily, on first use, never at import time):

- :func:`maskgen.dataset.read_fer_csv` / :func:`maskgen.dataset.write_fer_csv`
- :func:`maskgen.smfer.build_smfer` (the ``maskgen build-smfer`` command)
- :func:`maskgen.pipeline.mask_face` (one aligned face crop)
- mask registry: :func:`register_mask`, :func:`get_mask`, :func:`list_masks`
"""
__version__ = "0.1.0"
