"""The progress bar every long-running command shows (rich, on stderr, only on a terminal)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress_bar(description: str = "{task.description:<10}") -> Progress:
    """A transient bar on stderr: description, bar, done/total, elapsed time.

    Disabled when stderr is not a terminal, so pipes and logs get no stray output.
    """
    console = Console(stderr=True)
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
