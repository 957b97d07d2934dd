"""Face evidence in photo mode: precision / recall on faces and non-faces that scikit-image ships.

- ``lfw_subset()``: 100 face crops and 100 non-face crops (25x25), upscaled to ``--sizes``;
  a crop "yields a face" when ``detect_faces`` returns at least one;
- ``astronaut()`` alone (one face) and mirrored side by side (two faces; the mission patch on
  the suit is the known false detection).

Each is measured with the CNN confirmation of weak HOG detections (the default) and without it
(``PHOTO_CONFIRM_BELOW = -inf``), in one run. Usage::

    python benchmarks/face_evidence.py --sizes 100 200

Crop mode (``--crop SIDECAR VOTES``): how well the sidecar's ``face_evidence`` column of a
FER2013 build separates the rows FER+ voters marked "not a face" (``NF`` has more votes than
any other answer) from the rest::

    maskgen build-smfer ../shared/data/fer2013.csv.gz -o smfer2013.csv
    python benchmarks/face_evidence.py --crop smfer2013.meta.csv ../shared/data/ferplus_votes.csv
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from skimage import data

from maskgen.cli_errors import at_least, run_script
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


def crop_report(sidecar: str, votes_path: str) -> None:
    import csv

    from fer_models.labels import ferplus_targets, read_ferplus_votes

    with open(sidecar, newline="") as fh:
        rows = list(csv.DictReader(fh))
    evidence = np.array([float(r["face_evidence"]) for r in rows])
    not_face = ferplus_targets(read_ferplus_votes(votes_path, len(rows))).not_face
    n_nf = int(not_face.sum())
    order = np.argsort(evidence, kind="stable")  # lowest evidence first
    ranks = np.empty(len(rows))
    ranks[order] = np.arange(1, len(rows) + 1)
    # AUC: probability that a "not a face" row has lower evidence than a face row (ties count half)
    from scipy.stats import rankdata

    r = rankdata(-evidence)
    auc = (r[not_face].sum() - n_nf * (n_nf + 1) / 2) / (n_nf * (len(rows) - n_nf))
    print(f"{len(rows)} rows, {n_nf} marked not a face by FER+; AUC of low evidence for not-a-face: {auc:.3f}\n")
    print("| flag rows with face_evidence below | rows flagged | of them not a face (precision) | not-a-face rows flagged (recall) |")
    print("|--:|--:|--:|--:|")
    for t in (-1.4, -1.0, -0.5, 0.0):
        flagged = evidence < t
        hit = int((flagged & not_face).sum())
        print(f"| {t} | {int(flagged.sum())} | {hit} ({hit / max(int(flagged.sum()), 1):.1%}) | "
              f"{hit} / {n_nf} ({hit / max(n_nf, 1):.1%}) |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=at_least(1), nargs="+", default=[100, 200])
    p.add_argument("--crop", nargs=2, metavar=("SIDECAR", "VOTES"), help="crop mode: a FER2013 build's sidecar and FER+ votes")
    args = p.parse_args()
    if args.crop:
        crop_report(*args.crop)
        return
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
    run_script(main)
