"""What `make demo` shows while it works: its lines, and one progress line per stage.

On a terminal each stage gets a line with a bar (rich) and the stage's time so far; where
standard output is not a terminal (CI, a pipe, a test) every line is plain text with no control
characters: a line when a stage starts and one when it ends.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

Output = Callable[[str], None]
PREFIX = "[demo] "


def say(line: str) -> None:
    print(f"{PREFIX}{line}", flush=True)


class Progress(Protocol):
    """Where the demo's lines and its stages' progress go."""

    def say(self, line: str) -> None: ...

    def stage_started(self, label: str, total: int) -> None:
        """A stage starts; `total` materializations make it complete."""

    def stage_advanced(self, done: int) -> None: ...

    def stage_finished(self, seconds: float) -> None: ...


class PlainProgress:
    """Plain lines through `out`: the stage's start and its time, no bar."""

    def __init__(self, out: Output = say) -> None:
        self.out = out
        self._label = ""

    def say(self, line: str) -> None:
        self.out(line)

    def stage_started(self, label: str, total: int) -> None:
        self._label = label
        self.out(f"{label}: started")

    def stage_advanced(self, done: int) -> None:
        pass  # a line per materialization would bury the lines that matter

    def stage_finished(self, seconds: float) -> None:
        self.out(f"{self._label}: {seconds:.1f} s")


class BarProgress:
    """A live bar per stage on the terminal; lines printed above the bars."""

    def __init__(self, console=None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bars
        from rich.table import Column

        self.console = console or Console()
        # the label gives way (ellipsis) so that each stage stays on one line of the terminal
        label = Column(no_wrap=True, overflow="ellipsis", ratio=1)
        self._bars = Bars(
            TextColumn("{task.description}", markup=False, table_column=label),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            expand=True,
        )
        self._task = None
        self._label = ""
        self._total = 1

    def __enter__(self) -> BarProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc) -> None:
        self._bars.stop()

    def say(self, line: str) -> None:
        self.console.print(f"{PREFIX}{line}", markup=False, highlight=False, soft_wrap=True)

    def stage_started(self, label: str, total: int) -> None:
        self._label, self._total = label, max(total, 1)
        self._task = self._bars.add_task(f"{PREFIX}{label}", total=self._total)

    def stage_advanced(self, done: int) -> None:
        # full only once the stage's runs have ended: checks and clean-up follow the last write
        self._bars.update(self._task, completed=min(done, self._total - 1))

    def stage_finished(self, seconds: float) -> None:
        # the elapsed column, stopped here, shows the stage's time (a label may be cut short)
        self._bars.update(self._task, completed=self._total)
        self._bars.stop_task(self._task)


@contextmanager
def for_stdout() -> Iterator[Progress]:
    """Bars when standard output is a terminal, plain lines otherwise."""
    if sys.stdout.isatty():
        with BarProgress() as bars:
            yield bars
    else:
        yield PlainProgress()
