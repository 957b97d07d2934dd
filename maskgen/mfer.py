"""Build MFER2013: FER2013 faces and their SMFER2013 masked copies in one class-balanced file.

Output: a FER2013-format CSV with columns ``emotion,pixels[,Usage],source,masked``:

- ``source``: the 0-based FER2013 row index the image comes from (a face and its masked copy
  share it, so splits can keep them together: see :mod:`maskgen.splits`);
- ``masked``: 1 for the SMFER2013 image, 0 for the original;
- ``Usage`` is the source row's, so the standard split stays leakage-free by construction.

Rows are ordered by (source, masked). Balancing (recorded in ``<out>.manifest.json``):

``balance`` (masked vs unmasked, the paper's "balance the class distributions of both masked and
unmasked samples"):

- ``"pairs"`` (default): a source is used only if SMFER2013 actually changed its image (a row the
  masking pipeline kept unmasked would be an unmasked image labelled masked), and then both its
  unmasked and masked image are written. So in every class and every Usage the numbers of
  masked and unmasked rows are exactly equal, and the class distribution of the masked rows is
  exactly that of the unmasked rows.
- ``"none"``: every FER2013 row unmasked, plus the masked copy of every row SMFER2013 changed.

``classes`` (across emotions, applied to sources, within each Usage separately so the splits keep
their sizes' proportions; the random choice uses ``numpy.random.default_rng([seed, usage, class])``):

- ``"none"`` (default): keep FER2013's class imbalance;
- ``"undersample"``: in each Usage, every class keeps a random subset of its sources as large as
  the smallest class of that Usage (with ``pairs``: equal row counts for all class x masked cells);
- ``"oversample"``: in each Usage, every class is filled up to the largest class by repeating
  randomly chosen sources (each kept once, extra copies drawn with replacement). Repeated rows
  are exact duplicates with the same ``source``; use the ``grouped`` or ``usage`` split.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from maskgen.dataset import EMOTIONS, USAGES, FerTable, format_pixels, read_fer_csv, write_lines
from maskgen.io import atomic_write, build_fields, csv_stem, file_sha256, manifest, manifest_path, write_json
from maskgen.paths import Output, check_outputs

BALANCE_MODES = ("pairs", "none")
CLASS_MODES = ("none", "undersample", "oversample")
MFER_COLUMNS = ("source", "masked")
NO_USAGE = "(all)"


def default_output(fer_path: str | Path) -> Path:
    """``fer2013.csv[.gz]`` -> ``mfer2013.csv`` next to it; ``x.csv`` -> ``x_mfer.csv``."""
    path = Path(fer_path)
    stem = csv_stem(path)
    name = stem.replace("fer2013", "mfer2013") if "fer2013" in stem else f"{stem}_mfer"
    return path.with_name(f"{name}.csv")


def check_inputs(fer: FerTable, smfer: FerTable) -> None:
    """Raise ValueError unless ``smfer`` is a masked copy of ``fer`` row by row.

    Same row count, same label per row, same ``Usage`` per row (or both without one), and
    ``fer`` is not already an MFER file.
    """
    for table in (fer, smfer):
        present = [c for c in MFER_COLUMNS if c in table.extra]
        if present:
            raise ValueError(f"{table.path} already has column(s) {', '.join(present)}: expected a "
                             f"FER2013 / SMFER2013 file, not an MFER2013 file")
    if len(fer) != len(smfer):
        raise ValueError(f"row counts differ: {fer.path} has {len(fer)} rows, {smfer.path} has {len(smfer)}; "
                         f"SMFER2013 must be built from this FER2013 file")
    bad = np.flatnonzero(fer.emotion != smfer.emotion)
    if bad.size:
        k = int(bad[0])
        raise ValueError(f"labels differ in {bad.size} row(s); first at line {k + 2}: {fer.path} has "
                         f"{fer.emotion[k]}, {smfer.path} has {smfer.emotion[k]}")
    if (fer.usage is None) != (smfer.usage is None):
        has, lacks = (fer, smfer) if smfer.usage is None else (smfer, fer)
        raise ValueError(f"{has.path} has a Usage column but {lacks.path} does not")
    if fer.usage is not None:
        bad = np.flatnonzero(fer.usage != smfer.usage)
        if bad.size:
            k = int(bad[0])
            raise ValueError(f"Usage differs in {bad.size} row(s); first at line {k + 2}: {fer.path} has "
                             f"{fer.usage[k]}, {smfer.path} has {smfer.usage[k]}")


#: the pixel test of the two files' roles reports a swap only when its sign test is this unlikely by chance, and
#: only with at least MIN_CHANGED_ROWS rows that differ (a manifest beside either file decides first)
SWAP_P_VALUE = 1e-3
MIN_CHANGED_ROWS = 10
#: gray levels by which a pixel must differ between the two files to count as part of a drawn mask
MASK_DIFF = 8


def _smfer_manifest(path: Path, sha256: str) -> dict | None:
    """The ``build-smfer`` manifest beside ``path``, if there is one and it records these bytes as its output."""
    try:
        found = json.loads(manifest_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (not isinstance(found, dict) or not str(found.get("tool", "")).startswith("maskgen build-smfer")
            or found.get("output_sha256") != sha256):
        return None
    return found


def _shift_stack(m: np.ndarray, op) -> np.ndarray:
    """3x3 grey dilation (op=np.maximum) or erosion (np.minimum) of an (N, H, W) stack, edges replicated."""
    p = np.pad(m, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = m.shape[1:]
    out = m.copy()
    for dy in range(3):
        for dx in range(3):
            out = op(out, p[:, dy:dy + h, dx:dx + w])
    return out


def mask_evidence(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per changed row, + when ``b`` looks like the masked one, - when ``a`` does ((N, H, W) uint8 each).

    A drawn mask makes a sharp outline where it ends (the gradient along the rim of the changed
    region is stronger in the masked image) and a smoother inside (a weaker Laplacian): the
    evidence is log(rim gradient b / a) + log(inside Laplacian a / b). Rows with fewer than 20
    changed pixels give no evidence and are left out.
    """
    changed = np.abs(a.astype(np.int16) - b.astype(np.int16)) > MASK_DIFF
    keep = changed.reshape(len(a), -1).sum(axis=1) >= 20
    if not keep.any():
        return np.zeros(0)
    changed, fa, fb = changed[keep].astype(np.uint8), a[keep].astype(np.float32), b[keep].astype(np.float32)
    inner = _shift_stack(changed, np.minimum).astype(bool)
    rim = _shift_stack(changed, np.maximum).astype(bool) & ~inner
    rim[:, [0, -1], :] = False
    rim[:, :, [0, -1]] = False

    def grad(f: np.ndarray) -> np.ndarray:
        gy, gx = np.gradient(f, axis=(1, 2))
        return np.hypot(gx, gy)

    def lap(f: np.ndarray) -> np.ndarray:
        p = np.pad(f, ((0, 0), (1, 1), (1, 1)), mode="edge")
        return np.abs(p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:] - 4 * f)

    def mean_on(v: np.ndarray, m: np.ndarray) -> np.ndarray:
        return (v * m).sum(axis=(1, 2)) / np.maximum(m.sum(axis=(1, 2)), 1)

    edge = np.log((mean_on(grad(fb), rim) + 1) / (mean_on(grad(fa), rim) + 1))
    smooth = np.log((mean_on(lap(fa), inner) + 1) / (mean_on(lap(fb), inner) + 1))
    return edge + np.where(inner.sum(axis=(1, 2)) >= 5, smooth, 0.0)


def _sign_test(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2): how likely k or fewer of n rows point one way by chance."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n


def check_roles(fer: FerTable, smfer: FerTable, fer_sha256: str, smfer_sha256: str) -> None:
    """Raise ValueError unless ``fer`` is the original and ``smfer`` its masked copy (run after :func:`check_inputs`).

    Refused: the same file or the same bytes twice; no row differs (nothing was masked); the
    two swapped, told by a ``build-smfer`` manifest beside either file (it records its output's
    sha256 and its input's), or, when neither has one, by the pixels (:func:`mask_evidence`: in
    most changed rows the first file is the one that looks masked, by a sign test at
    :data:`SWAP_P_VALUE`).
    """
    a, b = Path(fer.path), Path(smfer.path)
    swap = f"; swap them: maskgen build-mfer {b} {a}"
    if fer_sha256 == smfer_sha256:
        raise ValueError(f"{a} and {b} have the same bytes: SMFER must be the build-smfer output of FER")
    fer_built, smfer_built = _smfer_manifest(a, fer_sha256), _smfer_manifest(b, smfer_sha256)
    if fer_built is not None and smfer_built is None:
        origin = " built from " + str(b) if fer_built.get("input_sha256") == smfer_sha256 else ""
        raise ValueError(f"FER and SMFER are swapped: {a} is a masked build-smfer output{origin} "
                         f"(its manifest {manifest_path(a)} says so){swap}")
    changed = (fer.images != smfer.images).reshape(len(fer), -1).any(axis=1)
    if not changed.any():
        raise ValueError(f"{b} has the same images as {a} in every row: SMFER must be the build-smfer output of FER")
    if smfer_built is not None:
        return
    evidence = mask_evidence(fer.images, smfer.images)
    n, towards_smfer = int(np.count_nonzero(evidence)), int(np.sum(evidence > 0))
    if n >= MIN_CHANGED_ROWS and _sign_test(towards_smfer, n) < SWAP_P_VALUE:
        raise ValueError(f"FER and SMFER look swapped: in {n - towards_smfer} of the {n} rows that differ, the "
                         f"masked face is the one in {a} (no build-smfer manifest beside either file){swap}")


def select_rows(emotion: np.ndarray, usage: np.ndarray | None, masked_ok: np.ndarray, *, seed: int = 0,
                balance: str = "pairs", classes: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """Choose the MFER2013 rows.

    Args:
        emotion: (N,) int labels of the FER2013 rows.
        usage: (N,) str Usage per row, or None.
        masked_ok: (N,) bool, whether SMFER2013 changed row i (a usable masked copy exists).
        seed, balance, classes: see the module docstring.

    Returns:
        (source, masked): (M,) int64 FER2013 row index and (M,) int64 0/1, ordered by
        (source, masked); with "oversample" a (source, masked) pair may repeat.
    """
    if balance not in BALANCE_MODES:
        raise ValueError(f"unknown balance {balance!r}; expected one of {', '.join(BALANCE_MODES)}")
    if classes not in CLASS_MODES:
        raise ValueError(f"unknown class balancing {classes!r}; expected one of {', '.join(CLASS_MODES)}")
    emotion = np.asarray(emotion, np.int64)
    masked_ok = np.asarray(masked_ok, bool)
    n = emotion.size
    usable = masked_ok if balance == "pairs" else np.ones(n, bool)
    units = np.flatnonzero(usable)  # sources; each contributes its rows below
    if classes != "none":
        groups = np.zeros(n, np.int64) if usage is None else np.array(
            [USAGES.index(u) if u in USAGES else len(USAGES) for u in usage], np.int64)
        chosen: list[np.ndarray] = []
        for g in np.unique(groups[units]):
            in_group = units[groups[units] == g]
            per_class = [in_group[emotion[in_group] == c] for c in range(len(EMOTIONS))]
            sizes = [p.size for p in per_class if p.size]
            target = min(sizes) if classes == "undersample" else max(sizes)
            for c, members in enumerate(per_class):
                if not members.size:
                    continue
                rng = np.random.default_rng([seed, int(g), c])
                if classes == "undersample":
                    chosen.append(rng.choice(members, size=target, replace=False))
                else:
                    chosen.append(members)
                    chosen.append(rng.choice(members, size=target - members.size, replace=True))
        units = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
    # every unit gives its unmasked row, and its masked row when one exists
    with_mask = masked_ok[units]
    source = np.concatenate([units, units[with_mask]])
    masked = np.concatenate([np.zeros(units.size, np.int64), np.ones(int(with_mask.sum()), np.int64)])
    order = np.lexsort((masked, source))
    return source[order].astype(np.int64), masked[order]


@dataclass
class MferReport:
    """What a build did; also the core of the manifest."""

    fer: str
    smfer: str
    output: str
    manifest: str
    seed: int
    balance: str
    classes: str
    rows: int
    sources: int
    smfer_unchanged_rows: int
    counts: dict[str, dict[str, dict[str, int]]]  # usage -> emotion -> {"unmasked", "masked"}
    timings_s: dict[str, float]


def _counts(emotion: np.ndarray, usage: np.ndarray | None, masked: np.ndarray) -> dict[str, dict[str, dict[str, int]]]:
    usages = list(USAGES) if usage is not None else [NO_USAGE]
    out: dict[str, dict[str, dict[str, int]]] = {}
    for u in usages:
        in_u = np.ones(emotion.size, bool) if usage is None else usage == u
        out[u] = {
            name: {"unmasked": int(np.sum(in_u & (emotion == c) & (masked == 0))),
                   "masked": int(np.sum(in_u & (emotion == c) & (masked == 1)))}
            for c, name in enumerate(EMOTIONS)
        }
    return out


def _companions(path: Path) -> list[tuple[str, Path]]:
    """(kind, path) of the files that travel with a CSV build beside ``path``: its sidecar and manifest (the default
    names, and the sidecar its manifest names), those that exist."""
    found = [("sidecar", path.with_name(f"{csv_stem(path)}.meta.csv")), ("manifest", manifest_path(path))]
    try:
        recorded = json.loads(manifest_path(path).read_text(encoding="utf-8")).get("metadata")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if isinstance(recorded, str) and recorded:
        found.append(("sidecar", Path(recorded)))
    return [(kind, p) for kind, p in found if p.is_file()]


def check_mfer_outputs(fer_path: Path, smfer_path: Path, out: Path) -> None:
    """Before any work: the output CSV and its manifest are neither input, nor the sidecar or manifest of either
    (``-o smfer2013.meta.csv``; ``-o x/smfer2013.csv.gz`` whose manifest is SMFER's), nor a symlink or special file
    (:func:`maskgen.paths.check_outputs`). Raises :class:`maskgen.paths.PathError` naming both paths."""
    inputs: list[tuple[str, Path]] = [("FER", fer_path), ("SMFER", smfer_path)]
    for role, path in list(inputs):
        inputs += [(f"{role} {kind}", c) for kind, c in _companions(path)]
    check_outputs([(role, p) for role, p in inputs if p.exists()], [Output("-o", out), Output("manifest", manifest_path(out))])


def build_mfer(fer_path: str | Path, smfer_path: str | Path, output_path: str | Path | None = None, *,
               seed: int = 0, balance: str = "pairs", classes: str = "none") -> MferReport:
    """Mix FER2013 and SMFER2013 into MFER2013 (see the module docstring) and write it atomically.

    Both inputs are read and validated completely, then checked against each other
    (:func:`check_inputs`), before anything is written. Writes the CSV and
    ``<out>.manifest.json``; output bytes depend only on the inputs, ``seed``, ``balance``
    and ``classes``.
    """
    t0 = time.perf_counter()
    fer_path, smfer_path = Path(fer_path), Path(smfer_path)
    out = Path(output_path) if output_path is not None else default_output(fer_path)
    check_mfer_outputs(fer_path, smfer_path, out)
    if balance not in BALANCE_MODES:
        raise ValueError(f"unknown balance {balance!r}; expected one of {', '.join(BALANCE_MODES)}")
    if classes not in CLASS_MODES:
        raise ValueError(f"unknown class balancing {classes!r}; expected one of {', '.join(CLASS_MODES)}")
    if fer_path.exists() and smfer_path.exists() and os.path.samefile(fer_path, smfer_path):
        raise ValueError(f"FER and SMFER are the same file ({fer_path}): SMFER must be the build-smfer output of FER")
    fer = read_fer_csv(fer_path)
    smfer = read_fer_csv(smfer_path)
    check_inputs(fer, smfer)
    fer_sha, smfer_sha = file_sha256(fer_path), file_sha256(smfer_path)
    check_roles(fer, smfer, fer_sha, smfer_sha)
    t_read = time.perf_counter()

    n = len(fer)
    masked_ok = (fer.images != smfer.images).reshape(n, -1).any(axis=1)
    source, masked = select_rows(fer.emotion, fer.usage, masked_ok, seed=seed, balance=balance, classes=classes)
    header = ["emotion", "pixels"] + (["Usage"] if fer.usage is not None else []) + list(MFER_COLUMNS)
    lines = []
    for s, m in zip(source.tolist(), masked.tolist()):
        fields = [str(int(fer.emotion[s])), format_pixels((smfer if m else fer).images[s])]
        if fer.usage is not None:
            fields.append(str(fer.usage[s]))
        fields += [str(s), str(m)]
        lines.append(",".join(fields))
    t_format = time.perf_counter()

    usage_rows = fer.usage[source] if fer.usage is not None else None
    mpath = manifest_path(out)
    report = MferReport(
        fer=str(fer_path), smfer=str(smfer_path), output=str(out), manifest=str(mpath), seed=seed,
        balance=balance, classes=classes, rows=int(source.size), sources=int(np.unique(source).size),
        smfer_unchanged_rows=int((~masked_ok).sum()),
        counts=_counts(fer.emotion[source], usage_rows, masked), timings_s={},
    )
    with atomic_write(mpath) as tmp_manifest:
        write_lines(out, header, lines, newline="\n", trailing_newline=True)
        t_write = time.perf_counter()
        report.timings_s = {"read": round(t_read - t0, 3), "format": round(t_format - t_read, 3),
                            "write": round(t_write - t_format, 3), "total": round(t_write - t0, 3)}
        fields = {
            "columns": header,
            "row_order": "by (source, masked)",
            "balance_rule": _RULES[balance],
            "classes_rule": _RULES[classes if classes != "none" else "classes_none"],
            "fer_sha256": fer_sha,
            "smfer_sha256": smfer_sha,
            **build_fields("maskgen build-mfer", {"seed": seed, "balance": balance, "classes": classes},
                           {"fer": (fer_path, fer_sha), "smfer": (smfer_path, smfer_sha)}, out),
            "smfer_unchanged_per_class": {name: int(np.sum(~masked_ok & (fer.emotion == c)))
                                          for c, name in enumerate(EMOTIONS)},
            **asdict(report),
        }
        write_json(tmp_manifest, manifest("maskgen build-mfer", fields))
    return report


_RULES = {
    "pairs": "a source is used only if SMFER2013 changed its image; then both its unmasked and masked "
             "image are written: masked and unmasked counts are equal in every class and Usage",
    "none": "every FER2013 row unmasked plus the masked copy of every row SMFER2013 changed",
    "classes_none": "no balancing across classes (FER2013's class distribution)",
    "undersample": "within each Usage, every class keeps a random subset (rng [seed, usage, class]) of its "
                   "sources as large as the smallest class of that Usage",
    "oversample": "within each Usage, every class keeps all its sources plus random repeats (with "
                  "replacement, rng [seed, usage, class]) up to the largest class of that Usage",
}


def format_counts(counts: dict[str, dict[str, dict[str, int]]]) -> str:
    """Readable table: one line per Usage, class columns as unmasked/masked."""
    width = max(len(u) for u in counts) if counts else 5
    head = " ".join(f"{name:>13}" for name in EMOTIONS)
    lines = [f"{'':{width}} {head}   (unmasked/masked)"]
    for u, per_class in counts.items():
        cells = " ".join(f"{str(v['unmasked']) + '/' + str(v['masked']):>13}" for v in per_class.values())
        lines.append(f"{u:{width}} {cells}")
    return "\n".join(lines)

