"""Benchmark `maskgen build-smfer` on a FER2013-format CSV.

Measures wall time, rows/s, peak memory (parent and workers), the fraction of rows masked
per class, QA pass rate, and, on the same rows with the same number of workers, the time of
bare dlib work alone (HOG detection on the same upscaled image + 68-point landmarks): the
floor our pipeline builds on.

    python benchmarks/build_smfer.py ../shared/data/fer2013.csv.gz [--jobs 2] [--limit N]
"""
from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from maskgen.cli_errors import at_least, run_script
from maskgen.dataset import FerTable, read_fer_csv, write_fer_csv
from maskgen.parallel import chunk_ranges, default_jobs, map_chunks
from maskgen.pipeline import BuildConfig
from maskgen.smfer import build_smfer


def _bare_dlib_chunk(images: np.ndarray) -> tuple[int, int]:
    """dlib alone on each image: HOG detection (dlib's default threshold) + 68 points, on the same
    upscaled, edge-padded canvas as maskgen's HOG stage. Returns (faces found, rows)."""
    from maskgen.landmarks import get_detector

    det = get_detector()  # only for its canvas and its (lazily loaded) dlib models
    found = 0
    for img in images:
        canvas = det.crop_canvas(img).image
        boxes = det.hog(canvas, 0)
        if boxes:
            det.predictor(canvas, boxes[0])
            found += 1
    return found, len(images)


def bare_dlib(table: FerTable, jobs: int) -> tuple[float, int]:
    """(seconds, rows with a HOG face) for bare dlib over the table with ``jobs`` workers."""
    chunks = [(table.images[a:b],) for a, b in chunk_ranges(len(table), 256)]
    t0 = time.perf_counter()
    found = sum(f for f, _ in map_chunks(_bare_dlib_chunk, chunks, jobs=jobs))
    return time.perf_counter() - t0, found


def _peak_mib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path)
    parser.add_argument("--jobs", type=at_least(0), default=0, help="workers (0 = all cores)")
    parser.add_argument("--limit", type=at_least(0), default=0, help="use only the first N rows (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-bare", action="store_true", help="don't time bare dlib")
    args = parser.parse_args(argv)
    jobs = args.jobs or default_jobs()

    source = args.csv
    with tempfile.TemporaryDirectory() as tmp:
        if args.limit:
            table = read_fer_csv(source)
            idx = slice(0, args.limit)
            sub = FerTable(path=source, images=table.images[idx], emotion=table.emotion[idx],
                           usage=None if table.usage is None else table.usage[idx])
            source = Path(tmp) / "subset.csv"
            write_fer_csv(source, sub)
        out = Path(tmp) / "smfer2013.csv"
        t0 = time.perf_counter()
        report = build_smfer(source, out, config=BuildConfig(seed=args.seed), jobs=jobs, progress=True)
        wall = time.perf_counter() - t0
        parent_mib, worker_mib = _peak_mib()
        result = read_fer_csv(out)
        src = read_fer_csv(source)
        same_meta = bool(np.array_equal(result.emotion, src.emotion)) and (
            src.usage is None or bool(np.array_equal(result.usage, src.usage)))
        bare_s, bare_found = (float("nan"), 0) if args.skip_bare else bare_dlib(src, jobs)

    n = report.rows
    lines = [
        f"- rows: {n}; jobs: {jobs}; machine: {platform.processor() or platform.machine()}, "
        f"{default_jobs()} cores, Python {platform.python_version()}",
        f"- wall time: **{wall:.1f} s** ({n / wall:.0f} rows/s); stages (s): {report.timings_s}",
        f"- peak RSS: parent {parent_mib:.0f} MiB, largest worker {worker_mib:.0f} MiB",
        f"- output rows {len(result)}, emotion and Usage identical to input: {same_meta}; "
        f"all pixel strings parse to 48x48 uint8: {result.images.shape[1:] == (48, 48)}",
        f"- status: {report.status_counts}; landmark sources: {report.landmark_sources}",
        f"- QA passed: {report.qa_passed}/{n} ({100 * report.qa_passed / n:.2f}%)",
        "- masked per class: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in report.masked_per_class.items()),
    ]
    if not args.skip_bare:
        lines.append(f"- bare dlib (HOG at threshold 0 on maskgen's 104x104 canvas + 68 points), same rows, "
                     f"{jobs} jobs: {bare_s:.1f} s ({n / bare_s:.0f} rows/s); HOG found a face in "
                     f"{bare_found}/{n} ({100 * bare_found / n:.1f}%)")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    run_script(main)
