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
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from maskgen.landmarks import (  # noqa: E402
    PRIOR_PATH,
    LandmarkDetector,
    LandmarkPrior,
    Landmarks,
    crop_features,
    frame_features,
)
from maskgen.landmarks.dlib_chain import REFINE_MAX_ITER  # noqa: E402
from maskgen.points import fit_box_to_points, procrustes_distance  # noqa: E402
from maskgen.cli_errors import at_least, check_output_paths, run_script  # noqa: E402
from maskgen.io import atomic_write  # noqa: E402
from maskgen.paths import Output  # noqa: E402

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: HOG threshold that defines the reference rows (dlib's default)
REFERENCE_HOG_THRESHOLD = 0.0
#: HOG-confidence strata reported for the reference rows
CONFIDENCE_STRATA = (0.0, 0.5, 1.0)
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


def ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ridge regression: (coef (d, k), intercept (k,)), intercept not penalised."""
    xm, ym = x.mean(axis=0), y.mean(axis=0)
    xc = (x - xm).astype(np.float64)
    coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - ym))
    return coef.astype(np.float32), (ym - xm @ coef).astype(np.float32)


def fit_prior(images: np.ndarray, usage: np.ndarray, fit_usage: str, out: Path, command: str,
              stages: int, alpha: float) -> None:
    """Learn the crop prior from the rows (of ``fit_usage``) where HOG (threshold 0) finds a face."""
    det = LandmarkDetector(prior=None)
    sel = np.flatnonzero(usage == fit_usage) if fit_usage != "all" else np.arange(len(images))
    rows, boxes, shapes, pts_all = [], [], [], []
    t0 = time.perf_counter()
    for i in sel:
        img = images[i]
        canvas = det.crop_canvas(img)
        rects, scores, _ = det.hog.run(canvas.image, 0, REFERENCE_HOG_THRESHOLD)
        if len(rects) == 0:
            continue
        r = rects[int(np.argmax(scores))]
        box_big = (r.left(), r.top(), r.right(), r.bottom())
        pts = canvas.to_input(det._predict(canvas.image, box_big)).astype(np.float64)
        box = canvas.box_to_input(box_big)
        h, w = img.shape
        rows.append(i)
        boxes.append((box[0] / w, box[1] / h, box[2] / w, box[3] / h))
        shapes.append((pts - np.array(box[:2])) / (box[2] - box[0]))
        pts_all.append(pts)
    print(f"HOG on {len(sel)} rows: {len(rows)} faces ({time.perf_counter() - t0:.0f} s)", flush=True)
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
    max_score = float(np.percentile(scores, q) * THRESHOLD_MARGIN)
    # ---- box regressor cascade, trained on the plausible HOG rows
    good = scores <= np.percentile(scores, q)
    idx = np.array(rows)[good]
    tb = boxes_a[good]  # fractions of the crop
    target = np.stack([(tb[:, 0] + tb[:, 2]) / 2, (tb[:, 1] + tb[:, 3]) / 2,
                       np.log(((tb[:, 2] - tb[:, 0]) + (tb[:, 3] - tb[:, 1])) / 2)], axis=1)
    feats = np.stack([crop_features(images[i]) for i in idx])
    coef, icpt = ridge(feats, target, alpha)
    cascade = [(coef, icpt)]
    cur = feats @ coef + icpt
    err = [float(np.abs(cur - target)[:, :2].mean() * w)]
    for _ in range(1, stages):
        size = np.exp(cur[:, 2]) * w
        cx, cy = cur[:, 0] * w, cur[:, 1] * h
        feats = np.stack([frame_features(images[i], (x, y, s)) for i, x, y, s in zip(idx, cx, cy, size)])
        tsize = np.exp(target[:, 2]) * w
        resid = np.stack([(target[:, 0] * w - cx) / size, (target[:, 1] * h - cy) / size,
                          np.log(tsize / size)], axis=1)
        coef, icpt = ridge(feats, resid, alpha)
        cascade.append((coef, icpt))
        d = feats @ coef + icpt
        cur = np.stack([(cx + d[:, 0] * size) / w, (cy + d[:, 1] * size) / h, np.log(size * np.exp(d[:, 2]) / w)], 1)
        err.append(float(np.abs(cur - target)[:, :2].mean() * w))
    prior = LandmarkPrior(
        box=prior_box,  # type: ignore[arg-type]
        mean_shape=mean_shape,
        max_score=max_score,
        max_center_offset=float(np.percentile(offsets, q) * THRESHOLD_MARGIN),
        size_range=(float(np.percentile(sizes, 100 - q) / THRESHOLD_MARGIN),
                    float(np.percentile(sizes, q) * THRESHOLD_MARGIN)),
        cascade=tuple(cascade),
        meta={
            "made_by": command,
            "fit_rows": f"usage == {fit_usage!r}: {len(sel)} rows, {len(rows)} with a HOG face",
            "hog_threshold": REFERENCE_HOG_THRESHOLD,
            "thresholds": f"p{q} of the HOG rows x {THRESHOLD_MARGIN}",
            "score_p50_p95_p99": [round(float(np.percentile(scores, v)), 5) for v in (50, 95, 99)],
            "cascade": f"{stages} ridge stages (alpha {alpha}) on {len(idx)} rows; "
                       f"train centre MAE per stage (px of a {w}-px crop): {[round(e, 3) for e in err]}",
        },
    )
    with atomic_write(out) as tmp:
        tmp.write_text(json.dumps(prior.to_json(), separators=(",", ":")) + "\n")
    print(f"wrote {out}: box {np.round(prior_box, 4).tolist()}; max_score {prior.max_score:.4f}; "
          f"center {prior.max_center_offset:.3f}; size {prior.size_range}; {prior.meta['cascade']}")


def hog_reference(det: LandmarkDetector, img: np.ndarray, canvas=None) -> Landmarks | None:
    """The reference landmarks of a row: HOG at dlib's default threshold, if plausible; else None."""
    ref = det.crop_hog(img, canvas, threshold=REFERENCE_HOG_THRESHOLD)
    return ref if ref is not None and ref.accepted else None


def pct(a: list[float] | np.ndarray, q: float) -> float:
    return float(np.percentile(np.asarray(a), q)) if len(a) else float("nan")


#: fallback variants measured against the HOG reference: name -> crop_prior keyword arguments
FALLBACKS = {
    "regressed box (used)": {"regress": True, "max_iter": 0},
    "regressed box + refine": {"regress": True, "max_iter": REFINE_MAX_ITER},
    "fixed median box": {"regress": False, "max_iter": 0},
    "fixed median box + refine": {"regress": False, "max_iter": REFINE_MAX_ITER},
}
#: the regressed-box variants, also compared on rows HOG misses (against CNN landmarks)
MISS_VARIANTS = [k for k, kw in FALLBACKS.items() if kw["regress"]]


def benchmark(images: np.ndarray, emotion: np.ndarray, usage: np.ndarray, with_cnn_ref: int,
              held_out: str, every: int, miss_cnn: int = 400) -> dict:
    det = LandmarkDetector()
    det.prior, det.hog, det.predictor  # load before timing  # noqa: B018
    n = len(images)
    # ---- whole chain, timed as the pipeline calls it
    t0 = time.perf_counter()
    results = [det.for_crop(img) for img in images]
    chain_ms = (time.perf_counter() - t0) / n * 1000
    # ---- stages, timed separately on every row; fallbacks against the HOG reference
    stage_t: dict[str, float] = defaultdict(float)
    ref_rows: list[int] = []
    ref_boxes: Counter = Counter()  # distinct HOG reference boxes (HOG's output is a coarse lattice)
    ref_conf: list[float] = []
    errs: dict[str, list[float]] = {k: [] for k in FALLBACKS}
    box_err: list[tuple[float, float]] = []  # regressed vs HOG box: |log size ratio|, centre offset / size
    stage_rows = range(0, n, every)
    for i in stage_rows:
        img = images[i]
        t = time.perf_counter()
        canvas = det.crop_canvas(img)
        stage_t["canvas"] += time.perf_counter() - t
        t = time.perf_counter()
        ref = hog_reference(det, img, canvas)
        stage_t["HOG + predictor"] += time.perf_counter() - t
        for name, kw in FALLBACKS.items():
            t = time.perf_counter()
            fb = det.crop_prior(img, canvas, **kw)
            stage_t[name] += time.perf_counter() - t
            if ref is not None:
                errs[name].append(norm_error(fb.points, ref.points))
        if ref is not None:
            ref_boxes[tuple(np.round(ref.box, 3))] += 1
            ref_rows.append(i)
            ref_conf.append(ref.confidence)
            rb, hb = det.regress_box(img), ref.box
            hsize = ((hb[2] - hb[0]) + (hb[3] - hb[1])) / 2
            box_err.append((abs(np.log((rb[2] - rb[0]) / hsize)),
                            float(np.hypot((rb[0] + rb[2] - hb[0] - hb[2]) / 2, (rb[1] + rb[3] - hb[1] - hb[3]) / 2))
                            / hsize))
    if not ref_rows:
        raise ValueError("HOG found a face in none of the rows measured: no reference to measure the fallbacks "
                         "against (give more rows, or real faces)")
    ref_a = np.array(ref_rows)
    conf_a = np.array(ref_conf)
    held = usage[ref_a] == held_out if held_out != "none" else np.zeros(len(ref_a), bool)
    err_table = {}
    for name, e in errs.items():
        e = np.array(e)
        err_table[name] = {"all": [pct(e, 50), pct(e, 95), pct(e, 99)],
                           "held_out": [pct(e[held], 50), pct(e[held], 95), pct(e[held], 99)] if held.any() else None}
    by_conf = {}
    used = np.array(errs[next(iter(FALLBACKS))])
    for c in CONFIDENCE_STRATA:
        sel = conf_a >= c
        by_conf[c] = (int(sel.sum()), pct(used[sel], 50), pct(used[sel], 95), pct(used[sel], 99))
    errs_cnn = []
    m = min(with_cnn_ref, len(ref_rows))
    t = time.perf_counter()
    for i in ref_rows[:: max(1, len(ref_rows) // max(m, 1))][:m]:
        c = det.crop_cnn(images[i])
        ref = hog_reference(det, images[i])
        if c is not None:
            errs_cnn.append(norm_error(c.points, ref.points))
    cnn_ms = (time.perf_counter() - t) / max(m, 1) * 1000
    err_table["CNN box"] = {"all": [pct(errs_cnn, 50), pct(errs_cnn, 95), pct(errs_cnn, 99)], "held_out": None,
                            "rows": len(errs_cnn), "of": m}
    # ---- rows HOG misses (the rows the fallback is for): regressed box with / without refine
    # against the landmarks in the CNN's box (no HOG reference exists there)
    miss = {k: [] for k in MISS_VARIANTS}
    miss_tried = 0
    for i in np.random.default_rng(0).permutation(n):
        if len(miss[MISS_VARIANTS[0]]) >= miss_cnn:
            break
        if results[i].source == "hog" and results[i].accepted:
            continue
        miss_tried += 1
        c = det.crop_cnn(images[i])
        if c is None or not c.accepted:
            continue
        for name in MISS_VARIANTS:
            miss[name].append(norm_error(det.crop_prior(images[i], **FALLBACKS[name]).points, c.points))
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
        "stage_ms": {k: v / len(stage_rows) * 1000 for k, v in stage_t.items()},
        "stage_rows": len(stage_rows),
        "every": every,
        "cnn_ms": cnn_ms,
        "reference_rows": len(ref_rows),
        "held_out_rows": int(held.sum()),
        "held_out": held_out,
        "errors": err_table,
        "by_confidence": by_conf,
        "box_err": {"log_size": [pct([b[0] for b in box_err], q) for q in (50, 95)],
                    "centre": [pct([b[1] for b in box_err], q) for q in (50, 95)]},
        "rejected_rows": [i for i, r in enumerate(results) if not r.accepted][:50],
        "ref_boxes": len(ref_boxes),
        "ref_boxes_top10": sum(c for _, c in ref_boxes.most_common(10)),
        "miss_vs_cnn": {k: [pct(v, 50), float(np.mean(v)) if v else float("nan"), pct(v, 90), pct(v, 95)]
                        for k, v in miss.items()},
        "miss_rows": len(miss[MISS_VARIANTS[0]]),
        "miss_tried": miss_tried,
        "miss_closer": float(np.mean(np.array(miss[MISS_VARIANTS[0]]) < np.array(miss[MISS_VARIANTS[1]])))
        if miss[MISS_VARIANTS[0]] else float("nan"),
    }


def report(res: dict, command: str) -> str:
    lines = [
        f"Command: `{command}`",
        f"Machine: {os.cpu_count()}-core CPU (shared), one process = one core; dlib HOG + shape_predictor_68 + MMOD CNN.",
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
    lines += [
        f"Fallback accuracy on the {res['reference_rows']} rows (1 in {res['every']} rows sampled) where HOG (threshold 0) finds a plausible face, "
        "run as if HOG had failed, against the landmarks in the HOG box (mean point error / inter-ocular "
        f"distance). Held out = the {res['held_out_rows']} of them with usage {res['held_out']!r} "
        "(not used to fit the prior):",
        "",
        "| fallback | median | p95 | p99 | held-out median | held-out p95 | held-out p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in res["errors"].items():
        a, h = e["all"], e["held_out"]
        label = name if "rows" not in e else f"{name} ({e['rows']} of {e['of']} sampled rows found)"
        hs = " | ".join(f"{v:.3f}" for v in h) if h else " | "
        lines.append(f"| {label} | {a[0]:.3f} | {a[1]:.3f} | {a[2]:.3f} | {hs} |")
    lines += [
        "",
        "The reference itself is noisy: the 68-point predictor moves with its box, HOG boxes come in "
        "discrete sizes, and weak HOG detections are sometimes wrong. The used fallback against "
        "references of increasing HOG confidence:",
        "",
        "| HOG confidence of the reference | rows | median | p95 | p99 |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| >= {c} | {v[0]} | {v[1]:.3f} | {v[2]:.3f} | {v[3]:.3f} |" for c, v in res["by_confidence"].items()]
    lines += [
        "",
        f"Rows where the chain's HOG stage found no plausible face (the rows the fallback is for; "
        f"{res['miss_rows']} random ones where the CNN finds a plausible face, of {res['miss_tried']} tried): "
        "the regressed-box variants against the landmarks in the CNN box:",
        "",
        "| fallback | median | mean | p90 | p95 |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {k} | " + " | ".join(f"{x:.3f}" for x in v) + " |" for k, v in res["miss_vs_cnn"].items()]
    lines += ["", f"The used variant is closer to the CNN landmarks than the refined one on "
              f"{res['miss_closer']:.0%} of these rows."]
    be = res["box_err"]
    lines += ["", f"Regressed box vs HOG box on the same rows: |log size ratio| median {be['log_size'][0]:.3f}, "
              f"p95 {be['log_size'][1]:.3f} (one step of HOG's image pyramid is log 1.2 = {np.log(1.2):.3f}); "
              f"centre offset / box size median {be['centre'][0]:.3f}, p95 {be['centre'][1]:.3f}. "
              f"HOG's boxes form a coarse lattice (8-pixel cells, pyramid steps of 1.2): the "
              f"{res['reference_rows']} reference rows have only {res['ref_boxes']} distinct boxes, and the 10 "
              f"most common cover {res['ref_boxes_top10'] / max(res['reference_rows'], 1):.0%} of them."]
    lines += [
        "",
        f"Time per 48x48 image, one core: whole chain (`for_crop`) **{res['chain_ms']:.2f} ms**; stages run on "
        "every row: " + ", ".join(f"{k} {v:.2f} ms" for k, v in res["stage_ms"].items()) +
        f"; CNN stage {res['cnn_ms']:.1f} ms.",
    ]
    return "\n".join(lines)


def lattice_test(images: np.ndarray, usage: np.ndarray, fit_usage: str, held_out: str) -> str:
    """Snap the regressed box to HOG's own box lattice: does that bring the fallback closer to HOG?

    The lattice is every distinct HOG box (threshold 0, plausible) on the ``fit_usage`` rows'
    canvases. On the ``held_out`` rows with a HOG reference, compare the used fallback (predictor
    in the regressed box) with (a) the predictor in the nearest lattice box and (b) a weighted
    mean of the predictor in the 3 lattice boxes most likely under a Gaussian model of the
    regressor's error (fitted on every 10th ``fit_usage`` row).
    """
    det = LandmarkDetector()

    def coords(b) -> np.ndarray:  # (cx, cy, log size) of a canvas box
        return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, np.log(b[2] - b[0])])

    fit_rows = np.flatnonzero(usage == fit_usage)
    lattice: Counter = Counter()
    resid = []
    for k, i in enumerate(fit_rows):
        canvas = det.crop_canvas(images[i])
        ref = hog_reference(det, images[i], canvas)
        if ref is None:
            continue
        hb = tuple(float(v) for v in np.round(canvas.box_from_input(ref.box)))
        lattice[hb] += 1
        if k % 10 == 0:
            c, h = coords(canvas.box_from_input(det.regress_box(images[i]))), coords(hb)
            size = np.exp(c[2])
            resid.append([(h[0] - c[0]) / size, (h[1] - c[1]) / size, h[2] - c[2]])
    boxes = np.array(list(lattice), float)
    lc = np.stack([coords(b) for b in boxes])
    r = np.array(resid)
    mu, icov = r.mean(0), np.linalg.inv(np.cov(r.T))
    errs: dict[str, list[float]] = {"regressed box (used)": [], "nearest lattice box": [],
                                    "mean over 3 likeliest lattice boxes": []}
    exact = 0
    for i in np.flatnonzero(usage == held_out):
        canvas = det.crop_canvas(images[i])
        ref = hog_reference(det, images[i], canvas)
        if ref is None:
            continue
        rb = canvas.box_from_input(det.regress_box(images[i]))
        c, size = coords(rb), rb[2] - rb[0]
        z = np.stack([(lc[:, 0] - c[0]) / size, (lc[:, 1] - c[1]) / size, lc[:, 2] - c[2]], 1) - mu
        logp = -0.5 * np.einsum("ij,jk,ik->i", z, icov, z)
        top = np.argsort(-logp)[:3]
        w = np.exp(logp[top] - logp[top].max())
        pts = [canvas.to_input(det._predict(canvas.image, tuple(boxes[j]))) for j in top]
        errs["regressed box (used)"].append(norm_error(canvas.to_input(det._predict(canvas.image, rb)), ref.points))
        errs["nearest lattice box"].append(norm_error(pts[0], ref.points))
        errs["mean over 3 likeliest lattice boxes"].append(norm_error(sum(wi * p for wi, p in zip(w / w.sum(), pts)),
                                                                      ref.points))
        exact += int(np.allclose(boxes[top[0]], np.round(canvas.box_from_input(ref.box)), atol=1.01))
    n = len(errs["regressed box (used)"])
    lines = [f"HOG box lattice: {len(boxes)} distinct boxes on the {sum(lattice.values())} {fit_usage} rows with a "
             f"HOG face. On the {n} {held_out} rows with a HOG reference, the likeliest lattice box is HOG's own "
             f"box in {exact / max(n, 1):.0%} of rows:", "",
             "| fallback | median | p90 | p95 | p99 |", "|---|---|---|---|---|"]
    lines += [f"| {k} | " + " | ".join(f"{pct(v, q):.3f}" for q in (50, 90, 95, 99)) + " |" for k, v in errs.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", help="FER2013-format CSV (.csv or .csv.gz)")
    ap.add_argument("--limit", type=at_least(1), default=None, help="first N rows only")
    ap.add_argument("--fit-prior", action="store_true", help=f"learn {PRIOR_PATH.name} instead of benchmarking")
    ap.add_argument("--lattice-test", action="store_true",
                    help="instead: test snapping the regressed box to HOG's box lattice (fit on --fit-usage, "
                         "measured on --held-out rows)")
    ap.add_argument("--prior-out", type=Path, default=PRIOR_PATH)
    ap.add_argument("--cnn-ref", type=at_least(0), default=200, help="reference rows on which the CNN fallback is measured")
    ap.add_argument("--miss-cnn", type=at_least(0), default=400,
                    help="rows HOG misses on which the fallback variants are compared with the CNN")
    ap.add_argument("--every", type=at_least(1), default=2, help="stage timing / fallback accuracy on every N-th row")
    ap.add_argument("--fit-usage", default="Training", help="rows used by --fit-prior (a Usage value or 'all')")
    ap.add_argument("--held-out", default="PrivateTest", help="usage reported separately as held out ('none': skip)")
    ap.add_argument("--stages", type=at_least(1), default=4, help="box-regressor stages for --fit-prior")
    ap.add_argument("--alpha", type=float, default=30.0, help="ridge penalty for --fit-prior")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    args = ap.parse_args(argv)
    command = "python benchmarks/landmarks.py " + " ".join(argv if argv is not None else sys.argv[1:])
    # before any work: what this run writes (--prior-out with --fit-prior, else --json) is not the input
    outputs = ([] if args.lattice_test else [Output("--prior-out", args.prior_out)] if args.fit_prior
               else [Output("--json", args.json)] if args.json else [])
    check_output_paths([("input", args.csv)], outputs)
    images, emotion, usage = load_rows(args.csv, args.limit)
    if args.lattice_test:
        print(f"Command: `{command}`\n")
        print(lattice_test(images, usage, args.fit_usage, args.held_out))
        return
    if args.fit_prior:
        fit_prior(images, usage, args.fit_usage, args.prior_out, command, args.stages, args.alpha)
        return
    res = benchmark(images, emotion, usage, args.cnn_ref, args.held_out, args.every, args.miss_cnn)
    print(report(res, command))
    if args.json:
        with atomic_write(args.json) as tmp:
            tmp.write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    run_script(main)
