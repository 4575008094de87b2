"""Progress bars in a terminal (Rich): one bar per inference phase of a run, one per stage of
the demo model's training. Nothing is drawn when stderr is not a terminal (CI, a worker, a
pipe); the log lines are written either way."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)


def bars(console: Console) -> Progress:
    return Progress(TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console)


class PhaseBars:
    """A listener of the flow's inference progress: (todo, done) per phase -> bars."""

    def __init__(self, progress: Progress):
        self.progress, self.tasks = progress, {}

    def __call__(self, todo: dict[str, int], done: dict[str, int]) -> None:
        for phase, total in todo.items():
            if phase not in self.tasks:
                if not total:
                    continue  # a phase the method does not run, or with nothing to do
                self.tasks[phase] = self.progress.add_task(f"{phase} inference", total=total,
                                                           note="samples")
            self.progress.update(self.tasks[phase], total=total, completed=done.get(phase, 0))


class TrainingBars:
    """A progress callback (stage, step, steps, loss) of the demo model's training -> bars."""

    def __init__(self, progress: Progress):
        self.progress, self.tasks = progress, {}

    def __call__(self, stage: str, step: int, steps: int, loss: float) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(f"training ({stage})", total=steps,
                                                       note="")
        note = "" if loss != loss else f"loss {loss:.3f}"  # nan before the first step
        self.progress.update(self.tasks[stage], total=steps, completed=step, note=note)


@contextmanager
def terminal_progress(console: Console | None = None) -> Iterator[Progress | None]:
    """Bars for the duration, or None when not in a terminal. Rich log handlers (Prefect's
    console handler) print through the bars' console meanwhile, so lines appear above the
    bars instead of tearing them."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    handlers = _rich_handlers()
    saved = [(h, h.console) for h in handlers]
    with bars(console) as progress:
        for handler in handlers:
            handler.console = progress.console
        try:
            yield progress
        finally:
            for handler, original in saved:
                handler.console = original


def _rich_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()] + [logger for logger in
                                       logging.root.manager.loggerDict.values()
                                       if isinstance(logger, logging.Logger)]
    return [h for logger in loggers for h in logger.handlers
            if isinstance(getattr(h, "console", None), Console)]
