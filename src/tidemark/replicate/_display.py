"""A progress display on a terminal: one line per resource with its documents so far."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn


class TerminalProgress:
    """A rich progress display fed by the replicator's ``progress`` hook; use as a context
    manager around the rounds (it draws on stderr)."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.fields[stage]}"),
            TextColumn("{task.completed:>9,.0f} documents"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> TerminalProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()

    def __call__(self, collection: str, stage: str, documents: int) -> None:
        task = self._tasks.get(collection)
        if task is None:
            task = self._progress.add_task(collection, total=None, stage=stage)
            self._tasks[collection] = task
        self._progress.update(task, advance=documents, stage=stage)
