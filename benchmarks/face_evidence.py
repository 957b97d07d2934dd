"""Face evidence in photo mode: precision / recall on faces and non-faces that scikit-image ships.

- ``lfw_subset()``: 100 face crops and 100 non-face crops (25x25), upscaled to ``--sizes``;
  a crop "yields a face" when ``detect_faces`` returns at least one;
- ``astronaut()`` alone (one face) and mirrored side by side (two faces; the mission patch on
  the suit is the known false detection).

Each is measured with the CNN confirmation of weak HOG detections (the default) and without it
(``PHOTO_CONFIRM_BELOW = -inf``), in one run. Usage::

    python benchmarks/face_evidence.py --sizes 100 200
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from skimage import data

from maskgen.landmarks import dlib_chain, get_detector


def measure(sizes: list[int]) -> dict[str, object]:
    det = get_detector()
    crops = (data.lfw_subset() * 255).round().astype(np.uint8)
    out: dict[str, object] = {}
    for size in sizes:
        hits = [bool(det.detect_faces(cv2.resize(c, (size, size), interpolation=cv2.INTER_CUBIC))) for c in crops]
        out[f"lfw faces found ({size} px)"] = f"{sum(hits[:100])} / 100"
        out[f"lfw non-faces with a face ({size} px)"] = f"{sum(hits[100:])} / 100"
    astro = data.astronaut()
    out["astronaut: faces (1 expected)"] = len(det.detect_faces(astro))
    out["astronaut mirrored: faces (2 expected)"] = len(det.detect_faces(np.hstack([astro, astro[:, ::-1]])))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 200])
    args = p.parse_args()
    t = time.perf_counter()
    confirmed = measure(args.sizes)
    default = dlib_chain.PHOTO_CONFIRM_BELOW
    dlib_chain.PHOTO_CONFIRM_BELOW = float("-inf")
    try:
        plain = measure(args.sizes)
    finally:
        dlib_chain.PHOTO_CONFIRM_BELOW = default
    print(f"| measure | HOG / CNN + Procrustes test | + CNN confirmation of HOG < {default} (default) |")
    print("|---|--:|--:|")
    for key in confirmed:
        print(f"| {key} | {plain[key]} | {confirmed[key]} |")
    print(f"\n({time.perf_counter() - t:.0f} s)")


if __name__ == "__main__":
    main()
