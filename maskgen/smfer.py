"""Build SMFER2013: every row of a FER2013-format CSV with a synthetic mask drawn on it.

Outputs (all written atomically, so a failed or interrupted run leaves none of them):
- the masked CSV: same rows, order, columns, labels and ``Usage`` as the input;
- a per-row sidecar CSV (``<out>.meta.csv``): row id, status, mask, fit, landmark source and
  score, QA result, sampled parameters, error text;
- ``<out>.manifest.json``: seed, version, input, options, counts and timings.
"""
from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from maskgen.dataset import FerTable, read_fer_csv, write_fer_csv
from maskgen.io import (atomic_write, build_fields, build_id, build_recipe, csv_stem, file_sha256, manifest,
                        manifest_path, write_json)
from maskgen.parallel import DEFAULT_CHUNK_SIZE, check_jobs, chunk_ranges, gather_rows, map_chunks
from maskgen.paths import Output, check_outputs
from maskgen.pipeline import SIDECAR_COLUMNS, STATUSES, BuildConfig, mask_chunk, resolve_masks


def default_output(input_path: str | Path) -> Path:
    """``fer2013.csv[.gz]`` -> ``smfer2013.csv`` next to it; ``x.csv`` -> ``x_masked.csv``."""
    path = Path(input_path)
    stem = csv_stem(path)
    name = stem.replace("fer2013", "smfer2013") if "fer2013" in stem and "smfer" not in stem else f"{stem}_masked"
    return path.with_name(f"{name}.csv")


def sidecar_paths(out_path: str | Path) -> tuple[Path, Path]:
    """(per-row metadata CSV, manifest JSON) next to the output."""
    out = Path(out_path)
    stem = csv_stem(out)
    return out.with_name(f"{stem}.meta.csv"), manifest_path(out)


def input_companions(input_path: str | Path) -> list[tuple[str, Path]]:
    """(role, path) of the files that travel with an input CSV and exist: its sidecar and manifest by
    :func:`sidecar_paths`, and the sidecar its manifest records. No output may replace them (``build-smfer
    smfer.csv -o smfer.csv.gz`` would write smfer.meta.csv and smfer.manifest.json, the input's own)."""
    path = Path(input_path)
    meta, manifest_file = sidecar_paths(path)
    found = [("input's sidecar", meta), ("input's manifest", manifest_file)]
    recorded = None
    if manifest_file.is_file():  # never open a FIFO there: the read would block
        try:
            recorded = json.loads(manifest_file.read_text(encoding="utf-8")).get("metadata")
        except (OSError, ValueError, AttributeError):
            recorded = None
    if isinstance(recorded, str) and recorded:
        found.append(("input's sidecar", Path(recorded)))
    return [(role, p) for role, p in found if p.is_file()]


@dataclass
class BuildReport:
    """What a build did; also the core of the manifest."""

    input: str
    output: str
    metadata: str
    manifest: str
    rows: int
    status_counts: dict[str, int]
    mask_counts: dict[str, int]
    fit_counts: dict[str, int]
    landmark_sources: dict[str, int]
    qa_passed: int
    masked_per_class: dict[str, float]
    timings_s: dict[str, float]


def _sidecar_text(records: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SIDECAR_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def build_smfer(input_path: str | Path, output_path: str | Path | None = None, *,
                config: BuildConfig = BuildConfig(), jobs: int | None = None,
                chunk_size: int = DEFAULT_CHUNK_SIZE, backend: str = "loky", scheduler: str | None = None,
                metadata_path: str | Path | None = None, progress: bool = True) -> BuildReport:
    """Mask every row of ``input_path`` and write SMFER2013-style outputs.

    The input is read and validated completely before any work starts
    (:class:`maskgen.dataset.FerFormatError` otherwise). Output bytes depend only on the input,
    ``config`` (seed, masks, fits) and the maskgen version, never on ``jobs``, ``chunk_size``
    or ``backend``.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    n_jobs = check_jobs(jobs, backend, scheduler)
    input_path = Path(input_path)
    out = Path(output_path) if output_path is not None else default_output(input_path)
    meta_path, manifest_file = sidecar_paths(out)
    if metadata_path is not None:
        meta_path = Path(metadata_path)
    # every output against every input (its sidecar and manifest included) and each other, before any work
    check_outputs([("input", input_path), *input_companions(input_path), ("--landmarks", config.landmarks),
                   *(("--mask-spec", s) for s in config.mask_specs)],
                  [Output("-o", out), Output("--metadata" if metadata_path is not None else "sidecar", meta_path),
                   Output("manifest", manifest_file)])
    table = read_fer_csv(input_path)
    config = resolve_masks(config)  # unknown mask names fail here, before any work
    if config.landmarks is not None:  # so does a bad landmarks file, with its line
        from maskgen.landmarks.supplied import check_keys, read_landmarks_file

        h, w = table.images.shape[1:]
        check_keys(read_landmarks_file(config.landmarks, (w, h)), "row", {str(i) for i in range(len(table))},
                   f"the data has {len(table)} rows")
    t_read = time.perf_counter()

    n = len(table)
    ranges = chunk_ranges(n, chunk_size)
    tasks = [(table.images[a:b], np.arange(a, b), config) for a, b in ranges]
    with tqdm(total=n, unit="row", desc=f"masking ({n_jobs} jobs)", disable=not progress, smoothing=0.1) as bar:
        images, records = gather_rows(
            n, map_chunks(mask_chunk, tasks, jobs=n_jobs, backend=backend, scheduler=scheduler), table.images.shape[1:],
            on_chunk=bar.update,
        )
    t_mask = time.perf_counter()

    meta_text = _sidecar_text(records)
    report = _report(table, records, input_path, out, meta_path, manifest_file)
    with atomic_write(meta_path) as tmp_meta, atomic_write(manifest_file) as tmp_manifest:
        write_fer_csv(out, table, images)  # unchanged rows stay byte-identical to the input
        tmp_meta.write_text(meta_text, encoding="utf-8")
        t_write = time.perf_counter()
        report.timings_s = {
            "read": round(t_read - t0, 3), "mask": round(t_mask - t_read, 3),
            "write": round(t_write - t_mask, 3), "total": round(t_write - t0, 3),
        }
        input_sha = file_sha256(input_path)
        options, recipe = _options(config)
        fields = {
            "seed": config.seed,
            "config": options,
            **build_fields("maskgen build-smfer", recipe, {"input": (input_path, input_sha)}, out),
            "jobs": n_jobs,
            "chunk_size": chunk_size,
            "backend": backend,
            "input_sha256": input_sha,
            **asdict(report),
        }
        write_json(tmp_manifest, manifest("maskgen build-smfer", fields))
    return report


def _options(config: BuildConfig) -> tuple[dict, dict | None]:
    """(the manifest's ``config`` options, the recipe's options or None) of a resolved config."""
    options = {
        "seed": config.seed, "masks": list(config.masks or ()),
        "fit_probs": dict(config.fit_probs or {"correct": 1.0}),
        "mask_specs": list(config.mask_specs), "on_implausible": config.on_implausible,
        "landmarks": config.landmarks,
        "landmarks_sha256": file_sha256(config.landmarks) if config.landmarks else None,
        # the style set, only when one was asked for: default builds keep their recipe (and build id)
        **({"styles": list(config.styles)} if config.styles else {}),
    }
    # the landmarks file's bytes count, not its path; custom masks (spec files, the Python API) are
    # not in the options, so such a build has no recipe id
    recipe = None if config.templates else {k: v for k, v in options.items() if k != "landmarks"}
    return options, recipe


def expected_build_id(input_path: str | Path, config: BuildConfig = BuildConfig(),
                      input_sha256: str | None = None) -> str | None:
    """The build id :func:`build_smfer` would record for ``input_path`` and ``config`` now (None: a build
    with custom masks, which has no recipe id), without masking anything. An existing output whose
    :func:`maskgen.io.dataset_build` equals it is that build (skip rebuilding it)."""
    input_path = Path(input_path)
    _, recipe = _options(resolve_masks(config))
    build = build_recipe("maskgen build-smfer", recipe,
                         {"input": (input_path, input_sha256 or file_sha256(input_path))})
    return None if build is None else build_id(build)


def _report(table: FerTable, records: list[dict], input_path: Path, out: Path, meta_path: Path,
            manifest_file: Path) -> BuildReport:
    from maskgen.dataset import EMOTIONS

    status = Counter(r["status"] for r in records)
    masked = np.array([str(r["status"]).startswith("masked") for r in records])
    per_class = {
        EMOTIONS[c]: round(float(masked[table.emotion == c].mean()), 4) if (table.emotion == c).any() else 0.0
        for c in range(len(EMOTIONS))
    }
    return BuildReport(
        input=str(input_path), output=str(out), metadata=str(meta_path), manifest=str(manifest_file),
        rows=len(records),
        status_counts={s: status.get(s, 0) for s in STATUSES},
        mask_counts=dict(sorted(Counter(r["mask"] for r in records if r["mask"]).items())),
        fit_counts=dict(sorted(Counter(r["fit"] for r in records if r["fit"]).items())),
        landmark_sources=dict(sorted(Counter(r["landmark_source"] for r in records if r["landmark_source"]).items())),
        qa_passed=sum(1 for r in records if r["qa_passed"] == 1),
        masked_per_class=per_class,
        timings_s={},
    )
