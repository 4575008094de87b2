"""A selection run written for a trainer, or a trainer's file checked."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from rap.flows.commands.common import say
from rap.rap_core.settings import Settings

def export_command(settings: Settings,
                   format: Annotated[Literal["easyr1", "verl", "openrlhf", "hf"], typer.Option(
                       "--format", help="the trainer's layout")],
                   run: Annotated[Optional[str], typer.Option(
                       help="selection run", show_default="the latest")] = None,
                   out: Annotated[Optional[str], typer.Option(
                       help="file (folder for hf) to write",
                       show_default="rap_data/exports/<run>/<format>.<ext>")] = None,
                   force: Annotated[bool, typer.Option(
                       help="replace an earlier rap export of the same format at --out "
                       "(anything else is never replaced)")] = False,
                   data_source: Annotated[Optional[str], typer.Option(
                       help="verl data_source", show_default="the pool's, else rap")] = None,
                   check: Annotated[Optional[str], typer.Option(
                       metavar="PATH", help="check PATH against the format's rules instead "
                       "of exporting; prints each violation with its row")] = None) -> int:
    """Write a selection run for a trainer (easyr1, verl, openrlhf, hf), or check a file
    against a trainer's rules."""
    from rap.flows.export import check_file, export_run
    if check:
        return check_file(check, format, say)
    export_run(settings, run, format, out, data_source, say, force=force)
    return 0
