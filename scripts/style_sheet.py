#!/usr/bin/env python
"""Contact sheet of the mask styles: one face per row, the original then one column per style.

Each cell is the row masked exactly as ``maskgen build-smfer --seed SEED --styles STYLE`` masks it
(:func:`maskgen.pipeline.mask_face` with that one style), so the same face shows every style with the
same mask choice where the style keeps the build's mask pool::

    python scripts/style_sheet.py ../shared/data/fer2013.csv.gz -n 8 --seed 0 -o docs/mask_styles.png
    python scripts/style_sheet.py -n 8 -o styles.png          # no CSV: scikit-image's LFW faces

Rows of a CSV are chosen with ``default_rng(seed)`` (as ``maskgen preview``); landmarks are found once
per row (the dlib chain) and shared by every style.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from maskgen.cli_errors import at_least, check_output_paths, run_script, warn
from maskgen.io import IMAGE_SUFFIXES, write_image
from maskgen.landmarks import get_detector
from maskgen.paths import Output
from maskgen.pipeline import ERROR, KEPT, BuildConfig, mask_face
from maskgen.styles import check_styles, list_styles

#: cell upscaling, header height (pixels) and label font scale
SCALE = 3
HEADER = 22
FONT = 0.42


def faces(csv: Path | None, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(row ids (n,), images (n, 48, 48) uint8) from ``csv`` (random rows) or scikit-image's LFW faces."""
    if csv is None:
        from maskgen.demo import demo_table

        table = demo_table(n)
        return np.arange(len(table.images)), table.images
    from maskgen.dataset import read_fer_csv

    table = read_fer_csv(csv)
    if len(table) == 0:
        raise ValueError(f"{csv}: no rows")
    rows = np.sort(np.random.default_rng(seed).choice(len(table), size=min(n, len(table)), replace=False))
    return rows, table.images[rows]


def style_sheet(row_ids: np.ndarray, images: np.ndarray, styles: list[str], seed: int, diff: int = 0) -> np.ndarray:
    """(H, W) uint8 sheet: per row the original then the row masked in each style, names on top;
    ``diff`` > 0 adds a last column: the absolute difference of the first two styles, times ``diff``.
    A face a style could not mask is shown unmasked in that cell, with a warning naming the row and style."""
    detector = get_detector()
    cell = images.shape[1] * SCALE
    cols = ["original", *styles] + ([f"|{styles[0]} - {styles[1]}| x{diff}"] if diff else [])
    sheet = np.full((HEADER + cell * len(images), cell * len(cols)), 255, np.uint8)
    for c, name in enumerate(cols):
        cv2.putText(sheet, name, (c * cell + 3, HEADER - 7), cv2.FONT_HERSHEY_SIMPLEX, FONT, 0, 1, cv2.LINE_AA)
    for r, (row_id, image) in enumerate(zip(row_ids, images)):
        marks = detector.for_crop(image, key=int(row_id))
        cells = [image]
        for style in styles:
            result = mask_face(image, int(row_id), BuildConfig(seed=seed, styles=(style,)), marks=marks)
            if result.status in (ERROR, KEPT):
                why = result.error or "landmarks not plausible"
                warn(f"row {int(row_id)}, style {style}: no mask drawn ({why}); the cell shows the face unmasked")
            cells.append(result.image)
        if diff:
            cells.append(np.clip(np.abs(cells[1].astype(int) - cells[2]) * diff, 0, 255).astype(np.uint8))
        for c, picture in enumerate(cells):
            big = cv2.resize(picture, (cell, cell), interpolation=cv2.INTER_NEAREST)
            sheet[HEADER + r * cell:HEADER + (r + 1) * cell, c * cell:(c + 1) * cell] = big
    return sheet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="?", type=Path, help="FER2013-format CSV (default: scikit-image's LFW faces)")
    ap.add_argument("-n", "--rows", type=at_least(1), default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--styles", default=",".join(list_styles()), help="comma-separated [default: every style]")
    ap.add_argument("--diff", type=int, default=0, metavar="K",
                    help="add a column: |first style - second style| x K (e.g. --styles classic,unlit --diff 4)")
    ap.add_argument("-o", "--output", type=Path, default=Path("mask_styles.png"))
    args = ap.parse_args()
    styles = list(dict.fromkeys(s.strip() for s in args.styles.split(",") if s.strip()))
    try:
        check_styles(styles)  # refuses an empty list and unknown names
    except ValueError as exc:
        raise ValueError(f"--styles {args.styles!r}: {exc}") from None
    if args.diff < 0 or (args.diff and len(styles) < 2):
        ap.error("--diff needs K >= 1 and at least two --styles")
    if args.output.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"-o {args.output}: not an image name (one of {', '.join(IMAGE_SUFFIXES)})")
    check_output_paths([("input CSV", args.csv)], [Output("-o", args.output)])
    row_ids, images = faces(args.csv, args.rows, args.seed)
    write_image(args.output, style_sheet(row_ids, images, styles, args.seed, args.diff))
    print(f"wrote {args.output} ({len(images)} faces x {len(styles)} styles)")


if __name__ == "__main__":
    run_script(main)
