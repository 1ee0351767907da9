"""Progress on stderr: a rich bar on a terminal, a line per phase otherwise,
nothing with --quiet (stdout stays the report)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn


class Reporter:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True)
        self.live = not quiet and self.console.is_terminal
        self.progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not self.live,
        )
        self.task = self.progress.add_task("", total=None)

    def __enter__(self) -> Reporter:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def phase(self, what: str, total: int) -> None:
        """A new phase of ``total`` steps."""
        self.progress.update(self.task, description=what, total=total, completed=0)
        if not self.live and not self.quiet:
            print(f"radostdb-bench: {what}", file=sys.stderr, flush=True)

    def step(self, what: str) -> None:
        self.progress.update(self.task, description=what)

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)

    def note(self, msg: str) -> None:
        if not self.quiet:
            self.console.print(msg, highlight=False)
