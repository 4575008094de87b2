"""A run's report page, and its MLflow record made later."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rap.rap_core.settings import Settings

def report_command(settings: Settings,
                   run: Annotated[Optional[str], typer.Option(
                       help="the run", show_default="the latest")] = None,
                   out: Annotated[Optional[str], typer.Option(
                       help="HTML file to write", show_default="rap_data/reports/<run>.html")
                   ] = None,
                   per_reason: Annotated[int, typer.Option(
                       min=1, max=1000, help="sample cards per (state, stage, reason)")] = 8,
                   seed: Annotated[int, typer.Option(help="which cards are sampled")] = 0,
                   force: Annotated[bool, typer.Option(
                       help="replace an earlier rap report at --out (anything else is never "
                       "replaced)")] = False) -> None:
    """Write a run's report page: one self-contained HTML file with the funnel, the score
    distributions and sample cards (image, question, answer, scores, responses) per reason.
    Open it in any browser; it fetches nothing."""
    from rap.rap_core.report import write_report
    manifest = write_report(settings, run, Path(out) if out else None, per_reason, seed, force)
    print(f"report of run {manifest['run_id']}: {manifest['path']} "
          f"({manifest['bytes'] / 1024:.0f} KB, {manifest['cards']} cards)")


def track_command(settings: Settings,
                  run: Annotated[Optional[str], typer.Option(
                      help="the run", show_default="the latest")] = None,
                  force: Annotated[bool, typer.Option(
                      help="log it again even if it already has an MLflow run")] = False
                  ) -> None:
    """Log a stored selection run to MLflow (e.g. when MLflow could not be reached during
    the run)."""
    from rap.rap_core.tracking import track_stored_run
    record = track_stored_run(settings, run, force)
    print(f"run {record.run_id} logged to MLflow as {record.mlflow_run_id} "
          f"[{settings.mlflow_tracking_uri}]")
