"""How both command lines (``maskgen`` and ``fer-models``) end: exit codes and one-line errors.

One convention, used by both click groups through :class:`SafeGroup`:

- exit 0: the command did its work;
- exit 3 (:data:`EXIT_PARTIAL`): a batch command (``maskgen mask-image``, ``fer-models predict``)
  went over every item, but some failed: each is listed, the others' outputs are written
  (:func:`exit_partial`);
- exit 2: bad input, or an output that cannot be written: ONE line on stderr,
  ``PROG: error: MESSAGE``, naming the file and the problem (click's own usage errors,
  such as an unknown option, also exit 2, with click's usage hint);
- exit 130: interrupted (Ctrl-C); every write goes through :func:`maskgen.io.atomic_write`,
  so nothing is left half-written;
- anything else is a bug: Python's traceback and exit 1, on purpose.

Warnings (``warnings.warn``, e.g. ``maskgen.io.ImageConversionWarning``) raised while a command
runs print as one line, ``PROG: warning: MESSAGE``, as does :func:`warn`.

Bad input is a closed family, :data:`BAD_INPUT`: :class:`ValueError` and its subclasses
(raised by validation code: :class:`BadInput`, ``maskgen.dataset.FerFormatError``,
``fer_models.checkpoint.CheckpointError``, ...), :class:`OSError` (a missing file, no
permission, a read-only file system, a full disk, a directory where a file belongs, a
scheduler that cannot be reached), :class:`MissingExtra` (an optional extra to install) and
:class:`FloatingPointError` (training diverged: the loss of an epoch was not finite, which the
options or data made; the message names the epoch).
``KeyError``, ``TypeError``, ``IndexError``, ``AttributeError`` and the rest are bugs and
stay tracebacks. Code that finds bad input
raises :class:`BadInput` (or a ValueError subclass of its own) with a message that names
the file and the problem; this module only prints it.

``fer_models`` imports this module; nothing here imports ``fer_models``.
"""
from __future__ import annotations

import errno
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from maskgen.paths import Output

EXIT_BAD_INPUT = 2
#: some items of a batch failed (each listed), the others were done and written
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130
#: the --help epilog of the batch commands that can end with EXIT_PARTIAL
PARTIAL_EPILOG = (f"Exit status: 0 done; {EXIT_PARTIAL} some items failed (each listed; the others were written); "
                  f"{EXIT_BAD_INPUT} bad input, refused before any work. See docs/safety.md.")
#: ctx.meta key of the command line's name while a command runs
_PROG_KEY = "maskgen.cli_errors.prog"
#: the -h / --help convention of both command lines (subcommands inherit it)
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class BadInput(ValueError):
    """Input the command cannot use: the message names the file (or option) and the problem."""


class MissingExtra(ImportError):
    """An optional dependency the command needs is not installed: the message says what to install."""


#: what a command may raise for bad input (module docstring); everything else is a bug
#: (FloatingPointError: training diverged, a non-finite loss the options or data made, named with its epoch)
BAD_INPUT: tuple[type[BaseException], ...] = (ValueError, OSError, MissingExtra, FloatingPointError)


def describe(exc: BaseException) -> str:
    """One line for a :data:`BAD_INPUT` exception: an OSError names its path(s) and the system's reason."""
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = exc.strerror or (errno.errorcode.get(exc.errno, "") if exc.errno else "") or str(exc)
        if exc.errno == errno.EISDIR:
            reason = "is a folder, not a file"
        where = os.fsdecode(exc.filename)
        if exc.filename2 is not None:
            where += f" -> {os.fsdecode(exc.filename2)}"
        text = f"{where}: {reason}"
    elif isinstance(exc, UnicodeDecodeError):  # whoever read the file should have named it
        text = f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    else:
        text = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.errno is not None and exc.strerror and exc.strerror not in text:
            text = f"{exc.strerror}: {text}"
    return " ".join(text.split())  # one line


def _prog() -> str:
    """The running command line's name (``maskgen`` / ``fer-models``); the script's name outside a command."""
    ctx = click.get_current_context(silent=True)
    prog = ctx.meta.get(_PROG_KEY) if ctx is not None else None
    return prog or os.path.basename(sys.argv[0]) or "maskgen"


def warn(message: str) -> None:
    """Print ``PROG: warning: MESSAGE`` (one line) on stderr: what the command accepted but the user should know."""
    click.echo(f"{_prog()}: warning: {' '.join(str(message).split())}", err=True)


def exit_partial(message: str | None = None) -> NoReturn:
    """End a batch command whose every item was tried but some failed (each already listed): ``PROG: MESSAGE``
    on stderr, then exit :data:`EXIT_PARTIAL`."""
    if message:
        click.echo(f"{_prog()}: {message}", err=True)
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        raise SystemExit(EXIT_PARTIAL)
    ctx.exit(EXIT_PARTIAL)


def at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type`` for the scripts: an integer >= ``low`` (argparse prints the one-line usage error)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def run_script(main: Callable[[], Any]) -> None:
    """Run a script's ``main()`` (``benchmarks/``, ``scripts/``) ending by the convention of the command lines:
    :data:`BAD_INPUT` as one line ``SCRIPT: error: MESSAGE`` and exit 2, Ctrl-C as exit 130; anything else
    is a bug and stays a traceback."""
    prog = os.path.basename(sys.argv[0]) or "script"
    try:
        main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing was left half-written", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except BAD_INPUT as exc:
        print(f"{prog}: error: {describe(exc)}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """``warnings.showwarning`` while a command runs: ``PROG: warning: MESSAGE``, not ``file:line: Category``."""
    warn(str(message))


def _invoke(prog: str, ctx: click.Context, invoke: Callable[[click.Context], Any]) -> Any:
    """``invoke(ctx)``, ending by the module's convention; warnings print as ``PROG: warning: MESSAGE``."""
    ctx.meta.setdefault(_PROG_KEY, prog)
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return invoke(ctx)
    except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise
    except KeyboardInterrupt:
        click.echo(f"{prog}: interrupted; nothing was left half-written", err=True)
        ctx.exit(EXIT_INTERRUPTED)
    except BAD_INPUT as exc:
        click.echo(f"{prog}: error: {describe(exc)}", err=True)
        ctx.exit(EXIT_BAD_INPUT)
    finally:
        warnings.showwarning = shown


class SafeCommand(click.Command):
    """A command that ends by the module's convention also when invoked on its own (tests, embedding)."""

    #: the command line's name in messages; set by :class:`SafeGroup` when the command is added
    prog: str = ""

    def invoke(self, ctx: click.Context) -> Any:
        return _invoke(self.prog or ctx.find_root().info_name or self.name or "", ctx, super().invoke)


class SafeGroup(click.Group):
    """A click group whose commands end by the module's convention (exit 2 / 130, one line)."""

    command_class = SafeCommand

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if isinstance(cmd, SafeCommand):
            cmd.prog = self.name or ""
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:  # commands added that are not SafeCommands
        return _invoke(self.name or "", ctx, super().invoke)


def check_writable(path: str | os.PathLike, option: str = "-o", folder: bool = False) -> None:
    """Refuse, before any work, an output that cannot be written: a file output naming a folder (or a folder
    output naming a file), a path under a regular file, or a folder that does not let us write (a read-only
    mount, no permission).

    Raises:
        BadInput: naming ``option``, the path and the problem.
    """
    given = os.fspath(path)
    path = os.path.abspath(given)
    if os.path.isdir(path) and not folder:
        raise BadInput(f"{option} {given}: is a folder; give a file name")
    if os.path.exists(path) and folder and not os.path.isdir(path):
        raise BadInput(f"{option} {given}: is a file, not a folder")
    parent = path if folder and os.path.isdir(path) else os.path.dirname(path)
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise BadInput(f"{option} {given}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"{option} {given}: cannot write in {parent} (read-only or no permission)")


def check_output_paths(inputs: Iterable[tuple[str, str | os.PathLike | None]], outputs: Iterable[Output], *,
                       folders_may_hold_inputs: bool = False) -> None:
    """Before any work, the outputs of a command: none is an input, lies in an input folder, holds an input or
    names another output (:func:`maskgen.paths.check_outputs`), and each can be written (:func:`check_writable`).

    Args:
        inputs: (role, path or None) pairs, e.g. ``[("input", csv), ("--mask-spec", spec)]``.
        outputs: :class:`maskgen.paths.Output` items.
        folders_may_hold_inputs: output folders are only checked for writing (a run folder holds its checkpoint).
    """
    from maskgen.paths import check_outputs

    outputs = list(outputs)
    check_outputs(inputs, [o for o in outputs if not (o.folder and folders_may_hold_inputs)])
    for out in outputs:
        check_writable(out.path, out.role, folder=out.folder)


__all__ = ["BAD_INPUT", "BadInput", "CONTEXT_SETTINGS", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "EXIT_PARTIAL", "MissingExtra",
           "PARTIAL_EPILOG", "SafeCommand", "SafeGroup", "check_output_paths", "check_writable", "describe", "exit_partial",
           "at_least", "run_script", "warn"]
