"""Benchmark (and fit) the crop landmark chain of maskgen.landmarks on a FER2013 CSV.

Usage (wrap in the shared CPU lock on the dev machine):

    flock /tmp/maskgen-cpu.lock python benchmarks/landmarks.py /work/shared/data/fer2013.csv.gz [--limit N]
    flock /tmp/maskgen-cpu.lock python benchmarks/landmarks.py DATA --fit-prior [--limit N]

``--fit-prior`` learns maskgen/landmark_prior.json from the rows where dlib's HOG
detector (default threshold 0) finds a face: median face box, mean shape in
box coordinates, and the plausibility thresholds. Without it, the script measures:

* accepted fraction overall / per class / per source / per usage;
* fallback accuracy: on rows where HOG (threshold 0) succeeds, the prior-box path
  (and a plain fixed box, and the CNN) as if HOG had failed, against the
  landmarks in the HOG box: mean point error / inter-ocular distance, median and p95;
* time per image for each stage and for the whole chain (``for_crop``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maskgen.landmarks import (  # noqa: E402
    PRIOR_PATH,
    LandmarkDetector,
    LandmarkPrior,
    fit_box_to_points,
    procrustes_distance,
)

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: HOG threshold that defines the reference rows (dlib's default)
REFERENCE_HOG_THRESHOLD = 0.0
#: percentile of the reference rows' statistics used for thresholds, and the margin on top
THRESHOLD_PERCENTILE = 99.5
THRESHOLD_MARGIN = 1.25


def load_rows(path: str, limit: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 48, 48) uint8 images, (N,) int emotions, (N,) str usages."""
    try:
        from maskgen.dataset import read_fer_csv

        table = read_fer_csv(path)
        n = len(table) if limit is None else min(limit, len(table))
        usage = table.usage[:n] if table.usage is not None else np.array(["?"] * n, dtype=object)
        return table.images[:n], np.asarray(table.emotion[:n]), np.asarray(usage)
    except ImportError:
        import pandas as pd

        df = pd.read_csv(path, nrows=limit)
        images = np.stack([np.array(s.split(), dtype=np.uint8).reshape(48, 48) for s in df["pixels"]])
        usage = df["Usage"].to_numpy() if "Usage" in df else np.array(["?"] * len(df), dtype=object)
        return images, df["emotion"].to_numpy(), usage


def interocular(points: np.ndarray) -> float:
    """Distance between the two eye centres of (68, 2) points."""
    return float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))


def norm_error(points: np.ndarray, reference: np.ndarray) -> float:
    """Mean point-to-point distance / inter-ocular distance of the reference."""
    return float(np.linalg.norm(points - reference, axis=1).mean() / max(interocular(reference), 1e-6))


def fit_prior(images: np.ndarray, out: Path, command: str) -> None:
    """Learn the crop prior from the rows where HOG (threshold 0) finds a face."""
    det = LandmarkDetector(prior=None)
    boxes, shapes, pts_all = [], [], []
    for img in images:
        canvas = det.crop_canvas(img)
        rects, scores, _ = det.hog.run(canvas.image, 0, REFERENCE_HOG_THRESHOLD)
        if len(rects) == 0:
            continue
        i = int(np.argmax(scores))
        r = rects[i]
        box_big = (r.left(), r.top(), r.right(), r.bottom())
        pts = canvas.to_input(det._predict(canvas.image, box_big)).astype(np.float64)
        box = canvas.box_to_input(box_big)
        h, w = img.shape
        boxes.append((box[0] / w, box[1] / h, box[2] / w, box[3] / h))
        size = box[2] - box[0]
        shapes.append((pts - np.array(box[:2])) / size)
        pts_all.append(pts)
    boxes_a = np.array(boxes)
    mean_shape = np.mean(shapes, axis=0)
    prior_box = tuple(float(v) for v in np.median(boxes_a, axis=0))
    scores = np.array([procrustes_distance(p, mean_shape) for p in pts_all])
    h, w = images.shape[1:]
    psize = ((prior_box[2] - prior_box[0]) * w + (prior_box[3] - prior_box[1]) * h) / 2
    pc = np.array([(prior_box[0] + prior_box[2]) / 2 * w, (prior_box[1] + prior_box[3]) / 2 * h])
    offsets, sizes = [], []
    for p in pts_all:
        fb = fit_box_to_points(p, mean_shape)
        offsets.append(np.hypot((fb[0] + fb[2]) / 2 - pc[0], (fb[1] + fb[3]) / 2 - pc[1]) / psize)
        sizes.append((fb[2] - fb[0]) / psize)
    q = THRESHOLD_PERCENTILE
    lo_size = np.percentile(sizes, 100 - q) / THRESHOLD_MARGIN
    hi_size = np.percentile(sizes, q) * THRESHOLD_MARGIN
    prior = LandmarkPrior(
        box=prior_box,  # type: ignore[arg-type]
        mean_shape=mean_shape,
        max_score=float(np.percentile(scores, q) * THRESHOLD_MARGIN),
        max_center_offset=float(np.percentile(offsets, q) * THRESHOLD_MARGIN),
        size_range=(float(lo_size), float(hi_size)),
        meta={
            "made_by": command,
            "rows_seen": int(len(images)),
            "rows_with_hog_face": int(len(boxes)),
            "hog_threshold": REFERENCE_HOG_THRESHOLD,
            "thresholds": f"p{q} of the HOG rows x {THRESHOLD_MARGIN}",
            "score_p50_p95_p99": [round(float(np.percentile(scores, v)), 5) for v in (50, 95, 99)],
        },
    )
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(prior.to_json(), fh, indent=1)
        fh.write("\n")
    os.replace(tmp, out)
    print(f"wrote {out}: {len(boxes)}/{len(images)} HOG rows; box {np.round(prior_box, 4).tolist()}; "
          f"max_score {prior.max_score:.4f}; center {prior.max_center_offset:.3f}; size {prior.size_range}")


def pct(a: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(np.asarray(a), q)) if len(a) else float("nan")


def benchmark(images: np.ndarray, emotion: np.ndarray, usage: np.ndarray, with_cnn_ref: int) -> dict:
    det = LandmarkDetector()
    det.prior, det.hog, det.predictor  # load before timing  # noqa: B018
    n = len(images)
    # ---- whole chain, timed as the pipeline calls it
    t0 = time.perf_counter()
    results = [det.for_crop(img) for img in images]
    chain_ms = (time.perf_counter() - t0) / n * 1000
    # ---- stages, timed separately on every row
    stage_t: dict[str, float] = defaultdict(float)
    ref_rows, errs_prior, errs_fixed, errs_cnn = [], [], [], []
    for i, img in enumerate(images):
        t = time.perf_counter()
        canvas = det.crop_canvas(img)
        stage_t["canvas"] += time.perf_counter() - t
        t = time.perf_counter()
        ref = det.crop_hog(img, canvas, threshold=REFERENCE_HOG_THRESHOLD)
        stage_t["hog(thr 0)"] += time.perf_counter() - t
        t = time.perf_counter()
        pri = det.crop_prior(img, canvas)
        stage_t["prior+refine"] += time.perf_counter() - t
        if ref is not None and ref.accepted:
            ref_rows.append(i)
            errs_prior.append(norm_error(pri.points, ref.points))
            fixed = det.crop_prior(img, canvas, max_iter=0)
            errs_fixed.append(norm_error(fixed.points, ref.points))
    t = time.perf_counter()
    m = min(with_cnn_ref, len(ref_rows))
    for i in ref_rows[:m]:
        c = det.crop_cnn(images[i])
        ref = det.crop_hog(images[i], threshold=REFERENCE_HOG_THRESHOLD)
        if c is not None:
            errs_cnn.append(norm_error(c.points, ref.points))
    cnn_ms = (time.perf_counter() - t) / max(m, 1) * 1000
    # ---- coverage
    acc = np.array([r.accepted for r in results])
    src = Counter(r.source if r.accepted else "rejected" for r in results)
    per_class = {}
    for k, name in enumerate(EMOTIONS):
        sel = emotion == k
        if sel.any():
            per_class[name] = (float(acc[sel].mean()), int(sel.sum()))
    per_usage = {}
    for u in sorted(set(usage.tolist())):
        sel = usage == u
        per_usage[str(u)] = (float(acc[sel].mean()), int(sel.sum()))
    return {
        "rows": n,
        "accepted": float(acc.mean()),
        "per_class": per_class,
        "per_usage": per_usage,
        "per_source": {k: v / n for k, v in sorted(src.items())},
        "chain_ms": chain_ms,
        "stage_ms": {k: v / n * 1000 for k, v in stage_t.items()},
        "cnn_ms": cnn_ms,
        "reference_rows": len(ref_rows),
        "err_prior": (pct(errs_prior, 50), pct(errs_prior, 95), pct(errs_prior, 99)),
        "err_fixed": (pct(errs_fixed, 50), pct(errs_fixed, 95), pct(errs_fixed, 99)),
        "err_cnn": (pct(errs_cnn, 50), pct(errs_cnn, 95), len(errs_cnn)),
        "scores_rejected": [round(r.score, 4) for r in results if not r.accepted][:20],
    }


def report(res: dict, command: str) -> str:
    lines = [
        f"Command: `{command}`",
        f"Machine: {os.cpu_count()}-core CPU, one process (one core), dlib HOG + shape_predictor_68 + MMOD CNN.",
        "",
        f"Rows: {res['rows']}; accepted landmarks: **{res['accepted']:.2%}**",
        "",
        "| class | accepted | rows |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v[0]:.2%} | {v[1]} |" for k, v in res["per_class"].items()]
    lines += ["", "| usage | accepted | rows |", "|---|---|---|"]
    lines += [f"| {k} | {v[0]:.2%} | {v[1]} |" for k, v in res["per_usage"].items()]
    lines += ["", "Source of the landmarks (fraction of rows): " +
              ", ".join(f"{k} {v:.2%}" for k, v in res["per_source"].items()), ""]
    ep, ef, ec = res["err_prior"], res["err_fixed"], res["err_cnn"]
    lines += [
        f"Fallback accuracy on the {res['reference_rows']} rows where HOG (threshold 0) finds a plausible face, "
        "against the landmarks in the HOG box (mean point error / inter-ocular distance):",
        "",
        "| fallback | median | p95 | p99 |",
        "|---|---|---|---|",
        f"| prior box + refine (used) | {ep[0]:.3f} | {ep[1]:.3f} | {ep[2]:.3f} |",
        f"| fixed prior box, no refine | {ef[0]:.3f} | {ef[1]:.3f} | {ef[2]:.3f} |",
        f"| CNN box ({ec[2]} rows) | {ec[0]:.3f} | {ec[1]:.3f} | |",
        "",
        f"Time per 48x48 image, one core: whole chain (`for_crop`) **{res['chain_ms']:.2f} ms**; stages: " +
        ", ".join(f"{k} {v:.2f} ms" for k, v in res["stage_ms"].items()) + f", CNN stage {res['cnn_ms']:.1f} ms.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", help="FER2013-format CSV (.csv or .csv.gz)")
    ap.add_argument("--limit", type=int, default=None, help="first N rows only")
    ap.add_argument("--fit-prior", action="store_true", help=f"learn {PRIOR_PATH.name} instead of benchmarking")
    ap.add_argument("--prior-out", type=Path, default=PRIOR_PATH)
    ap.add_argument("--cnn-ref", type=int, default=200, help="reference rows on which the CNN fallback is measured")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    args = ap.parse_args(argv)
    command = "python benchmarks/landmarks.py " + " ".join(argv if argv is not None else sys.argv[1:])
    images, emotion, usage = load_rows(args.csv, args.limit)
    if args.fit_prior:
        fit_prior(images, args.prior_out, command)
        return
    res = benchmark(images, emotion, usage, args.cnn_ref)
    print(report(res, command))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
