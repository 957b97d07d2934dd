"""Audit a FER2013-format file and a split for leakage between train, validation and test.

For one split (:mod:`maskgen.splits`) it reports:

- counts per side x class x masked;
- **twins**: rows of a held-out side whose ``source`` (the FER2013 row an MFER2013 image comes
  from) also occurs on the training side: the same face, masked or unmasked. Files without a
  ``source`` column count each row as its own source (no twins possible);
- **exact duplicates**: rows whose 48x48 pixels are identical to some row on the other side;
- **near duplicates**: rows whose mean absolute difference (MAD, grey levels 0..255, over all
  48*48 pixels) to some row on the other side is at most ``near_threshold`` (includes exact).

Near duplicates are found without comparing all pairs at full resolution. The MAD of two images
is never smaller than the MAD of their 8x8 block-mean thumbnails (6x6 blocks), which in turn
is never smaller than the difference of their global means (the mean of absolute differences
over a block is at least the absolute difference of the block means). So: sort the reference
images by global mean; for each chunk of query images take only references whose mean is
within the threshold; keep the pairs whose thumbnail MAD is within it; verify those at full
resolution with exact integer arithmetic. Every step only discards pairs that cannot match,
so the result equals the brute-force answer.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from maskgen.dataset import EMOTIONS, SIDE, FerTable
from maskgen.splits import DEFAULT_FRACTIONS, SIDES, int_column, make_split

NEAR_MAD = 2.0          # default near-duplicate threshold: mean absolute difference in grey levels
THUMB = 8               # thumbnail side for the candidate step (48 / 8 = 6x6 pixel blocks)
QUERY_CHUNK = 64        # query images per candidate block
REF_CHUNK = 2048        # reference images per candidate block (memory: 64 x 2048 x 64 float32)
LEAK_PAIRS = (("test", "train"), ("val", "train"), ("test", "val"))
_EPS = 1e-3             # float slack in the candidate steps (the final check is exact)


def thumbnails(images: np.ndarray, side: int = THUMB) -> np.ndarray:
    """(N, 48, 48) uint8 -> (N, side*side) float32 block means (row-major)."""
    n, h, w = images.shape
    if h % side or w % side:
        raise ValueError(f"image size {h}x{w} is not divisible by thumbnail side {side}")
    blocks = images.reshape(n, side, h // side, side, w // side).astype(np.float32)
    return blocks.mean(axis=(2, 4)).reshape(n, side * side)


def exact_groups(images: np.ndarray) -> np.ndarray:
    """(N,) int64 group id per image; images with identical pixels share an id."""
    n = images.shape[0]
    flat = np.ascontiguousarray(images.reshape(n, -1))
    keys = flat.view(np.dtype((np.void, flat.shape[1]))).reshape(n)
    _, inverse = np.unique(keys, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def near_pairs(query: np.ndarray, ref: np.ndarray, threshold: float = NEAR_MAD
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i, j) with MAD(query[i], ref[j]) <= threshold (exact; see module docstring).

    Args:
        query: (Nq, 48, 48) uint8; ref: (Nr, 48, 48) uint8; threshold in grey levels.

    Returns:
        (i, j, mad): (K,) int64 query indices, (K,) int64 reference indices, (K,) float64 MADs,
        sorted by (i, j).
    """
    if not threshold >= 0 or not math.isfinite(threshold):  # NaN compares false: refused too
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
    nq, nr = query.shape[0], ref.shape[0]
    out_i: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    out_d: list[np.ndarray] = []
    if nq and nr:
        npix = query.shape[1] * query.shape[2]
        limit_sum = threshold * npix  # MAD <= t  <=>  sum |a - b| <= t * npix
        qt, rt = thumbnails(query), thumbnails(ref)
        qm, rm = qt.mean(axis=1), rt.mean(axis=1)
        r_order = np.argsort(rm, kind="stable")
        rm_sorted = rm[r_order]
        q_order = np.argsort(qm, kind="stable")
        q16 = query.reshape(nq, -1)
        r16 = ref.reshape(nr, -1)
        for a in range(0, nq, QUERY_CHUNK):
            qi = q_order[a:a + QUERY_CHUNK]
            lo = np.searchsorted(rm_sorted, qm[qi].min() - threshold - _EPS, side="left")
            hi = np.searchsorted(rm_sorted, qm[qi].max() + threshold + _EPS, side="right")
            for b in range(lo, hi, REF_CHUNK):
                rj = r_order[b:min(b + REF_CHUNK, hi)]
                close = np.abs(qm[qi][:, None] - rm[rj][None, :]) <= threshold + _EPS
                ii, jj = np.nonzero(close)
                if not ii.size:
                    continue
                tmad = np.abs(qt[qi[ii]] - rt[rj[jj]]).mean(axis=1)
                keep = tmad <= threshold + _EPS
                ii, jj = qi[ii[keep]], rj[jj[keep]]
                if not ii.size:
                    continue
                sums = np.abs(q16[ii].astype(np.int16) - r16[jj].astype(np.int16)).sum(axis=1, dtype=np.int64)
                ok = sums <= limit_sum
                out_i.append(ii[ok])
                out_j.append(jj[ok])
                out_d.append(sums[ok] / npix)
    i = np.concatenate(out_i).astype(np.int64) if out_i else np.zeros(0, np.int64)
    j = np.concatenate(out_j).astype(np.int64) if out_j else np.zeros(0, np.int64)
    d = np.concatenate(out_d).astype(np.float64) if out_d else np.zeros(0, np.float64)
    order = np.lexsort((j, i))
    return i[order], j[order], d[order]


def _share(k: int, n: int) -> float:
    return round(k / n, 6) if n else 0.0


def audit_split(table: FerTable, kind: str = "usage", seed: int = 0, *,
                fractions: Sequence[float] = DEFAULT_FRACTIONS,
                near_threshold: float = NEAR_MAD, groups: np.ndarray | None = None) -> dict[str, Any]:
    """Audit one split of ``table``; returns a JSON-able dict (see :func:`format_audit`).

    Args:
        kind, seed, fractions: passed to :func:`maskgen.splits.make_split`.
        near_threshold: MAD threshold in grey levels for near duplicates.
        groups: precomputed :func:`exact_groups` of ``table.images`` (to reuse across splits).
    """
    n = len(table)
    split = make_split(kind, table, seed, fractions=fractions)
    source = int_column(table, "source")
    has_source = source is not None
    if source is None:
        source = np.arange(n, dtype=np.int64)
    masked = int_column(table, "masked")
    has_masked = masked is not None
    if masked is None:
        masked = np.zeros(n, np.int64)
    if groups is None:
        groups = exact_groups(table.images)

    counts = {
        side: {name: {"unmasked": int(np.sum((table.emotion[idx] == c) & (masked[idx] == 0))),
                      "masked": int(np.sum((table.emotion[idx] == c) & (masked[idx] != 0)))}
               for c, name in enumerate(EMOTIONS)}
        for side, idx in split.items()
    }
    leaks: dict[str, dict[str, Any]] = {}
    for held, ref in LEAK_PAIRS:
        h_idx, r_idx = split[held], split[ref]
        twin = np.isin(source[h_idx], source[r_idx])
        exact = np.isin(groups[h_idx], groups[r_idx])
        qi, _, _ = near_pairs(table.images[h_idx], table.images[r_idx], near_threshold)
        near = np.zeros(h_idx.size, bool)
        near[qi] = True
        any_leak = twin | near
        size = int(h_idx.size)
        leaks[f"{held}_in_{ref}"] = {
            "rows": size,
            "twin": int(twin.sum()), "twin_share": _share(int(twin.sum()), size),
            "exact": int(exact.sum()), "exact_share": _share(int(exact.sum()), size),
            "near": int(near.sum()), "near_share": _share(int(near.sum()), size),
            "near_pairs": int(qi.size),
            "any": int(any_leak.sum()), "any_share": _share(int(any_leak.sum()), size),
        }
    return {
        "file": str(table.path), "rows": n, "split": kind,
        "seed": seed if kind != "usage" else None,
        "fractions": list(fractions) if kind != "usage" else None,
        "has_source": has_source, "has_masked": has_masked,
        "near_threshold_mad": near_threshold,
        "sizes": {side: int(idx.size) for side, idx in split.items()},
        "counts": counts,
        "leaks": leaks,
    }


def duplicate_summary(table: FerTable, groups: np.ndarray | None = None) -> dict[str, int]:
    """Exact duplicates within the whole file (independent of any split).

    Returns: groups (sets of >= 2 identical images), rows in such groups, and groups whose
    rows carry more than one label.
    """
    if groups is None:
        groups = exact_groups(table.images)
    sizes = np.bincount(groups)
    dup = np.flatnonzero(sizes > 1)
    in_dup = np.isin(groups, dup)
    conflicting = 0
    if dup.size:
        g, e = groups[in_dup], table.emotion[in_dup]
        pairs = np.unique(np.stack([g, e], axis=1), axis=0)
        conflicting = int(np.sum(np.bincount(pairs[:, 0]) > 1))
    return {"duplicate_groups": int(dup.size), "rows_in_duplicate_groups": int(in_dup.sum()),
            "groups_with_conflicting_labels": conflicting}


def check_audit_inputs(table: FerTable, near_threshold: float) -> None:
    """Before any work: the threshold is a finite number >= 0 and a ``masked`` column holds only 0 / 1.

    Raises:
        ValueError: naming the option, or the file and the line of the first bad ``masked`` value.
    """
    try:
        t = float(near_threshold)
    except (TypeError, ValueError):
        raise ValueError(f"--near-threshold must be a number, got {near_threshold!r}") from None
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"--near-threshold must be a finite number >= 0 (grey levels), got {near_threshold!r}")
    masked = int_column(table, "masked")
    if masked is not None:
        bad = np.flatnonzero((masked != 0) & (masked != 1))
        if bad.size:
            k = int(bad[0])
            raise ValueError(f"{table.path}, line {k + 2}: column 'masked' must be 0 or 1, got {int(masked[k])} "
                             f"({bad.size} such row(s))")


def audit(table: FerTable, kinds: Sequence[str] = ("usage",), seed: int = 0, *,
          fractions: Sequence[float] = DEFAULT_FRACTIONS, near_threshold: float = NEAR_MAD) -> dict[str, Any]:
    """Audit several splits of one file: {"file", "rows", "duplicates", "splits": {kind: report}}.

    Inputs are checked first (:func:`check_audit_inputs`)."""
    check_audit_inputs(table, near_threshold)
    groups = exact_groups(table.images)
    return {
        "file": str(table.path), "rows": len(table),
        "duplicates": duplicate_summary(table, groups),
        "method": {"near_threshold_mad": near_threshold, "thumbnail": f"{THUMB}x{THUMB} block means of "
                   f"{SIDE // THUMB}x{SIDE // THUMB} pixels", "verified": "full 48x48 MAD, exact integer sums"},
        "splits": {k: audit_split(table, k, seed, fractions=fractions, near_threshold=near_threshold, groups=groups)
                   for k in kinds},
    }


def format_split(report: dict[str, Any]) -> str:
    """Readable table for one :func:`audit_split` report."""
    lines = []
    kind = report["split"]
    desc = kind if kind == "usage" else f"{kind} (seed {report['seed']}, " + \
        "/".join(f"{round(100 * f)}" for f in report["fractions"]) + ")"
    lines.append(f"split: {desc}  " + "  ".join(f"{s} {report['sizes'][s]:,}" for s in SIDES))
    lines.append(("counts, unmasked/masked" if report["has_masked"] else "counts (no masked column)"))
    lines.append(f"  {'':5}" + "".join(f"{e:>12}" for e in EMOTIONS) + f"{'total':>14}")
    for side in SIDES:
        per = report["counts"][side]
        cells = "".join(f"{str(v['unmasked']) + '/' + str(v['masked']):>12}" for v in per.values())
        tot_u = sum(v["unmasked"] for v in per.values())
        tot_m = sum(v["masked"] for v in per.values())
        lines.append(f"  {side:5}{cells}{str(tot_u) + '/' + str(tot_m):>14}")
    t = report["near_threshold_mad"]
    src = "same source" if report["has_source"] else "no source column: none possible"
    lines.append(f"leaks: rows of a held-out side with a match on the other side (twin = {src}; "
                 f"near = MAD <= {t:g}, includes exact)")
    lines.append(f"  {'':14}{'rows':>8}{'twin':>18}{'exact dup':>18}{'near dup':>18}{'any (twin|near)':>20}")
    for name, leak in report["leaks"].items():
        cells = "".join(f"{leak[k]:>8,} ({100 * leak[k + '_share']:5.1f}%)" for k in ("twin", "exact", "near"))
        cells += f"{leak['any']:>10,} ({100 * leak['any_share']:5.1f}%)"
        lines.append(f"  {name:14}{leak['rows']:>8,}{cells}")
    return "\n".join(lines)


def format_audit(result: dict[str, Any]) -> str:
    """Readable text for an :func:`audit` result."""
    d = result["duplicates"]
    lines = [f"{result['file']}: {result['rows']:,} rows; exact duplicates in the whole file: "
             f"{d['duplicate_groups']:,} groups, {d['rows_in_duplicate_groups']:,} rows, "
             f"{d['groups_with_conflicting_labels']:,} groups with conflicting labels"]
    for report in result["splits"].values():
        lines.append("")
        lines.append(format_split(report))
    return "\n".join(lines)
