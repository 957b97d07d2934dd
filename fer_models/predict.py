"""``fer-models predict``: the expression of every face in photos, folders or FER2013-format CSVs.

Photos: every face maskgen's photo detector finds is cut out as FER2013 would have it
(:func:`maskgen.crops.fer_crop`: 48x48 gray, aligned to FER2013's mean face) and scored.
A photo with no face gets a ``no_face`` record, an unreadable one an ``unreadable`` record:
nothing is skipped silently. CSV rows are 48x48 faces already (their label, when present, is
kept as ``true_label``). ``--aligned`` treats pictures as face crops (resized to 48x48, no
detection), as in an image-folder dataset.

A :class:`Scorer` wraps a PyTorch checkpoint (with its test-time augmentation) or an ONNX
export (:class:`fer_models.export.OnnxClassifier`) behind one call: uint8 faces -> probabilities.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maskgen.dataset import SIDE
from maskgen.io import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from fer_models.checkpoint import Checkpoint

CSV_SUFFIXES = (".csv", ".gz")
#: a record's status: a scored face, a picture without a face, or a picture that failed (unreadable, larger than
#: maskgen.io.MAX_IMAGE_PIXELS, or an error while searching it, e.g. too small): one record, the others go on
STATUSES = ("ok", "no_face", "unreadable", "too_large", "error")
FAILED_STATUSES = ("unreadable", "too_large", "error")
#: rows of a CSV scored per batch
BATCH = 256


class Scorer:
    """uint8 faces (N, 48, 48) -> (N, classes) float32 probabilities, from a checkpoint or an ONNX file."""

    def __init__(self, class_names: tuple[str, ...], fn: Callable[[np.ndarray], np.ndarray], describe: str) -> None:
        self.class_names = class_names
        self._fn = fn
        self.describe = describe

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        if len(faces) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        return self._fn(np.asarray(faces, np.uint8))

    @classmethod
    def from_checkpoint(cls, source: Checkpoint | str | os.PathLike, tta: str | None = None, device: str = "auto",
                        amp: str = "auto") -> Scorer:
        """A :class:`~fer_models.checkpoint.Checkpoint`, checkpoint file or shipped name; TTA default: its recipe's."""
        import torch

        from fer_models.checkpoint import load_model
        from fer_models.device import resolve
        from fer_models.inference import predict

        placement = resolve(device, amp)
        model, ckpt = load_model(source, placement)
        config = ckpt.train_config()
        mode = tta or config.tta

        def fn(faces: np.ndarray) -> np.ndarray:
            scores = predict(model, torch.from_numpy(faces[:, None].copy()), BATCH, config.channels_last,
                             placement=placement, tta=mode)
            return scores.float().softmax(1).numpy()  # logits or log-probabilities: softmax gives probabilities

        return cls(tuple(ckpt.class_names), fn, f"{config.model} ({placement.describe()}, TTA {mode})")

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, threads: int | None = None, tta: str = "none") -> Scorer:
        """An exported model; ``tta`` ``none`` or ``flip`` (mean of the face and its mirror)."""
        from fer_models.export import OnnxClassifier

        if tta not in ("none", "flip"):
            raise ValueError(f"an ONNX model predicts with tta none or flip, not {tta!r}")
        clf = OnnxClassifier(path, threads=threads)

        def fn(faces: np.ndarray) -> np.ndarray:
            p = clf.probabilities(faces)
            return p if tta == "none" else (p + clf.probabilities(faces[:, :, ::-1].copy())) / 2

        return cls(clf.class_names, fn, f"{clf.model} (onnxruntime {Path(path).name}, TTA {tta})")


@dataclass
class Record:
    """One output row: a face (or a photo with none) and its prediction."""

    file: str
    status: str
    face: int | None = None
    row: int | None = None
    box: tuple[float, float, float, float] | None = None
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    true_label: str | None = None
    error: str = ""

    def flat(self, class_names: tuple[str, ...]) -> dict[str, Any]:
        box = self.box or (None, None, None, None)
        out: dict[str, Any] = {"file": self.file, "row": self.row, "face": self.face, "status": self.status,
                               "left": box[0], "top": box[1], "right": box[2], "bottom": box[3],
                               "label": self.label, "true_label": self.true_label}
        out.update({f"p_{name}": self.probabilities.get(name) for name in class_names})
        out["error"] = self.error
        return out


def _is_csv(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".csv") or name.endswith(".csv.gz")


def expand_inputs(paths: Iterable[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """Files and folders -> sorted (file, name relative to its folder, or the bare name) pairs of pictures and
    CSVs (:func:`maskgen.paths.walk`); FileNotFoundError for a missing path."""
    from maskgen.paths import walk

    return [(f.path, Path(f.rel)) for f in walk(paths, (*IMAGE_SUFFIXES, ".csv", ".csv.gz"))]


#: the --annotate folder's record of the pictures ``predict`` wrote there (name -> sha256): only those
#: are ever replaced by a later run; any other existing file is refused
ANNOTATED_RECORD = ".fer-models-annotated.json"
_ANNOTATED_TOOL = "fer-models predict --annotate"


def annotated_name(rel: Path) -> Path:
    """``sub/x.jpg`` -> ``sub/x.annotated.jpg`` (PNG for other picture types): a picture's name under --annotate."""
    return rel.with_name(rel.stem + ".annotated" + (rel.suffix if rel.suffix.lower() in (".png", ".jpg", ".jpeg")
                                                     else ".png"))


def annotation_record(folder: str | os.PathLike):
    """The :class:`maskgen.io.OutputRecord` of an --annotate folder (what earlier runs wrote there)."""
    from maskgen.io import OutputRecord

    return OutputRecord(folder, ANNOTATED_RECORD, _ANNOTATED_TOOL)


def check_predict_outputs(paths: Iterable[str | os.PathLike], output: str | os.PathLike | None = None,
                          annotate: str | os.PathLike | None = None,
                          models: Iterable[tuple[str, str | os.PathLike | None]] = ()
                          ) -> list[tuple[Path, Path, Path | None]]:
    """Before any work: the inputs (``expand_inputs``) with each picture's --annotate file (None for CSVs
    or without ``annotate``), after checking every output (:mod:`maskgen.paths`).

    Refused (:class:`maskgen.paths.PathError`): ``output`` or ``annotate`` being an input, inside an input
    folder, or (``annotate``) holding an input; two pictures with one annotated name; ``output`` being one
    of the annotated files; and an existing annotated file that an earlier run did not write (listed
    in ``ANNOTATE/.fer-models-annotated.json`` with the same sha256): the user's own files are never replaced.
    ``models``: (option, path) of the model files read (checkpoint, ONNX, shipped weights), inputs too.
    """
    from maskgen.paths import Output, PathError, check_input_file, check_outputs, check_targets, printable

    paths = [Path(p) for p in paths]
    for p in paths:  # a FIFO given was "no such file or folder" (walk skips one inside a folder)
        if not p.is_dir():
            check_input_file(p, "input")
    files = expand_inputs(paths)
    for path, _ in files:  # records name each file as text: a folder named in bytes that are not UTF-8 failed the
        try:               # output after every picture was scored ("'utf-8' codec can't encode ...")
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            raise PathError(f"{printable(path)}: the name is not valid UTF-8 text; rename it (predict records "
                            "file names as UTF-8 text)") from None
    outs = ([Output("-o", Path(output))] if output is not None else []) + \
           ([Output("--annotate", Path(annotate), folder=True)] if annotate is not None else [])
    # each file found is an input too: a picture in a folder may be a symlink to a file outside it (-o that file)
    check_outputs([("input", p) for p in paths] + [("input", path) for path, _ in files] + list(models), outs)
    if annotate is None:
        return [(path, rel, None) for path, rel in files]
    folder = Path(annotate)
    planned = [(path, rel, None if _is_csv(path) else folder / annotated_name(rel)) for path, rel in files]
    pairs = [(path, target) for path, _, target in planned if target is not None]
    check_targets(pairs, "--annotate", may_replace=annotation_record(folder).may_replace)
    if output is not None and any(Path(output).resolve() == t.resolve() for _, t in pairs):
        raise PathError(f"-o {output} is one of the --annotate pictures: give it another name")
    if output is not None and Path(output).resolve() == (folder / ANNOTATED_RECORD).resolve():
        raise PathError(f"-o {output} is the --annotate folder's record of the pictures it wrote "
                        f"({ANNOTATED_RECORD}); give it another name")
    return planned


def _label_records(records: list[Record], probs: np.ndarray, names: tuple[str, ...]) -> None:
    for rec, p in zip(records, probs):
        rec.label = names[int(np.argmax(p))]
        rec.probabilities = {n: float(v) for n, v in zip(names, p)}


def predict_csv(path: Path, scorer: Scorer) -> Iterator[Record]:
    """Records of every row of a FER2013-format CSV (validated first, like every reader)."""
    from maskgen.dataset import EMOTIONS, read_fer_csv

    table = read_fer_csv(path)
    same_classes = tuple(scorer.class_names) == tuple(EMOTIONS)  # a FER+ model's classes are not the CSV's
    for start in range(0, len(table), BATCH):
        faces = table.images[start:start + BATCH]
        recs = [Record(str(path), "ok", face=0, row=start + k, box=(0.0, 0.0, float(SIDE), float(SIDE)),
                       true_label=EMOTIONS[int(table.emotion[start + k])] if same_classes else None)
                for k in range(len(faces))]
        _label_records(recs, scorer(faces), scorer.class_names)
        yield from recs


def predict_photo(path: Path, scorer: Scorer, aligned: bool = False, detector: Any = None,
                  annotate: Path | None = None) -> tuple[list[Record], np.ndarray | None]:
    """Records of one picture (``no_face`` / ``unreadable`` when so) and the picture with boxes drawn."""
    import cv2

    from maskgen.crops import face_crops
    from maskgen.imageops import to_gray
    from maskgen.io import ImageTooLargeError, read_image

    try:
        image = read_image(path)
    except ValueError as exc:
        status = "too_large" if isinstance(exc, ImageTooLargeError) else "unreadable"
        return [Record(str(path), status, error=str(exc))], None
    if aligned:
        gray = to_gray(image)
        h, w = gray.shape
        crop = gray if (h, w) == (SIDE, SIDE) else cv2.resize(gray, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
        faces = [(crop, (0.0, 0.0, float(w), float(h)))]
    else:
        try:
            marks = detector.detect_faces(image) if detector is not None else None
            faces = [(c.crop, c.box) for c in face_crops(image, marks)]
        except Exception as exc:  # noqa: BLE001 - e.g. too small to search: this picture's record, the rest go on
            return [Record(str(path), "error", error=f"{type(exc).__name__}: {exc}")], None
    if not faces:
        return [Record(str(path), "no_face", error="no face found")], (image if annotate is not None else None)
    recs = [Record(str(path), "ok", face=k, box=tuple(round(v, 1) for v in box)) for k, (_, box) in enumerate(faces)]
    _label_records(recs, scorer(np.stack([c for c, _ in faces])), scorer.class_names)
    drawn = draw_predictions(image, recs) if annotate is not None else None
    return recs, drawn


def draw_predictions(image: np.ndarray, records: list[Record]) -> np.ndarray:
    """RGB copy of ``image`` with each face's box and ``label p`` drawn."""
    import cv2

    out = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image.copy())
    thick = max(1, round(max(out.shape[:2]) / 300))
    for rec in records:
        if rec.box is None or rec.label is None:
            continue
        l, t, r, b = (int(round(v)) for v in rec.box)
        cv2.rectangle(out, (l, t), (r, b), (255, 210, 0), thick)
        text = f"{rec.label} {rec.probabilities[rec.label]:.2f}"
        scale = max(0.4, (r - l) / 160)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        y = max(th + 2, t - 4)
        cv2.rectangle(out, (l, y - th - 2), (l + tw + 2, y + 2), (255, 210, 0), -1)
        cv2.putText(out, text, (l + 1, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return out


def predict_paths(paths: Iterable[str | os.PathLike], scorer: Scorer, *, aligned: bool = False,
                  annotate: str | os.PathLike | None = None, progress: bool = True, detector: Any = None
                  ) -> list[Record]:
    """Records of every face in ``paths`` (pictures, folders, CSVs), in input order."""
    from tqdm.auto import tqdm

    from maskgen.io import write_image

    # every output checked before any work; annotated pictures go to DIR/<path relative to its input folder>
    files = check_predict_outputs(paths, annotate=annotate)
    out_dir = Path(annotate) if annotate is not None else None
    made = annotation_record(out_dir) if out_dir is not None else None
    records: list[Record] = []
    try:
        for path, rel, target in tqdm(files, unit="file", disable=not progress or len(files) < 2, desc="predict"):
            if _is_csv(path):
                records += predict_csv(path, scorer)
                continue
            recs, drawn = predict_photo(path, scorer, aligned=aligned, detector=detector, annotate=out_dir)
            records += recs
            if out_dir is not None and target is not None and drawn is not None:
                write_image(target, drawn)
                made.add(target)
    finally:  # what this run wrote, so that a rerun may replace it (and nothing else)
        if made is not None:
            made.save()
    return records


def format_records(records: list[Record], class_names: tuple[str, ...], fmt: str = "csv") -> str:
    """CSV (a header, one row per record) or JSON lines."""
    rows = [r.flat(class_names) for r in records]
    if fmt == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows)
    if fmt != "csv":
        raise ValueError(f"format must be csv or jsonl, not {fmt!r}")
    buf = io.StringIO()
    fields = list(Record("", "ok").flat(class_names))
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else (f"{v:.6f}" if isinstance(v, float) and k.startswith("p_") else v))
                         for k, v in row.items()})
    return buf.getvalue()


def summarize(records: list[Record]) -> str:
    """One line: faces, files without a face or unreadable, and accuracy where true labels exist."""
    ok = [r for r in records if r.status == "ok"]
    none = [r.file for r in records if r.status == "no_face"]
    bad = [r.file for r in records if r.status == "unreadable"]
    large = [r.file for r in records if r.status == "too_large"]
    errors = [r.file for r in records if r.status == "error"]
    parts = [f"{len(ok)} face(s) scored"]
    if none:
        parts.append(f"{len(none)} picture(s) without a face: " + ", ".join(none[:5]) + (" ..." if len(none) > 5 else ""))
    if bad:
        parts.append(f"{len(bad)} unreadable: " + ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""))
    if large:
        parts.append(f"{len(large)} too large: " + ", ".join(large[:5]) + (" ..." if len(large) > 5 else ""))
    if errors:
        parts.append(f"{len(errors)} failed: " + ", ".join(errors[:5]) + (" ..." if len(errors) > 5 else ""))
    labelled = [r for r in ok if r.true_label is not None]
    if labelled:
        acc = np.mean([r.label == r.true_label for r in labelled])
        parts.append(f"accuracy against the CSV labels {acc:.4f} on {len(labelled)} row(s)")
    return "; ".join(parts)


__all__ = ["FAILED_STATUSES", "Record", "Scorer", "STATUSES", "ANNOTATED_RECORD", "annotated_name", "annotation_record",
           "check_predict_outputs", "draw_predictions", "expand_inputs", "format_records", "predict_csv",
           "predict_paths", "predict_photo", "summarize"]
