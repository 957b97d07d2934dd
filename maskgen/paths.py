"""One layer for paths: how every command of ``maskgen`` and ``fer-models`` finds its inputs and
checks its outputs, before any work.

- :func:`walk` is the one walker for files and folders given on a command line, and
  :func:`read_list` the one reader of list files (a ``path`` column relative to a root). Every
  input is resolved; a list entry must lie inside its root (an absolute path, or ``..`` leaving
  the root, is refused with the list file, its line and the entry), and ``./a.png`` and ``a.png``
  are one entry (listing it twice is refused).
- :func:`check_outputs` compares every output of a command (``-o``, ``--metadata``, the manifest,
  ``--annotate``, report folders) with every input and with each other: the same file, an output
  inside an input folder, an input inside an output folder, and two outputs that are the same
  file or nested folders are refused. :func:`check_targets` refuses two inputs that would write
  the same output file (``a/x.png b/x.png -o out``).
- :func:`check_write_target` refuses to replace anything that is not a regular file: a symlink,
  FIFO, device, socket or folder. It runs before any work (inside :func:`check_outputs` /
  :func:`check_targets`) and again in :func:`maskgen.io.atomic_write`, which every write goes through.
  A symlink is refused even when it points to a regular file (write to the real path instead):
  replacing the link would lose it, and writing through it would write somewhere the command
  line does not name.

Every refusal is a :class:`PathError` (a ``ValueError``) with one line naming the path and the problem.
This module imports nothing from maskgen (``io`` imports it).
"""
from __future__ import annotations

import csv
import os
import posixpath
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

__all__ = ["InputFile", "ListEntry", "Output", "PathError", "check_input_file", "check_outputs", "check_targets",
           "check_write_target", "describe", "is_inside", "normalize_entry", "printable", "read_list", "walk"]


class PathError(ValueError):
    """A refused input or output path (one line: the path and the problem)."""


# ---------------------------------------------------------------- what a path is
def describe(path: str | os.PathLike) -> str | None:
    """What is at ``path`` without following a final symlink: None (nothing), ``"a regular file"``,
    ``"a folder"``, ``"a symlink"``, ``"a FIFO"``, ``"a character device"``, ``"a block device"``,
    ``"a socket"``."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # a parent is a file: nothing can be there
        return None
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symlink"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"  # pragma: no cover - door files and the like


def check_write_target(path: str | os.PathLike, role: str = "output") -> None:
    """Refuse to write ``path`` unless it is absent or a regular file (never a symlink, FIFO, device,
    socket or folder: an atomic rename would replace it). Raises :class:`PathError`."""
    kind = describe(path)
    if kind is None or kind == "a regular file":
        return
    target = ""
    if kind == "a symlink":
        target = f" (to {os.readlink(path)})"
    raise PathError(f"{role} {path} is {kind}{target}: maskgen writes only regular files and never replaces "
                    f"{kind}; name a regular file")


def check_input_file(path: str | os.PathLike, role: str = "input") -> None:
    """Refuse, before reading it, an input file that exists but is not a regular file once links are followed
    (a FIFO would block the read forever, a device could be endless). A missing file is left to the reader,
    which names it. Raises :class:`PathError`."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else describe(os.path.realpath(path)) or "not a regular file"
        raise PathError(f"{role} {printable(path)} is {kind}, not a regular file: only regular files are read")


def printable(path: str | os.PathLike) -> str:
    """``path`` as text that can always be printed: bytes that are not UTF-8 shown as ``\\xff``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _check_name(given: Path, rel: str) -> None:
    """Refuse a picture whose name is not valid UTF-8 text: sidecars, list files and keys hold names as text."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise PathError(f"{printable(given)}: the name '{printable(rel)}' is not valid UTF-8 text; rename it "
                        "(maskgen records picture names as UTF-8 text)") from None


def is_inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies under it (both resolved)."""
    return path == folder or folder in path.parents


def _resolve(path: str | os.PathLike) -> Path:
    return Path(path).resolve()


def _same_file(a: Path, b: Path) -> bool:
    """Equal resolved paths, or two names of one file (a hard link)."""
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# ---------------------------------------------------------------- inputs
@dataclass(frozen=True)
class InputFile:
    """One input file: ``path`` as found (the argument, or the argument joined with the walk),
    ``resolved`` (absolute, links followed), ``rel`` (its name relative to the folder given, or the
    bare file name; '/'-separated: outputs are named by it) and ``root`` (the folder given, resolved;
    the file's folder for a file given by itself)."""

    path: Path
    resolved: Path
    rel: str
    root: Path


def _matches(name: str, suffixes: Sequence[str]) -> bool:
    name = name.lower()
    return any(name.endswith(s) for s in suffixes)


def walk(paths: Iterable[str | os.PathLike], suffixes: Sequence[str], *,
         exclude: Iterable[str | os.PathLike] = ()) -> list[InputFile]:
    """Files and folders -> every input file, folders walked recursively in sorted order.

    A folder contributes its files whose names end with one of ``suffixes`` (lower case, e.g.
    ``(".png", ".csv.gz")``); a file given by itself is taken whatever its name. Files under any
    of ``exclude`` (folders) are skipped. The same file reached twice under the same name (``a/x.png``
    and ``a``) is kept once.

    Raises:
        FileNotFoundError: a path that does not exist (naming it).
        PathError: a file to take whose name is not valid UTF-8 (naming the folder and the name).
    """
    skip = [_resolve(e) for e in exclude]
    out: list[InputFile] = []
    seen: set[tuple[Path, str]] = set()
    for given in map(Path, paths):
        if given.is_dir():
            root = _resolve(given)
            found = []
            for f in sorted(given.rglob("*")):  # sorted by path parts (folder builds are ordered so)
                if not f.is_file() or not _matches(f.name, suffixes):
                    continue
                if skip and any(is_inside(_resolve(f.parent), s) for s in skip):
                    continue
                found.append(InputFile(f, _resolve(f), f.relative_to(given).as_posix(), root))
        elif given.is_file():
            resolved = _resolve(given)
            found = [InputFile(given, resolved, given.name, resolved.parent)]
        elif given.exists():
            raise PathError(f"{printable(given)} is not a regular file or a folder (a FIFO or device): only "
                            "regular files are read")
        else:
            raise FileNotFoundError(f"no such file or folder: {given}")
        for item in found:
            _check_name(given, item.rel)
            if (item.resolved, item.rel) not in seen:
                seen.add((item.resolved, item.rel))
                out.append(item)
    return out


@dataclass(frozen=True)
class ListEntry:
    """One row of a list file: ``rel`` (normalized, '/'-separated, inside the root), its ``line``
    and the row's other columns."""

    rel: str
    line: int
    row: dict[str, str]


def normalize_entry(entry: str) -> str | None:
    """A list entry as a normalized relative path (``./a//b.png`` -> ``a/b.png``), or None if it is
    absolute (``/x``, ``C:/x``, ``//host/x``) or leaves its root (``../x``, ``a/../../x``)."""
    text = entry.strip().replace("\\", "/")
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).drive:
        return None
    norm = posixpath.normpath(text)
    if norm == ".." or norm.startswith("../") or norm.startswith("/"):
        return None
    return norm


def read_list(list_file: str | os.PathLike, root: str | os.PathLike, suffixes: Sequence[str],
              column: str = "path") -> list[ListEntry]:
    """Entries of a list file (a CSV with a ``column`` column of paths relative to ``root``), in file order.

    Raises:
        PathError: no such column, an empty entry, an absolute path or one leaving ``root``, an entry
            listed twice (also as ``./a.png`` and ``a.png``), a missing file, or a name not ending in one of
            ``suffixes``; each names the list file and line.
    """
    list_file, root = Path(list_file), Path(root)
    check_input_file(list_file, "--list")
    entries: list[ListEntry] = []
    seen: dict[str, int] = {}
    with open(list_file, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise PathError(f"{list_file}, line 1: a list file needs a {column!r} column, got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            raw = (row.get(column) or "").strip()
            if not raw:
                raise PathError(f"{list_file}, line {line}: empty path")
            rel = normalize_entry(raw)
            if rel is None:
                raise PathError(f"{list_file}, line {line}: {raw} is not inside {root} (list entries are "
                                f"relative to it: no absolute paths, no '..' leaving it)")
            if rel in seen:
                again = "" if rel == raw else f" ({raw} is {rel})"
                raise PathError(f"{list_file}, line {line}: {rel} listed twice{again} (first on line {seen[rel]})")
            if not (root / rel).is_file():
                raise PathError(f"{list_file}, line {line}: {root / rel} not found")
            if not _matches(rel, suffixes):
                raise PathError(f"{list_file}, line {line}: {rel} is not an image ({', '.join(suffixes)})")
            seen[rel] = line
            entries.append(ListEntry(rel, line, {k: (v or "") for k, v in row.items() if isinstance(k, str)}))
    return entries


# ---------------------------------------------------------------- outputs
@dataclass(frozen=True)
class Output:
    """An output a command will write: ``role`` names it in messages (``-o``, ``--metadata``,
    ``manifest``, ``--annotate``); ``folder``: a folder the command writes files into."""

    role: str
    path: Path
    folder: bool = False


def check_outputs(inputs: Iterable[tuple[str, str | os.PathLike | None]], outputs: Iterable[Output]) -> None:
    """Refuse, before any work, outputs that could lose an input or another output.

    ``inputs``: (role, path) pairs (None paths are skipped); a path may be a file or a folder.
    Refused: an output that is an input (same file, hard links included); an output inside an input
    folder; an input inside an output folder; two outputs naming one file; two output folders one
    inside the other (or the same); a file output that exists and is not a regular file (see
    :func:`check_write_target`); a folder output that exists and is not a folder.

    Raises:
        PathError: naming both paths and the problem.
    """
    ins = [(role, Path(p), _resolve(p)) for role, p in inputs if p is not None]
    outs = [(o, _resolve(o.path)) for o in outputs]
    for o, where in outs:
        if o.folder:
            if where.exists() and not where.is_dir():
                raise PathError(f"{o.role} {o.path} is {describe(where) or 'not a folder'}, not a folder")
        else:
            check_write_target(o.path, o.role)
        for role, given, at in ins:
            if _same_file(where, at):
                raise PathError(f"{o.role} {o.path} is the {role} {given}: it would overwrite the input; "
                                f"choose another path")
            if at.is_dir() and is_inside(where, at):
                raise PathError(f"{o.role} {o.path} is inside the {role} folder {given}: an output must not be "
                                f"an input folder or inside it")
            if o.folder and is_inside(at, where):
                raise PathError(f"the {role} {given} is inside the {o.role} folder {o.path}: "
                                f"choose an output folder that holds no input")
    for k, (a, wa) in enumerate(outs):
        for b, wb in outs[k + 1:]:
            if _same_file(wa, wb):
                raise PathError(f"{a.role} and {b.role} both name {b.path}: give them different paths")
            if a.folder and b.folder and (is_inside(wa, wb) or is_inside(wb, wa)):
                raise PathError(f"{a.role} folder {a.path} and {b.role} folder {b.path} overlap: "
                                f"give folders apart")


def check_targets(pairs: Iterable[tuple[str | os.PathLike, str | os.PathLike]], role: str = "output",
                  may_replace: Callable[[Path], bool] | None = None,
                  inputs: Iterable[tuple[str, str | os.PathLike | None]] = ()) -> None:
    """Refuse, before any work, per-input output files that clash or cannot be written.

    ``pairs``: (source file, the file it will write). Refused: two different sources writing one
    target (``a/x.png`` and ``b/x.png`` into ``out/x.png``); a target that exists and is not a regular
    file; a target that is a source; and, when ``may_replace`` is given, an existing target for which
    it returns False (a file the command did not make); and a target that a symlinked folder of the output
    leads into one of the ``inputs`` folders ((role, path) pairs: ``out/train`` a link to ``src/train``).
    """
    folders = [(r, Path(p), _resolve(p)) for r, p in inputs if p is not None and Path(p).is_dir()]
    by_target: dict[Path, Path] = {}
    pairs = [(Path(s), Path(t)) for s, t in pairs]
    sources = {_resolve(s): s for s, _ in pairs}
    inodes: dict[tuple[int, int], Path] | None = None  # of the sources, made when a target exists
    for src, target in pairs:
        where = _resolve(target)
        first = by_target.setdefault(where, src)
        if first is not src and _resolve(first) != _resolve(src):
            raise PathError(f"{first} and {src} would both write {target}: give their folders separately "
                            f"or rename one")
        check_write_target(target, role)
        for r, given, at in folders:
            if is_inside(where, at):
                raise PathError(f"{role} {target} lies in the {r} folder {given} (through a symlink): "
                                f"a command never writes into its input")
        if not where.exists():
            continue
        if inodes is None:
            inodes = {}
            for r, s in sources.items():
                st = os.stat(r)
                inodes[(st.st_dev, st.st_ino)] = s
        st = os.stat(where)
        same = sources.get(where) or inodes.get((st.st_dev, st.st_ino))
        if same is not None:
            raise PathError(f"{role} {target} is the input {same}: a command never writes onto its input")
        if may_replace is not None and not may_replace(Path(target)):
            raise PathError(f"{role} {target} exists and was not written by this tool: remove it or choose "
                            f"another folder")
