"""How the ``radostdb`` commands meet the terminal: key and value arguments,
progress bars, chatter, and binary output.

- A KEY or VALUE argument is text (UTF-8 of the command line), hex with
  --hex, the contents of a file with ``@FILE`` (``@-``: stdin), or a literal
  starting with ``@`` written ``@@…``.
- Progress bars (rich, imported only when a bar is shown: it is slow to
  import) count records on stderr; they are shown when stderr is a terminal,
  unless --no-progress or --quiet. Chatter goes to stderr, never to stdout.
- Binary stdout for ``dump`` and ``get``: a reader that goes away (a broken
  pipe, ``| head``) ends the command quietly with status 141, as a shell
  pipeline expects.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, TypeVar

import click

T = TypeVar("T")

PROGRESS_STEP = 4096  # records between progress-bar updates in per-record loops
SIGPIPE_EXIT = 141


def data_arg(text: str, hex_: bool, what: str) -> bytes:
    """A key or value argument as bytes: text, --hex, @FILE, @- (stdin) or @@text."""
    if text.startswith("@@"):
        text = text[1:]
    elif text.startswith("@"):
        path = text[1:]
        try:
            if path == "-":
                return sys.stdin.buffer.read()
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {path}: {exc.strerror}", param_hint=what
            ) from None
    if hex_:
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise click.BadParameter(f"{text!r} is not hex", param_hint=what) from None
    return os.fsencode(text)


def progress_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "-q", "--quiet", is_flag=True, help="No progress bar and no summary on stderr."
    )(f)
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Progress bar on stderr [default: when stderr is a terminal].",
    )(f)


class Progress:
    """A progress bar of records on stderr, or nothing when disabled."""

    def __init__(self, enabled: bool, what: str, total: int | None = None) -> None:
        self._bar: Any = None
        self.done = 0
        if enabled:  # rich is imported only when a bar is shown: it is slow to import
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("records"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._task = self._bar.add_task(what, total=total)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, n: int) -> None:
        """Count ``n`` more records."""
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)

    def counted(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, advancing the bar as they go (every PROGRESS_STEP)."""
        n = 0
        for item in items:
            yield item
            n += 1
            if n % PROGRESS_STEP == 0:
                self.advance(PROGRESS_STEP)
        self.advance(n % PROGRESS_STEP)

    def describe(self, what: str) -> None:
        """Change the text before the bar."""
        if self._bar is not None:
            self._bar.update(self._task, description=what)


def show_progress(progress: bool | None, quiet: bool) -> bool:
    if quiet:
        return False
    return progress if progress is not None else sys.stderr.isatty()


def say(quiet: bool, message: str) -> None:
    """Chatter: a line on stderr unless --quiet."""
    if not quiet:
        click.echo(message, err=True)


@contextmanager
def binary_stdout() -> Iterator[BinaryIO]:
    """Binary stdout; a reader that went away (broken pipe) ends the command quietly."""
    out = sys.stdout.buffer
    try:
        yield out
        out.flush()
    except BrokenPipeError:
        try:  # nothing more can be written: keep the interpreter from trying at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        sys.exit(SIGPIPE_EXIT)
