"""Is a build byte-identical across CPUs? The same rows built under different SIMD paths.

numpy and OpenCV pick SIMD kernels at run time (AVX512, AVX2, SSE); a few float operations
(resizes, blurs, remaps, transcendental functions) may round differently between them, so
a seed may not give the same bytes on another CPU. This runs ``maskgen build-smfer`` on the
first ``--rows`` rows of a CSV once natively and once with each narrower SIMD path forced
(``NPY_DISABLE_CPU_FEATURES`` for numpy, ``OPENCV_CPU_DISABLE`` for OpenCV; dlib's wheel is
compiled for one fixed instruction set and has no switch), then reports how many rows and
pixels differ from the native build, by how much, and whether the sidecars (mask, fit,
landmark source, QA) agree. Usage::

    python benchmarks/determinism.py ../shared/data/fer2013.csv.gz --rows 3000 --out /tmp/determinism
    # --modes avx2 sse ... to run some; --reuse keeps builds already there
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from maskgen.cli_errors import at_least, check_output_paths, run_script
from maskgen.dataset import read_fer_csv
from maskgen.io import atomic_write, file_sha256
from maskgen.paths import Output

#: name -> (what it emulates, extra environment)
MODES = {
    "native": ("this CPU's widest paths", {}),
    "avx2": ("an AVX2-only CPU (numpy and OpenCV without AVX512)",
             {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL", "OPENCV_CPU_DISABLE": "AVX512-SKX,AVX512F"}),
    "sse": ("an SSE4.2-only CPU (numpy baseline, OpenCV without AVX)",
            {"NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL",
             "OPENCV_CPU_DISABLE": "AVX512-SKX,AVX512F,AVX2,FMA3,FP16,AVX"}),
    # one library at a time, to say where a difference comes from
    "avx2_numpy": ("numpy without AVX512 only", {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL"}),
    "avx2_opencv": ("OpenCV without AVX512 only", {"OPENCV_CPU_DISABLE": "AVX512-SKX,AVX512F"}),
    "sse_numpy": ("numpy at its SSE4.2 baseline only", {"NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL"}),
    "sse_opencv": ("OpenCV without AVX only", {"OPENCV_CPU_DISABLE": "AVX512-SKX,AVX512F,AVX2,FMA3,FP16,AVX"}),
}
SIDECAR_FIELDS = ("status", "mask", "fit", "landmark_source", "qa_passed")


def head(src: Path, rows: int, dst: Path) -> Path:
    """The header and first ``rows`` rows of ``src`` as ``dst`` (written atomically)."""
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rt", newline="") as f, atomic_write(dst) as tmp, open(tmp, "w", newline="") as out:
        out.writelines(itertools.islice(f, rows + 1))
    return dst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("csv")
    p.add_argument("--rows", type=at_least(1), default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--reuse", action="store_true", help="keep builds already in --out (same rows and seed)")
    args = p.parse_args()
    out = Path(args.out)
    if not Path(args.csv).is_file():
        raise ValueError(f"{args.csv}: no such file")
    # before any work: the input is not in --out (its head is written there as input.csv)
    check_output_paths([("input", args.csv)], [Output("--out", out, folder=True)])
    out.mkdir(parents=True, exist_ok=True)
    src = head(Path(args.csv), args.rows, out / "input.csv")
    built = {}
    for mode in dict.fromkeys(["native", *args.modes]):
        target = out / mode / "smfer.csv"
        if target.is_file() and args.reuse:
            built[mode] = target
            continue
        env = {**os.environ, **MODES[mode][1]}
        done = subprocess.run([sys.executable, "-m", "maskgen", "build-smfer", str(src), "-o", str(target), "-j", "1",
                               "--seed", str(args.seed), "--quiet"], env=env, stdout=subprocess.DEVNULL)
        if done.returncode:  # maskgen said why on stderr
            raise ValueError(f"maskgen build-smfer ({mode}) failed with exit status {done.returncode}")
        built[mode] = target
    ref = read_fer_csv(built["native"]).images.astype(np.int16)
    ref_meta = (built["native"].with_name("smfer.meta.csv")).read_text().splitlines()
    print(f"{args.rows} rows, seed {args.seed}; sha256 of each output (first 16 hex digits)\n")
    print("| SIMD path | emulates | sha256 | rows differing | pixels differing | max abs diff | sidecar rows differing |")
    print("|---|---|---|--:|--:|--:|--:|")
    for mode, path in built.items():
        img = read_fer_csv(path).images.astype(np.int16)
        diff = np.abs(img - ref)
        rows = int((diff.reshape(len(diff), -1).max(1) > 0).sum())
        meta = path.with_name("smfer.meta.csv").read_text().splitlines()
        header = ref_meta[0].split(",")
        idx = [header.index(f) for f in SIDECAR_FIELDS]
        meta_rows = sum(1 for a, b in zip(ref_meta[1:], meta[1:])
                        if [a.split(",")[i] for i in idx] != [b.split(",")[i] for i in idx])
        print(f"| {mode} | {MODES[mode][0]} | `{file_sha256(path)[:16]}` | {rows} | {int((diff > 0).sum())} | "
              f"{int(diff.max())} | {meta_rows} |")


if __name__ == "__main__":
    run_script(main)
