"""What the command modules share: a line to the terminal, an option's open range."""

from __future__ import annotations

import typer


def say(line: str) -> None:
    print(line, flush=True)



def open_range(low: float, high: float):
    """An option callback: low < value < high."""
    def check(value):
        if value is not None and not low < value < high:
            raise typer.BadParameter(f"{value} is outside ({low}, {high})")
        return value
    return check
