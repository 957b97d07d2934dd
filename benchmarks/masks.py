#!/usr/bin/env python
"""Mask library benchmarks: render speed on 48x48 faces, and QA pass rates of a build-smfer sidecar.

Speed (apply_mask only; landmarks are computed once beforehand and not timed)::

    python benchmarks/masks.py speed ../shared/data/fer2013.csv.gz --rows 2000

QA pass rates per fit and per mask, from the sidecar of a full build::

    maskgen build-smfer ../shared/data/fer2013.csv.gz -o /tmp/smfer.csv -j 2
    python benchmarks/masks.py qa /tmp/smfer.meta.csv
    python benchmarks/masks.py recheck /tmp/smfer.meta.csv ../shared/data/fer2013.csv.gz   # out-of-frame points

Run anything longer than ~30 s of CPU under the shared lock (``flock /tmp/maskgen-cpu.lock ...``).
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from maskgen.cli_errors import at_least


def speed(csv_path: Path, rows: int, seed: int, repeats: int) -> None:
    """Time apply_mask (all built-in masks, default sampling) on ``rows`` random FER rows."""
    from maskgen.dataset import read_fer_csv
    from maskgen.landmarks import get_detector
    from maskgen.fits import sample_params
    from maskgen.masks import list_masks
    from maskgen.pipeline import apply_mask

    table = read_fer_csv(csv_path)
    idx = np.sort(np.random.default_rng(seed).choice(len(table), size=min(rows, len(table)), replace=False))
    det = get_detector()
    t0 = time.perf_counter()
    pts = [det.for_crop(table.images[i]).points for i in idx]
    t_lm = (time.perf_counter() - t0) / len(idx)
    params = [sample_params(np.random.default_rng([seed, int(i)]), p) for i, p in zip(idx, pts)]
    apply_mask(table.images[idx[0]], pts[0], params[0])             # warm the per-template caches
    for name in list_masks():
        apply_mask(table.images[idx[0]], pts[0], params[0].__class__(mask=name))
    per_mask: dict[str, list[float]] = defaultdict(list)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for k, i in enumerate(idx):
            s = time.perf_counter()
            apply_mask(table.images[i], pts[k], params[k])
            per_mask[params[k].mask].append(time.perf_counter() - s)
        best = min(best, (time.perf_counter() - t0) / len(idx))
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}")
    print(f"rows: {len(idx)}, landmarks (for_crop): {t_lm * 1e3:.2f} ms/row (1 process)")
    print(f"apply_mask: {best * 1e3:.3f} ms/row (best of {repeats} passes, 1 process)")
    for name, ts in sorted(per_mask.items()):
        print(f"  {name:10s} median {np.median(ts) * 1e3:.3f} ms  p95 {np.percentile(ts, 95) * 1e3:.3f} ms")


#: the sidecar columns each command reads
QA_COLUMNS = ("status", "fit", "mask", "qa_passed", "qa_nose_covered", "qa_mouth_covered", "qa_eyes_visible",
              "qa_chin_covered")
RECHECK_COLUMNS = ("row_id", "fit", "qa_passed", "params")


def read_sidecar(sidecar: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a build-smfer sidecar CSV; ValueError naming the file and the missing column(s) when
    it is not one (a FER2013 CSV given in its place), or the line whose qa_passed is not empty, 0 or 1."""
    with open(sidecar, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{sidecar}: not a build-smfer sidecar: no {', '.join(missing)} column "
                             "(give the .meta.csv that maskgen build-smfer writes beside its output)")
        rows = []
        for row in reader:
            row = {k: (v or "") for k, v in row.items() if k is not None}  # a short line: its missing cells empty
            if row.get("qa_passed", "") not in ("", "0", "1"):
                raise ValueError(f"{sidecar} line {reader.line_num}: qa_passed {row['qa_passed'][:20]!r} is not "
                                 "empty, 0 or 1")
            rows.append((reader.line_num, row))
    return rows


def qa(sidecar: Path) -> None:
    """Pass rates of the QA check per fit and per (fit, mask), from a build-smfer sidecar CSV."""
    total: Counter = Counter()
    passed: Counter = Counter()
    status: Counter = Counter()
    fails: Counter = Counter()
    for _, row in read_sidecar(sidecar, QA_COLUMNS):
        status[row["status"]] += 1
        if row["qa_passed"] == "":
            continue
        for key in (("all", row["fit"]), (row["mask"], row["fit"])):
            total[key] += 1
            passed[key] += int(row["qa_passed"])
        if row["qa_passed"] == "0":
            why = [k for k in ("nose_covered", "mouth_covered", "eyes_visible", "chin_covered")
                   if row[f"qa_{k}"] == "1"]
            fails[(row["fit"], ",".join(why))] += 1
    print(f"sidecar: {sidecar}")
    print(f"status: {dict(status)}")
    print("| mask | fit | rows | QA passed |")
    print("|---|---|---:|---:|")
    for (mask, fit) in sorted(total, key=lambda k: (k[0] != "all", k[0], k[1])):
        n, p = total[(mask, fit)], passed[(mask, fit)]
        print(f"| {mask} | {fit} | {n} | {p / n:.2%} ({n - p} fail) |")
    print("most common failures (fit, flags that were true):")
    for (fit, flags), n in fails.most_common(8):
        print(f"  {fit:13s} {n:5d}  true: {flags or '-'}")


def recheck(sidecar: Path, csv_path: Path) -> None:
    """Re-examine the rows that failed QA, ignoring landmarks that lie outside the image.

    FER2013 crops often cut the chin and an open mouth; a point outside the frame can be neither
    covered nor visible, but :func:`maskgen.qa.sample_alpha` reads 0 there ("uncovered").  Each failing
    row is re-rendered from the sidecar's recorded params and its (recomputed, deterministic) landmarks,
    and the fit's rules are applied to the in-frame points only ("unverifiable": none in frame).
    """
    from maskgen import qa as Q
    from maskgen.dataset import read_fer_csv
    from maskgen.fits import MaskParams
    from maskgen.landmarks import get_detector
    from maskgen.pipeline import apply_mask
    from maskgen.points import LANDMARK_GROUPS

    rows = [(line, r) for line, r in read_sidecar(sidecar, RECHECK_COLUMNS) if r["qa_passed"] != ""]
    total = Counter(r["fit"] for _, r in rows)
    images = read_fer_csv(csv_path).images
    failed = []
    for line, r in rows:
        if r["qa_passed"] != "0":
            continue
        where = f"{sidecar} line {line}"
        try:
            k = int(r["row_id"])
        except ValueError:
            raise ValueError(f"{where}: row_id {r['row_id'][:40]!r} is not an integer") from None
        if not 0 <= k < len(images):
            raise ValueError(f"{where}: row_id {k} outside the {len(images)} rows of {csv_path}")
        if r["fit"] not in ("correct", "nose_exposed", "chin_only"):
            raise ValueError(f"{where}: unknown fit {r['fit'][:40]!r}")
        try:
            params = MaskParams.from_dict(json.loads(r["params"]))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"{where}: params are not a mask's parameters ({' '.join(str(exc).split())[:80]})") \
                from None
        failed.append((k, params, r))
    det = get_detector()
    mouth, eyes = LANDMARK_GROUPS["mouth"], LANDMARK_GROUPS["eyes"]
    rescued: Counter = Counter()
    unverifiable: Counter = Counter()
    for k, params, r in failed:
        img = images[k]
        pts = det.for_crop(img).points.astype(np.float64)
        _, alpha = apply_mask(img, pts, params)
        h, w = alpha.shape

        def inside(xy: np.ndarray) -> np.ndarray:
            return (xy[:, 0] >= -0.5) & (xy[:, 0] <= w - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] <= h - 0.5)

        cov = Q.sample_alpha(alpha, pts) >= Q.COVERED_ALPHA
        ins = inside(pts)
        m_in, e_in = mouth[ins[mouth]], eyes[ins[eyes]]
        chin_xy = pts[Q.CHIN_JAW_POINTS] + Q.CHIN_INSET * (pts[Q.LOWER_LIP_CENTER] - pts[Q.CHIN_JAW_POINTS])
        chin_in = chin_xy[inside(chin_xy)]
        eyes_ok = not cov[e_in].any()
        mouth_cov = len(m_in) > 0 and cov[m_in].mean() >= Q.MOUTH_COVERED_FRACTION
        fit = r["fit"]
        if fit == "chin_only" and len(chin_in) == 0:
            unverifiable[fit] += 1
            continue
        chin_cov = len(chin_in) > 0 and (Q.sample_alpha(alpha, chin_in) >= Q.COVERED_ALPHA).mean() >= \
            Q.CHIN_COVERED_FRACTION
        nose = bool(cov[Q.NOSE_TIP_POINT])
        ok = {"correct": nose and mouth_cov and eyes_ok,
              "nose_exposed": (not nose) and mouth_cov and eyes_ok,
              "chin_only": (not mouth_cov) and chin_cov and eyes_ok}[fit]
        rescued[fit] += ok
    print("| fit | rows | QA passed | pass, out-of-frame points ignored | unverifiable (none in frame) |")
    print("|---|---:|---:|---:|---:|")
    for fit in sorted(total):
        n = total[fit]
        f = sum(1 for _, _, r in failed if r["fit"] == fit)
        print(f"| {fit} | {n} | {(n - f) / n:.2%} | {(n - f + rescued[fit]) / n:.2%} | {unverifiable[fit]} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("csv", type=Path)
    s.add_argument("--rows", type=at_least(1), default=2000)
    s.add_argument("--seed", type=at_least(0), default=0)
    s.add_argument("--repeats", type=at_least(1), default=3)
    q = sub.add_parser("qa")
    q.add_argument("sidecar", type=Path)
    rc = sub.add_parser("recheck")
    rc.add_argument("sidecar", type=Path)
    rc.add_argument("csv", type=Path, help="the build's input CSV")
    args = ap.parse_args()
    if args.cmd == "speed":
        speed(args.csv, args.rows, args.seed, args.repeats)
    elif args.cmd == "qa":
        qa(args.sidecar)
    else:
        recheck(args.sidecar, args.csv)


if __name__ == "__main__":
    from maskgen.cli_errors import run_script

    run_script(main)
