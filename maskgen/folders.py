"""Image-folder datasets: mask every image of a folder tree (or of a list file), same relative paths out.

Layouts read:

- an ImageFolder tree, ``SRC/split/class/*.png|jpg`` (as the common image-folder copies of
  FER2013 are laid out: ``train/angry/...``, ``test/happy/...``), or ``SRC/class/*``, or flat;
  the split and class come from the folder names;
- a list file (``--list FILE``): a CSV with a ``path`` column (relative to ``SRC``) and an
  optional ``label`` column; its other columns are ignored.

Two modes: ``crop`` (aligned face crops, the FER2013 landmark chain; every image is masked) and
``photo`` (every face the detector finds; images without a face are recorded as ``no_face``).

Every image's randomness comes from ``(seed, key)`` with ``key`` a 63-bit hash of its relative
path (:func:`path_key`), so the output does not depend on order, chunking or workers. Outputs go
to ``OUT/<same relative path>`` (same format; JPEG is re-encoded), plus ``OUT/smfer.meta.csv``
(one row per image, sorted by path) and ``OUT/smfer.manifest.json``.

**Resume.** The build keeps ``OUT/.maskgen-build.json`` (what is being built) and appends each
finished chunk's sidecar rows to ``OUT/.smfer.meta.partial.csv``. After an interruption the same
command with ``resume=True`` (``--resume``) skips every image whose output and sidecar row exist,
after checking that the configuration is the same and that every input picture has the bytes it
had when the build started (sha256 per picture in the state file, one digest ``contents_sha256`` in
both files; a build recorded without it, by an older maskgen, is refused); the finished folder is
identical to an uninterrupted build's.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from maskgen.imageops import to_gray
from maskgen.io import (IMAGE_SUFFIXES, ImageTooLargeError, OutputRecord, atomic_write, file_sha256, manifest, read_image,
                        write_image, write_json)
from maskgen.parallel import default_jobs, map_chunks
from maskgen.paths import Output, PathError, check_outputs, check_targets, check_write_target, read_list, walk
from maskgen.pipeline import SIDECAR_COLUMNS, BuildConfig, landmark_source, mask_face, resolve_masks
from maskgen.photo import path_key  # the one key of a picture, shared with mask-image

__all__ = ["FOLDER_SIDECAR_COLUMNS", "MFER_INDEX_NAME", "MFER_RECORD", "MODES", "FolderItem", "FolderMixReport", "FolderReport",
           "build_folder", "build_mfer_folder", "masked_name", "path_key", "read_list_file", "scan_folder"]

MODES = ("crop", "photo")
STATE_NAME = ".maskgen-build.json"
PARTIAL_NAME = ".smfer.meta.partial.csv"
META_NAME, MANIFEST_NAME = "smfer.meta.csv", "smfer.manifest.json"
#: sidecar columns of a folder build: the image's path, split and label, then the CSV build's columns
FOLDER_SIDECAR_COLUMNS = ("path", "split", "label", "faces", *[c for c in SIDECAR_COLUMNS if c != "row_id"])
DEFAULT_FOLDER_CHUNK = 64


@dataclass(frozen=True)
class FolderItem:
    """One image of a folder dataset: path relative to the root ('/'-separated), split and label ('' if none)."""

    path: str
    split: str = ""
    label: str = ""


def scan_folder(root: str | Path, exclude: Path | None = None) -> list[FolderItem]:
    """Every image under ``root`` (sorted; none if ``root`` is not a folder), split / class from
    ``split/class/file`` or ``class/file``; files under ``exclude`` are skipped (:func:`maskgen.paths.walk`)."""
    root = Path(root)
    if not root.is_dir():
        return []
    items = []
    for f in walk([root], IMAGE_SUFFIXES, exclude=[exclude] if exclude is not None else ()):
        parts = f.rel.split("/")
        split, label = (parts[0], parts[1]) if len(parts) >= 3 else ("", parts[0] if len(parts) == 2 else "")
        items.append(FolderItem(f.rel, split, label))
    return items


def read_list_file(path: str | Path, root: str | Path) -> list[FolderItem]:
    """Items of a list file (CSV with ``path`` and optional ``label`` / ``split`` columns), validated
    by :func:`maskgen.paths.read_list`: paths are relative to ``root`` and must stay inside it.

    Raises:
        ValueError: no ``path`` column, an absolute path or one leaving ``root`` (``..``), a path
            twice (``./a.png`` and ``a.png`` are one path), a missing file, or a file that is not an
            image type read here (naming the list file and line).
    """
    path = Path(path)
    items = [FolderItem(e.rel, e.row.get("split", "").strip(), e.row.get("label", "").strip())
             for e in read_list(path, root, IMAGE_SUFFIXES)]
    if not items:
        raise ValueError(f"{path}: no images listed")
    return sorted(items, key=lambda it: it.path)


def _mask_item(item: FolderItem, src: Path, out: Path, mode: str, config: BuildConfig) -> dict[str, Any]:
    """Mask one image, write its output, return its sidecar record."""
    base = {"path": item.path, "split": item.split, "label": item.label}
    try:
        image = read_image(src / item.path)
    except ValueError as exc:
        status = "too_large" if isinstance(exc, ImageTooLargeError) else "error"
        return {**base, "faces": 0, "status": status, "error": f"{type(exc).__name__}: {exc}"}
    key = path_key(item.path)
    if mode == "crop":
        try:
            marks = landmark_source(config).for_crop(to_gray(image), key=item.path)
        except Exception as exc:  # noqa: BLE001 - recorded per image
            write_image(out / item.path, image)
            return {**base, "faces": 0, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
        result = mask_face(image, key, config, marks=marks)
        write_image(out / item.path, result.image)
        record = result.record()
        record.pop("row_id")
        return {**base, "faces": 1 if result.params is not None else 0, **record}
    from maskgen.photo import mask_photo

    try:
        photo = mask_photo(image, seed=config.seed, key=key, masks=config.masks, fit_probs=config.fit_probs,
                           detector=landmark_source(config), lookup_key=item.path, styles=config.styles)
    except Exception as exc:  # noqa: BLE001 - recorded per image (e.g. too small to search), as in crop mode
        write_image(out / item.path, image)
        return {**base, "faces": 0, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
    write_image(out / item.path, photo.image)
    params = [{**f.params.to_dict(), "box": [round(v, 1) for v in f.box]} for f in photo.faces]
    return {
        **base, "faces": len(photo.faces),
        "status": "masked" if photo.faces else ("error" if photo.errors else "no_face"),
        "mask": ";".join(f.params.mask for f in photo.faces), "fit": ";".join(f.params.fit for f in photo.faces),
        "qa_passed": ";".join(str(int(f.qa.passed)) for f in photo.faces),
        "params": json.dumps(params, sort_keys=True, separators=(",", ":")) if params else "",
        "error": "; ".join(f"face {k}: {e}" for k, _, e in photo.errors),
    }


def mask_folder_chunk(items: list[FolderItem], src: str, out: str, mode: str,
                      config: BuildConfig) -> list[dict[str, Any]]:
    """Worker task: mask a chunk of images, write them, return their sidecar records."""
    return [_mask_item(item, Path(src), Path(out), mode, config) for item in items]


@dataclass
class FolderReport:
    """What a folder build did; also the core of its manifest."""

    input: str
    output: str
    metadata: str
    manifest: str
    mode: str
    images: int
    resumed: int
    status_counts: dict[str, int]
    mask_counts: dict[str, int]
    landmark_sources: dict[str, int]
    faces: int
    qa_passed: int
    timings_s: dict[str, float]


def _state(config: BuildConfig, mode: str, items: list[FolderItem], list_file: str | None) -> dict[str, Any]:
    listing = hashlib.sha256("\n".join(f"{i.path}\t{i.split}\t{i.label}" for i in items).encode()).hexdigest()
    return {"mode": mode, "seed": config.seed, "masks": list(config.masks or ()),
            "fit_probs": dict(config.fit_probs or {"correct": 1.0}), "mask_specs": list(config.mask_specs),
            "on_implausible": config.on_implausible, "landmarks": config.landmarks,
            "landmarks_sha256": file_sha256(config.landmarks) if config.landmarks else None,
            "list_file": list_file, "items_sha256": listing, "images": len(items),
            **({"styles": list(config.styles)} if config.styles else {})}   # none: the default, recipe unchanged


def _read_partial(path: Path, out: Path) -> dict[str, dict[str, str]]:
    """Sidecar rows already written, keyed by path: only complete rows whose output exists
    (a build killed while writing a row leaves a torn last line, which is dropped)."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, restkey="_extra")
        if reader.fieldnames != list(FOLDER_SIDECAR_COLUMNS):
            return {}
        rows = [r for r in reader if "_extra" not in r and None not in r.values()]
    return {r["path"]: r for r in rows if (out / r["path"]).is_file()}


def _csv_text(records: list[dict[str, Any]], header: bool) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FOLDER_SIDECAR_COLUMNS, lineterminator="\n", restval="")
    if header:
        writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


#: state-file key holding each input picture's sha256 (only the state file: the manifest keeps the one digest)
PICTURE_SUMS_KEY = "picture_sha256"


def _picture_sums(src: Path, items: list[FolderItem]) -> dict[str, str]:
    """sha256 of each input picture's bytes, by path, in order (each file read once; threads, as
    hashlib releases the GIL). An unreadable picture gets ``""``: it stays a per-picture status row."""
    def one(item: FolderItem) -> str:
        try:
            return file_sha256(src / item.path)
        except OSError:
            return ""

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip([i.path for i in items], pool.map(one, items)))


def _contents_digest(sums: dict[str, str]) -> str:
    """One digest over (relative path, sha256 of its bytes) of every input picture: ``contents_sha256``."""
    return hashlib.sha256("".join(f"{p}\t{h}\n" for p, h in sums.items()).encode()).hexdigest()


def _check_contents(saved: dict[str, Any], state: dict[str, Any], sums: dict[str, str], src: Path, out: Path) -> None:
    """``--resume`` (#28): refuse when an input picture's bytes changed since the build started (a picture
    replaced under the same name would be mixed in silently), naming the first one; refuse a build
    recorded by an older maskgen, which kept no checksums to check. Another picture list is left to
    the configuration check, which names it."""
    if "contents_sha256" not in saved:
        raise ValueError(f"--resume: {out} holds a build made by an older maskgen, which did not record its pictures' "
                         f"checksums (contents_sha256), so pictures changed since cannot be detected; "
                         f"start a new build in another folder")
    if saved["contents_sha256"] == state["contents_sha256"]:
        return
    old = saved.get(PICTURE_SUMS_KEY) or {}
    changed = next((p for p, h in sums.items() if p in old and old[p] != h), None)
    if changed is not None:
        raise ValueError(f"--resume: {src / changed} is not the picture the build in {out} started from (same name, "
                         f"other contents); start a new build in another folder")
    if saved.get("items_sha256") == state["items_sha256"]:  # a finished build: its manifest keeps the digest only
        raise ValueError(f"--resume: a picture of {src} has other contents than when {out} was built (same names, "
                         f"contents_sha256 differs); start a new build in another folder")


def _read_build_json(path: Path, ours: Any) -> dict[str, Any] | None:
    """A build record (state file or manifest) in the output folder: None if absent; refused, naming the file,
    if it cannot be read as one (``ours(dict)`` says whether its keys are those maskgen writes)."""
    if not path.exists():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else f"not JSON ({exc})"
        raise ValueError(f"{path}: {reason}; it is not a build record of maskgen build-smfer: remove it or "
                         "choose another folder") from None
    if not isinstance(found, dict) or not ours(found):
        raise ValueError(f"{path} was not written by maskgen build-smfer (not its build record): remove it or "
                         "choose another folder")
    return found


def build_folder(src: str | Path, out: str | Path, *, config: BuildConfig = BuildConfig(), mode: str = "crop",
                 list_file: str | Path | None = None, jobs: int | None = None,
                 chunk_size: int = DEFAULT_FOLDER_CHUNK, backend: str = "loky", scheduler: str | None = None, resume: bool = False,
                 progress: bool = True) -> FolderReport:
    """Mask every image of folder ``src`` into folder ``out`` (see the module docstring).

    Raises:
        ValueError: bad input (no images, a bad list or landmarks file, ``out`` inside ``src``),
            or ``out`` holds another build (``resume`` with a different configuration, or an
            unfinished build without ``resume``).
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    src, out = Path(src), Path(out)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not src.is_dir():
        raise ValueError(f"{src} is not a folder")
    # every path before any work: out is neither an input nor inside one, and holds none (either nesting)
    check_outputs([("input", src), ("--list", list_file), ("--landmarks", config.landmarks),
                   *(("--mask-spec", s) for s in config.mask_specs)], [Output("-o", out, folder=True)])
    items = read_list_file(list_file, src) if list_file else scan_folder(src)
    if not items:
        raise ValueError(f"{src}: no images ({', '.join(IMAGE_SUFFIXES)})")
    # the build's own files too: regular files or absent, and replaced only within a build of ours (unfinished or
    # finished; each read and checked here, before any work)
    state_path, partial_path = out / STATE_NAME, out / PARTIAL_NAME
    meta_path, manifest_path = out / META_NAME, out / MANIFEST_NAME
    for path in (state_path, partial_path, meta_path, manifest_path):
        check_write_target(path, "-o")
    saved = _read_build_json(state_path, lambda d: "items_sha256" in d and "mode" in d)
    finished = _read_build_json(manifest_path, lambda d: str(d.get("tool", "")).startswith("maskgen build-smfer (folder)"))
    ours = saved is not None or finished is not None
    if not ours:
        for path in (partial_path, meta_path):
            if path.exists():
                raise PathError(f"-o {out}: {path} exists and was not written by maskgen build-smfer: remove it or "
                                "choose another folder")
    # no symlink / FIFO among the outputs, none led into the input by a symlinked folder, and outside a build of
    # ours no existing file
    check_targets(((src / i.path, out / i.path) for i in items), "output",
                  may_replace=None if ours else (lambda _: False), inputs=[("input", src)])
    config = resolve_masks(config)
    if config.landmarks is not None:
        from maskgen.landmarks.supplied import check_keys, read_landmarks_file

        check_keys(read_landmarks_file(config.landmarks), "path", {i.path for i in items}, f"it is not a picture of {src}")
    state = _state(config, mode, items, str(list_file) if list_file else None)
    sums = _picture_sums(src, items)  # contents, not only names (#28): checked on --resume
    state["contents_sha256"] = _contents_digest(sums)
    done: dict[str, dict[str, str]] = {}
    if saved is not None:  # an unfinished build
        if not resume:
            raise ValueError(f"{out} holds an unfinished build: pass --resume to continue it, or choose another folder")
        _check_contents(saved, state, sums, src, out)
        diff = sorted(k for k in {*state, "styles"} if saved.get(k) != state.get(k))   # styles: only when given
        if diff:
            raise ValueError(f"--resume with a different configuration or image list ({', '.join(diff)})")
        done = _read_partial(partial_path, out)
    elif finished is not None:  # a finished build
        if not resume:
            raise ValueError(f"{out} already holds a finished build ({manifest_path}); choose another folder")
        _check_contents(finished, state, sums, src, out)
        diff = sorted(k for k in {*state, "styles"} if finished.get(k) != state.get(k))
        if diff:
            raise ValueError(f"--resume: {out} holds a finished build of another configuration or image list "
                             f"({', '.join(diff)}); choose another folder")
        done = _read_partial(meta_path, out)  # the same build: nothing left to do
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(state_path) as tmp:
        write_json(tmp, {**state, PICTURE_SUMS_KEY: sums})  # per picture, to name a changed one on --resume
    todo = [i for i in items if i.path not in done]
    with atomic_write(partial_path) as tmp:  # the complete rows so far (drops a torn last line)
        tmp.write_text(_csv_text(list(done.values()), header=True), encoding="utf-8")
    t_read = time.perf_counter()

    chunks = [todo[a:a + chunk_size] for a in range(0, len(todo), chunk_size)]
    tasks = [(chunk, str(src), str(out), mode, config) for chunk in chunks]
    n_jobs = jobs if jobs and jobs > 0 else default_jobs()
    new: list[dict[str, Any]] = []
    with tqdm(total=len(items), initial=len(done), unit="img", desc=f"masking ({n_jobs} jobs)",
              disable=not progress) as bar, open(partial_path, "a", encoding="utf-8", newline="") as part:
        for records in map_chunks(mask_folder_chunk, tasks, jobs=n_jobs, backend=backend, scheduler=scheduler):
            part.write(_csv_text(records, header=False))
            part.flush()
            new.extend(records)
            bar.update(len(records))
    t_mask = time.perf_counter()

    everything = {**done, **{r["path"]: {k: ("" if v is None else str(v)) for k, v in r.items()} for r in new}}
    rows = [everything[i.path] for i in items]
    status = Counter(r["status"] for r in rows)
    report = FolderReport(
        input=str(src), output=str(out), metadata=str(meta_path), manifest=str(manifest_path), mode=mode,
        images=len(items), resumed=len(done), status_counts=dict(sorted(status.items())),
        mask_counts=dict(sorted(Counter(m for r in rows for m in str(r.get("mask", "")).split(";") if m).items())),
        landmark_sources=dict(sorted(Counter(r.get("landmark_source", "") for r in rows
                                             if r.get("landmark_source")).items())),
        faces=sum(int(r.get("faces") or 0) for r in rows),
        qa_passed=sum(str(r.get("qa_passed", "")).split(";").count("1") for r in rows), timings_s={},
    )
    with atomic_write(meta_path) as tmp_meta, atomic_write(manifest_path) as tmp_manifest:
        tmp_meta.write_text(_csv_text(rows, header=True), encoding="utf-8")
        report.timings_s = {"scan": round(t_read - t0, 3), "mask": round(t_mask - t_read, 3),
                            "total": round(time.perf_counter() - t0, 3)}
        write_json(tmp_manifest, manifest("maskgen build-smfer (folder)", {
            **state, "jobs": n_jobs, "chunk_size": chunk_size, "backend": backend,
            **{k: v for k, v in asdict(report).items() if k != "timings_s"}, "timings_s": report.timings_s}))
    partial_path.unlink(missing_ok=True)
    state_path.unlink(missing_ok=True)
    return report


# ---------------------------------------------------------------- MFER-style mix of a folder
MFER_INDEX_NAME = "mfer.index.csv"
MASKED_TAG = "__masked"


@dataclass
class FolderMixReport:
    """What :func:`build_mfer_folder` wrote."""

    output: str
    index: str
    sources: int
    pictures: int
    skipped_unmasked: int


def masked_name(rel: str) -> str:
    """``train/happy/0001.png`` -> ``train/happy/0001__masked.png`` (the masked twin's path)."""
    stem, dot, ext = rel.rpartition(".")
    return f"{stem}{MASKED_TAG}.{ext}" if dot else f"{rel}{MASKED_TAG}"


#: the -o folder's record of the files build-mfer wrote there (:class:`maskgen.io.OutputRecord`)
MFER_RECORD = ".maskgen-build-mfer.json"


def _check_same_source(src: Path, masked: Path, rows: list[dict[str, str]]) -> None:
    """The build in ``masked`` was made from these pictures of ``src`` (not another folder with the same names):
    its manifest's ``contents_sha256`` against the digest of ``src``'s pictures, when the manifest records it."""
    try:
        found = json.loads((masked / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no manifest, or not one: nothing recorded to compare
        return
    recorded = found.get("contents_sha256") if isinstance(found, dict) else None
    if not isinstance(recorded, str):
        return
    if _contents_digest(_picture_sums(src, [FolderItem(r["path"]) for r in rows])) != recorded:
        raise ValueError(f"{masked} was built from other pictures than those of {src} (same names, other bytes: "
                         f"contents_sha256 in {masked / MANIFEST_NAME} differs); give the folder it was built from")


def build_mfer_folder(src: str | Path, masked: str | Path, out: str | Path) -> FolderMixReport:
    """MFER-style mix of a folder dataset: every picture that ``masked`` (a finished folder build
    of ``src``) masked, once unmasked and once masked, side by side under ``out``.

    ``out/<path>`` is the original, ``out/<path with __masked before the suffix>`` its masked twin
    (same split and class folders), and ``out/mfer.index.csv`` lists every picture with its
    ``source`` (the original's path: a face and its twin share it, so the ``grouped`` split keeps
    them together) and ``masked`` flag. Pictures the build left unmasked (errors, ``kept``, photos
    with no face) are left out, so masked and unmasked counts are equal in every class and split.
    An existing file in ``out`` is replaced only if an earlier build-mfer wrote it (:data:`MFER_RECORD`).

    Raises:
        ValueError: ``masked`` is not a finished build of ``src`` (no sidecar, another picture list, or other
            pictures under the same names), it masked no picture, a picture of ``src`` is named like another's
            masked twin, or an output would replace a file build-mfer did not write or lie in an input folder.
    """
    src, masked, out = Path(src), Path(masked), Path(out)
    meta = masked / META_NAME
    if not meta.is_file():
        raise ValueError(f"{masked} is not a finished folder build (no {META_NAME}); run build-smfer on {src} first")
    check_outputs([("input", src), ("build", masked)], [Output("-o", out, folder=True)])
    items = {i.path: i for i in scan_folder(src)}
    with open(meta, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"path", "status"} <= set(rows[0]):
        raise ValueError(f"{meta}: not a build-smfer sidecar (needs 'path' and 'status' columns)")
    unknown = [r["path"] for r in rows if r["path"] not in items]
    if unknown:
        raise ValueError(f"{meta} lists {unknown[0]}, which is not a picture of {src}: not a build of this folder")
    _check_same_source(src, masked, rows)
    used = sorted((r for r in rows if r["status"].startswith("masked") and (masked / r["path"]).is_file()),
                  key=lambda r: r["path"])
    if not used:
        status = dict(sorted(Counter(r["status"] for r in rows).items()))
        raise ValueError(f"{masked}: the build masked none of its {len(rows)} pictures (status {json.dumps(status)}): "
                         "an MFER mix of it would hold no picture")
    names = {r["path"] for r in used}
    for r in used:
        if masked_name(r["path"]) in names:
            raise ValueError(f"{src / masked_name(r['path'])} is named like the masked twin of {src / r['path']} "
                             f"(NAME{MASKED_TAG}): both would be written to {out / masked_name(r['path'])}; rename it")
    record = OutputRecord(out, MFER_RECORD, "maskgen build-mfer")
    copies = [(from_path, to_rel, r, flag) for r in used
              for flag, from_path, to_rel in ((0, src / r["path"], r["path"]),
                                              (1, masked / r["path"], masked_name(r["path"])))]
    check_targets([*((f, out / rel) for f, rel, _, _ in copies), (meta, out / MFER_INDEX_NAME)], "-o",
                  may_replace=record.may_replace, inputs=[("input", src), ("build", masked)])
    index = []
    try:
        for from_path, to_rel, r, flag in copies:
            item = items[r["path"]]
            with atomic_write(out / to_rel) as tmp:
                tmp.write_bytes(from_path.read_bytes())
            record.add(out / to_rel)
            index.append({"path": to_rel, "source": item.path, "masked": flag, "split": item.split, "label": item.label})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["path", "source", "masked", "split", "label"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(index)
        with atomic_write(out / MFER_INDEX_NAME) as tmp:
            tmp.write_text(buf.getvalue(), encoding="utf-8")
        record.add(out / MFER_INDEX_NAME)
    finally:  # what this run wrote, so that a rerun may replace it (and nothing else)
        record.save()
    return FolderMixReport(output=str(out), index=str(out / MFER_INDEX_NAME), sources=len(used), pictures=len(index),
                           skipped_unmasked=len(rows) - len(used))
