"""FER2013-format CSV files: read, validate, write.

A FER2013-format file has the columns ``emotion,pixels`` and usually ``Usage``; other
columns (e.g. MFER2013's ``source`` and ``masked``) are kept as they are. ``pixels`` holds
48*48 = 2304 space-separated integers 0..255, row-major.

Reading validates the whole file before any work starts and raises :class:`FerFormatError`
naming the file, the 1-based line number and what is wrong. Writing keeps the input's
formatting (column order, quoting of the pixel field, newline style), so a row whose image
did not change is written byte-identical to its input line.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskgen.io import atomic_write

SIDE = 48
PIXELS = SIDE * SIDE
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
USAGES = ("Training", "PublicTest", "PrivateTest")
REQUIRED_COLUMNS = ("emotion", "pixels")
# decimal text of 0..255, used to format pixel strings quickly
_PIXEL_TEXT = np.array([str(v) for v in range(256)], dtype=object)


class FerFormatError(ValueError):
    """A FER2013-format file is malformed; the message names file, line and problem."""

    def __init__(self, path: str | os.PathLike, message: str, line: int | None = None):
        where = f"{path}" if line is None else f"{path}, line {line}"
        super().__init__(f"{where}: {message}")
        self.path = Path(path)
        self.line = line


@dataclass
class FerTable:
    """An in-memory FER2013-format file.

    Attributes:
        path: the file it was read from.
        images: (N, 48, 48) uint8, row-major as in the file.
        emotion: (N,) int64 labels 0..6.
        usage: (N,) object array of str, or None when the file has no ``Usage`` column.
        columns: the file's column names in order.
        extra: the other columns' raw text per row (column name -> list of N str).
        lines: each row's original text without its line ending (used to write unchanged rows
            byte-identically); empty for tables built in memory.
        newline: the file's line ending ("\\n" or "\\r\\n").
        quoted_pixels: whether the pixel field was written in double quotes.
        trailing_newline: whether the file ended with a line ending.
    """

    path: Path
    images: np.ndarray
    emotion: np.ndarray
    usage: np.ndarray | None
    columns: list[str] = field(default_factory=lambda: ["emotion", "pixels", "Usage"])
    extra: dict[str, list[str]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list, repr=False)
    newline: str = "\n"
    quoted_pixels: bool = False
    trailing_newline: bool = True

    def __len__(self) -> int:
        return int(self.images.shape[0])



def _read_text(path: Path) -> str:
    """Whole file as text; gzip detected by magic bytes; clear errors for bad gzip/encoding."""
    if not path.is_file():
        raise FerFormatError(path, "no such file" if not path.exists() else
                             "not a regular file (a folder, FIFO or device): only regular files are read")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise FerFormatError(path, f"corrupt or truncated gzip data ({exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FerFormatError(path, f"not UTF-8 text (byte {exc.start})") from None


def _split_lines(text: str) -> tuple[list[str], str, bool]:
    """Lines without endings, the newline style, and whether the text ended with one."""
    newline = "\r\n" if "\r\n" in text[: 1 << 16] else "\n"
    trailing = text.endswith("\n")
    body = text[: -len(newline)] if text.endswith(newline) else text.rstrip("\n")
    lines = body.split(newline) if body else []
    if newline == "\n" and any(line.endswith("\r") for line in lines[:1]):
        lines = [line.rstrip("\r") for line in lines]
    return lines, newline, trailing


def parse_pixel_strings(strings: Sequence[str], path: Path, first_line: int = 2) -> np.ndarray:
    """Parse pixel strings into (N, 48, 48) uint8.

    Each string must hold exactly 2304 decimal integers 0..255 separated by spaces.
    ``first_line`` is the file line number of ``strings[0]``, for error messages. The fast
    path parses everything in one C call; only a malformed file takes the per-row path that
    finds the first bad row.
    """
    n = len(strings)
    strs = [s.strip() for s in strings]
    joined = " ".join(strs)
    raw = joined.encode("ascii") if joined.isascii() else None
    well_formed = (
        raw is not None
        and all(s.count(" ") == PIXELS - 1 for s in strs)
        and not raw.translate(None, delete=b"0123456789 ")
        and not _has_long_number(raw)
    )
    if well_formed:
        # every token is 1-3 digits, so int16 holds it exactly (4x less memory than int64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            values = np.fromstring(joined, dtype=np.int16, sep=" ")
        well_formed = values.size == n * PIXELS
    if not well_formed:
        values = _parse_rows_slowly(strs, path, first_line)
    out_of_range = values > 255
    if out_of_range.any():
        k = int(np.argmax(out_of_range))
        raise FerFormatError(path, f"pixels: value {values[k]} is outside 0..255", first_line + k // PIXELS)
    return values.astype(np.uint8).reshape(n, SIDE, SIDE)


def _has_long_number(raw: bytes) -> bool:
    """Does ``raw`` (digits and spaces only) hold a run of 4 or more digits?

    Such a token would not fit int16 (and no pixel value needs it); numpy on the bytes is
    5x faster than a regular expression over the 300 MB of FER2013's pixel strings.
    """
    data = np.frombuffer(raw, np.uint8)
    step = 1 << 24  # slices overlapping by 3 bytes keep the temporaries small
    for start in range(0, max(len(data) - 3, 0), step):
        digit = data[start:start + step + 3] != 32
        run = digit[:-3] & digit[1:-2]
        run &= digit[2:-1]
        run &= digit[3:]
        if run.any():
            return True
    return False


def _parse_rows_slowly(strs: Sequence[str], path: Path, first_line: int) -> np.ndarray:
    """Row-by-row parse that raises on the first malformed row (file order)."""
    rows = []
    for k, s in enumerate(strs):
        tokens = s.split()
        for token in tokens:
            if not (token.isascii() and token.isdigit()):
                raise FerFormatError(path, f"pixels: {token[:20]!r} is not an integer 0..255", first_line + k)
        if len(tokens) != PIXELS:
            raise FerFormatError(
                path, f"pixels: expected {PIXELS} values (48x48), found {len(tokens)}", first_line + k
            )
        rows.append(np.array(tokens, dtype=np.int64))
    return np.concatenate(rows) if rows else np.zeros(0, np.int64)


def read_fer_csv(path: str | os.PathLike) -> FerTable:
    """Read and validate a FER2013-format CSV (``.csv`` or gzip-compressed).

    Raises:
        FerFormatError: missing columns, wrong field count, bad label, unknown ``Usage``,
            wrong pixel count, non-numeric or out-of-range pixel, empty file, bad gzip.
    """
    path = Path(path)
    text = _read_text(path)
    lines, newline, trailing = _split_lines(text)
    if not lines or not lines[0].strip():
        raise FerFormatError(path, "empty file (expected a header line with emotion,pixels[,Usage])", 1)
    header = next(csv.reader([lines[0]]))
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise FerFormatError(
            path, f"missing column(s) {', '.join(missing)}; header is {','.join(header)}", 1
        )
    if len(set(header)) != len(header):
        raise FerFormatError(path, f"duplicate column names in header {','.join(header)}", 1)
    rows = lines[1:]
    if not rows:
        raise FerFormatError(path, "no data rows after the header", 1)
    ncol = len(header)
    i_emotion, i_pixels = header.index("emotion"), header.index("pixels")
    fields: list[list[str]] = []
    for k, line in enumerate(rows):
        parts = next(csv.reader([line])) if '"' in line else line.split(",")
        if len(parts) != ncol:
            if not line.strip():
                raise FerFormatError(path, "empty line", k + 2)
            raise FerFormatError(path, f"expected {ncol} fields ({','.join(header)}), found {len(parts)}", k + 2)
        fields.append(parts)
    quoted = rows[0].split(",")[i_pixels].startswith('"') if len(rows[0].split(",")) == ncol else False
    columns = list(zip(*fields))
    emotion_text = columns[i_emotion]
    emotion = np.empty(len(rows), np.int64)
    for k, value in enumerate(emotion_text):
        v = value.strip()
        if not (len(v) == 1 and "0" <= v <= "6"):
            raise FerFormatError(path, f"emotion: {value!r} is not a label 0..6", k + 2)
        emotion[k] = ord(v) - ord("0")
    usage = None
    if "Usage" in header:
        usage_text = [u.strip() for u in columns[header.index("Usage")]]
        usage = np.array(usage_text, dtype=object)
        known = np.isin(usage, USAGES)
        if not known.all():
            k = int(np.flatnonzero(~known)[0])
            raise FerFormatError(
                path, f"Usage: unknown value {usage_text[k]!r} (expected one of {', '.join(USAGES)})", k + 2
            )
    images = parse_pixel_strings([p.strip('"').strip() for p in columns[i_pixels]], path)
    extra = {
        name: list(columns[i]) for i, name in enumerate(header) if name not in ("emotion", "pixels", "Usage")
    }
    return FerTable(
        path=path, images=images, emotion=emotion, usage=usage, columns=header, extra=extra,
        lines=rows, newline=newline, quoted_pixels=quoted, trailing_newline=trailing,
    )


def take_rows(table: FerTable, rows: Sequence[int] | np.ndarray) -> FerTable:
    """The table of ``rows`` (int indices, in the order given) of ``table``, in the same format.

    Written with :func:`write_fer_csv`, each row keeps its input line byte for byte (e.g. the
    ``PrivateTest`` rows of FER2013 as a file of their own:
    ``take_rows(t, np.flatnonzero(t.usage == "PrivateTest"))``).
    """
    idx = np.asarray(rows, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= len(table)):
        raise IndexError(f"rows must lie in 0..{len(table) - 1}")
    return FerTable(
        path=table.path, images=table.images[idx], emotion=table.emotion[idx],
        usage=None if table.usage is None else table.usage[idx], columns=list(table.columns),
        extra={name: [col[i] for i in idx] for name, col in table.extra.items()},
        lines=[table.lines[i] for i in idx] if table.lines else [], newline=table.newline,
        quoted_pixels=table.quoted_pixels, trailing_newline=table.trailing_newline,
    )


def format_pixels(image: np.ndarray) -> str:
    """(48, 48) uint8 image -> FER2013 pixel string (space-separated decimals)."""
    flat = np.asarray(image, np.uint8).reshape(-1)
    if flat.size != PIXELS:
        raise ValueError(f"expected {PIXELS} pixels, got {flat.size}")
    return " ".join(_PIXEL_TEXT[flat].tolist())


def _open_text_out(tmp: Path, final: Path) -> io.TextIOBase:
    if final.suffix == ".gz":
        # mtime=0 keeps gzip output byte-identical between runs
        return io.TextIOWrapper(gzip.GzipFile(filename="", mode="wb", fileobj=open(tmp, "wb"), mtime=0),
                                encoding="utf-8", newline="")
    return open(tmp, "w", encoding="utf-8", newline="")


def format_row(table: FerTable, row: int, image: np.ndarray | None = None,
               overrides: Mapping[str, str] | None = None) -> str:
    """One data line (without ending) for ``row``, with the pixel field from ``image``.

    With no image and no overrides, the original line is returned unchanged.
    """
    if image is None and not overrides and table.lines:
        return table.lines[row]
    values: dict[str, str] = {}
    if table.lines:
        parts = table.lines[row].split(",")
        if len(parts) != len(table.columns):
            parts = next(csv.reader([table.lines[row]]))
            parts = [_csv_field(p) for p in parts]
        values = dict(zip(table.columns, parts))
    else:
        values["emotion"] = str(int(table.emotion[row]))
        if table.usage is not None:
            values["Usage"] = str(table.usage[row])
        for name, col in table.extra.items():
            values[name] = _csv_field(col[row])
    if image is not None:
        pix = format_pixels(image)
        values["pixels"] = f'"{pix}"' if table.quoted_pixels else pix
    elif "pixels" not in values:
        values["pixels"] = format_pixels(table.images[row])
    for name, value in (overrides or {}).items():
        values[name] = _csv_field(value)
    return ",".join(values[c] for c in table.columns)


def _csv_field(value: str) -> str:
    value = str(value)
    if any(ch in value for ch in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def write_lines(path: str | os.PathLike, header: Sequence[str], lines: Sequence[str], *,
                newline: str = "\n", trailing_newline: bool = True) -> None:
    """Atomically write a header and pre-formatted data lines (``.gz`` names are gzip-compressed)."""
    final = Path(path)
    with atomic_write(final) as tmp:
        with _open_text_out(tmp, final) as out:
            out.write(",".join(header))
            for line in lines:
                out.write(newline)
                out.write(line)
            if trailing_newline:
                out.write(newline)


def write_fer_csv(path: str | os.PathLike, table: FerTable, images: np.ndarray | None = None, *,
                  changed: np.ndarray | None = None) -> None:
    """Write ``table`` (with ``images`` replacing its pixels) atomically in the input's format.

    Args:
        images: (N, 48, 48) uint8 or None to keep the table's images.
        changed: (N,) bool; rows not marked changed are written byte-identical to their input
            line. Default: rows whose image differs from ``table.images``.
    """
    n = len(table)
    if images is not None:
        images = np.asarray(images)
        if images.shape != (n, SIDE, SIDE) or images.dtype != np.uint8:
            raise ValueError(f"images must be ({n}, 48, 48) uint8, got {images.shape} {images.dtype}")
        if changed is None:
            changed = (images != table.images).reshape(n, -1).any(axis=1)
    lines = [
        format_row(table, i, images[i] if images is not None and changed[i] else None)
        for i in range(n)
    ]
    write_lines(path, table.columns, lines, newline=table.newline, trailing_newline=table.trailing_newline)
