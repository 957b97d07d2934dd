"""Where build-smfer's time goes: the measurements behind the design choices in docs/results.md.

    flock /tmp/maskgen-cpu.lock python benchmarks/smfer_parts.py ../shared/data/fer2013.csv.gz order
    flock /tmp/maskgen-cpu.lock python benchmarks/smfer_parts.py ../shared/data/fer2013.csv.gz backends
    flock /tmp/maskgen-cpu.lock python benchmarks/smfer_parts.py ../shared/data/fer2013.csv.gz prestart

- ``order``: ms per row of ``mask_chunk`` on 1-row chunks (landmarks, draw, next row) against
  256-row chunks (all landmarks of the chunk first, then all drawing), alternated ``--repeats``
  times on the same random rows in one process; checks that both give the same output.
- ``backends``: ms per row of ``mask_chunk`` over the same rows in one process, in 2 threads and
  in 2 loky processes.
- ``prestart``: seconds to read and validate the CSV alone, and while 2 loky workers start and
  load their models in a background thread (the idea of overlapping the two).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

from maskgen import landmarks as lm
from maskgen.cli_errors import at_least, run_script
from maskgen.dataset import read_fer_csv
from maskgen.parallel import chunk_ranges, gather_rows, map_chunks
from maskgen.pipeline import BuildConfig, mask_chunk, resolve_masks


def order(path: Path, rows: int, repeats: int, seed: int) -> None:
    table = read_fer_csv(path)
    config = resolve_masks(BuildConfig(seed=seed))
    idx = np.sort(np.random.default_rng(seed).choice(len(table), rows, replace=False))
    images = table.images[idx]
    det = lm.get_detector()
    det.prior, det.hog, det.predictor, det.cnn  # noqa: B018 - load before timing
    # mask_chunk on 1-row chunks is the interleaved order: landmarks, draw, next row
    variants = {"row by row": 1, "mask_chunk (landmarks first)": 256}

    def run(chunk: int, n: int) -> tuple[np.ndarray, list[dict]]:
        parts = [mask_chunk(images[a:b], idx[a:b], config) for a, b in chunk_ranges(n, chunk)]
        return np.concatenate([p[1] for p in parts]), [r for p in parts for r in p[2]]

    for chunk in variants.values():  # warm caches (templates, pyramids)
        run(chunk, min(100, rows))
    times: dict[str, list[float]] = {k: [] for k in variants}
    outputs = {}
    for _ in range(repeats):
        for name, chunk in variants.items():
            t0 = time.perf_counter()
            outputs[name] = run(chunk, rows)
            times[name].append((time.perf_counter() - t0) / rows * 1000)
    first, second = outputs.values()
    same = np.array_equal(first[0], second[0]) and first[1] == second[1]
    print(f"{rows} random rows (seed {seed}), {repeats} alternations, ms per row:")
    for name, t in times.items():
        print(f"- {name}: median {statistics.median(t):.2f} (runs {', '.join(f'{v:.2f}' for v in t)})")
    print(f"- identical output: {same}")


def backends(path: Path, rows: int, start: int) -> None:
    table = read_fer_csv(path)
    config = resolve_masks(BuildConfig())
    images = table.images[start:start + rows]
    tasks = [(images[a:b], np.arange(a, b), config) for a, b in chunk_ranges(len(images), 256)]
    print(f"rows {start}..{start + len(images) - 1}, ms per row:")
    for backend, jobs in (("sequential", 1), ("threading", 2), ("loky", 2)):
        t0 = time.perf_counter()
        gather_rows(len(images), map_chunks(mask_chunk, tasks, jobs=jobs, backend=backend), images.shape[1:])
        print(f"- {backend}, {jobs} job(s): {(time.perf_counter() - t0) / len(images) * 1000:.2f}", flush=True)


def _load_models() -> None:
    det = lm.get_detector()
    det.prior, det.hog, det.predictor  # noqa: B018


def _prestart_once(path: Path, warm: bool) -> float:
    """Seconds to read + validate ``path`` (while 2 loky workers start and load models, if ``warm``)."""
    from joblib import Parallel, delayed

    thread = None
    if warm:
        thread = threading.Thread(
            target=lambda: Parallel(n_jobs=2, backend="loky")(delayed(_load_models)() for _ in range(2)))
    t0 = time.perf_counter()
    if thread is not None:
        thread.start()
    read_fer_csv(path)
    t_read = time.perf_counter() - t0
    if thread is not None:
        thread.join()
    return t_read


def prestart(path: Path, repeats: int) -> None:
    import subprocess

    print("read + validate, each in a fresh process, s:")
    for _ in range(repeats):
        for warm in ("cold", "warm"):
            out = subprocess.run([sys.executable, __file__, str(path), "prestart", "--one", warm],
                                 check=True, capture_output=True, text=True).stdout.strip()
            label = "while 2 workers start and load models" if warm == "warm" else "alone"
            print(f"- {label}: {float(out):.2f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", type=Path)
    ap.add_argument("what", choices=("order", "backends", "prestart"))
    ap.add_argument("--rows", type=at_least(1), default=2500)
    ap.add_argument("--repeats", type=at_least(1), default=5)
    ap.add_argument("--start", type=at_least(0), default=10000, help="first row for `backends`")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--one", choices=("cold", "warm"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(_prestart_once(args.csv, args.one == "warm"))
        return 0
    if args.what == "order":
        order(args.csv, args.rows, args.repeats, args.seed)
    elif args.what == "backends":
        backends(args.csv, args.rows, args.start)
    else:
        prestart(args.csv, args.repeats)
    return 0


if __name__ == "__main__":
    run_script(main)
