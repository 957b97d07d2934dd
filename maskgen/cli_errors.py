"""How both command lines (``maskgen`` and ``fer-models``) end: exit codes and one-line errors.

One convention, used by both click groups through :class:`SafeGroup`:

- exit 0: the command did its work;
- exit 2: bad input, or an output that cannot be written: ONE line on stderr,
  ``PROG: error: MESSAGE``, naming the file and the problem (click's own usage errors,
  such as an unknown option, also exit 2, with click's usage hint);
- exit 130: interrupted (Ctrl-C); every write goes through :func:`maskgen.io.atomic_write`,
  so nothing is left half-written;
- anything else is a bug: Python's traceback and exit 1, on purpose.

Bad input is a closed family, :data:`BAD_INPUT`: :class:`ValueError` and its subclasses
(raised by validation code: :class:`BadInput`, ``maskgen.dataset.FerFormatError``,
``fer_models.checkpoint.CheckpointError``, ...), :class:`OSError` (a missing file, no
permission, a read-only file system, a full disk, a directory where a file belongs, a
scheduler that cannot be reached) and :class:`MissingExtra` (an optional extra to install).
``KeyError``, ``TypeError``, ``IndexError``, ``AttributeError`` and the rest are bugs and
stay tracebacks. Code that finds bad input
raises :class:`BadInput` (or a ValueError subclass of its own) with a message that names
the file and the problem; this module only prints it.

``fer_models`` imports this module; nothing here imports ``fer_models``.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import click

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
#: the -h / --help convention of both command lines (subcommands inherit it)
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class BadInput(ValueError):
    """Input the command cannot use: the message names the file (or option) and the problem."""


class MissingExtra(ImportError):
    """An optional dependency the command needs is not installed: the message says what to install."""


#: what a command may raise for bad input (module docstring); everything else is a bug
BAD_INPUT: tuple[type[BaseException], ...] = (ValueError, OSError, MissingExtra)


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


def _invoke(prog: str, ctx: click.Context, invoke: Callable[[click.Context], Any]) -> Any:
    """``invoke(ctx)``, ending by the module's convention."""
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


__all__ = ["BAD_INPUT", "BadInput", "CONTEXT_SETTINGS", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "MissingExtra", "SafeCommand", "SafeGroup",
           "check_writable", "describe"]
