"""The folder path beside the CSV path, on the same FER2013 images.

Writes the first ``--rows`` rows of a FER2013 CSV as an ImageFolder tree (``split/class/NNNNN.png``,
outside the repository), builds it with ``maskgen build-smfer DIR -o OUT_DIR`` and the same rows
as a CSV with ``maskgen build-smfer CSV``, both with the same ``--jobs``, and reports coverage
(rows masked), QA pass rate, rows / s, whether the masked pixels agree, and where the folder
path's extra time goes (PNG decoding and encoding, measured on the same images). ``--out`` must be a new
or empty folder, or one this script made before (it holds ``.folder_build``): then its trees are remade. Usage::

    python benchmarks/folder_build.py ../shared/data/fer2013.csv.gz --out /tmp/folder_bench --jobs 2
    python benchmarks/folder_build.py ../shared/data/fer2013.csv.gz --out /tmp/folder_bench --rows 3000 --jobs 1
"""

from __future__ import annotations

import argparse
import csv
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from maskgen.cli_errors import at_least, check_output_paths, run_script
from maskgen.dataset import EMOTIONS, read_fer_csv, write_fer_csv
from maskgen.folders import build_folder, path_key
from maskgen.io import atomic_write, write_image
from maskgen.paths import Output
from maskgen.pipeline import BuildConfig, mask_face
from maskgen.smfer import build_smfer

SPLIT_DIR = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
#: the file that says an --out folder was made by this script (its trees may be removed and remade)
MARKER = ".folder_build"
#: the folders this script makes in --out and removes before a new run
TREES = ("fer2013_images", "smfer_images")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("csv")
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=at_least(1), default=None, help="first N rows only (default: all)")
    p.add_argument("--jobs", type=at_least(1), default=2)
    args = p.parse_args()
    out = Path(args.out)
    # before any work: the input is not in --out, and --out holds nothing but what this script made
    check_output_paths([("input", args.csv)], [Output("--out", out, folder=True)])
    table = read_fer_csv(args.csv)
    if len(table) == 0 or table.usage is None:
        raise ValueError(f"{args.csv}: no rows, or no Usage column")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ValueError(f"--out {out}: a folder that is not empty and was not made by this script "
                         f"(no {MARKER}): remove it or choose another folder")
    for name in TREES:  # ours (the marker says so): remade from scratch
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / MARKER) as tmp:
        tmp.write_text("made by benchmarks/folder_build.py; its folders here are removed and remade on each run\n")
    n = len(table) if args.rows is None else min(args.rows, len(table))
    images, labels, usage = table.images[:n], table.emotion[:n], table.usage[:n]
    tree = out / "fer2013_images"
    t = time.perf_counter()
    rels = []
    for i in range(n):
        rel = f"{SPLIT_DIR.get(usage[i], 'other')}/{EMOTIONS[labels[i]]}/{i:05d}.png"
        write_image(tree / rel, images[i])
        rels.append(rel)
    t_write = time.perf_counter() - t
    sub = out / "fer2013_subset.csv"
    from dataclasses import replace

    write_fer_csv(sub, replace(table, images=images, emotion=labels, usage=usage, lines=table.lines[:n],
                               extra={k: v[:n] for k, v in table.extra.items()}))
    csv_report = build_smfer(sub, out / "smfer.csv", jobs=args.jobs, progress=False)
    folder_report = build_folder(tree, out / "smfer_images", jobs=args.jobs, progress=False)
    # decode / encode cost on the same images, one process
    t = time.perf_counter()
    decoded = [cv2.imread(str(tree / rel), cv2.IMREAD_UNCHANGED) for rel in rels]
    t_decode = time.perf_counter() - t
    t = time.perf_counter()
    for img in decoded:
        cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    t_encode = time.perf_counter() - t
    # the folder path masks each picture with its path's key, the CSV path with its row number:
    # same chain, other random draws. Compare coverage and QA, and pixels for one fixed key.
    with open(out / "smfer_images" / "smfer.meta.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    masked = sum(r["status"].startswith("masked") for r in rows)
    qa = sum(r["qa_passed"] == "1" for r in rows)
    csv_masked = sum(v for k, v in csv_report.status_counts.items() if k.startswith("masked"))
    same = sum(np.array_equal(cv2.imread(str(out / "smfer_images" / rel), cv2.IMREAD_UNCHANGED),
                              mask_face(images[i], path_key(rel), BuildConfig()).image) for i, rel in enumerate(rels[:200]))
    t_csv = csv_report.timings_s["total"]
    t_folder = folder_report.timings_s["total"]
    print(f"{n} rows, --jobs {args.jobs}\n")
    print("| path | rows masked | QA passed | wall s | rows / s |")
    print("|---|--:|--:|--:|--:|")
    print(f"| CSV | {csv_masked} ({csv_masked / n:.2%}) | {csv_report.qa_passed} ({csv_report.qa_passed / n:.2%}) | "
          f"{t_csv:.1f} | {n / t_csv:.0f} |")
    print(f"| folder | {masked} ({masked / n:.2%}) | {qa} ({qa / n:.2%}) | {t_folder:.1f} | {n / t_folder:.0f} |")
    print(f"\nwriting the tree: {t_write:.1f} s; PNG decode of all rows {t_decode:.2f} s, encode {t_encode:.2f} s "
          f"(one process); folder output equal to mask_face on the path's key: {same} / 200")


if __name__ == "__main__":
    run_script(main)
