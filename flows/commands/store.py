"""The store's commands: one read-only SELECT, the runs, two runs compared."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rap.rap_core.settings import Settings

def run_query(settings: Settings, statement: str, max_rows: int, out: str | None = None,
              force: bool = False) -> str:
    import polars as pl

    from rap.rap_core.store.query import lock_down, preview, write_result
    from rap.rap_core.store import open_store
    with open_store(settings.duckdb_path, read_only=True) as store:
        lock_down(store.con)
        if out:
            manifest = write_result(store.con, statement, out, settings.data_dir, force)
            return f"wrote {manifest['rows']} rows to {manifest['path']}"
        frame, more = preview(store.con, statement, max_rows)
    with pl.Config(tbl_rows=max_rows, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200):
        return str(frame) + (f"\n(first {max_rows} rows; --max-rows N for more, or --out "
                             "FILE for all)" if more else "")


RUNS_SQL = ("SELECT r.run_id, r.mode, r.method, r.base_run, f.pool_rows, f.selected, "
            "f.path AS funnel, r.created_at FROM selection_runs r JOIN funnel f USING (run_id) "
            "ORDER BY r.created_at")


def query_command(settings: Settings,
                  statement: Annotated[str, typer.Argument(
                      metavar="SQL", help="the SELECT statement (SHOW, DESCRIBE, SUMMARIZE "
                      "too); it can read the store and nothing else")],
                  max_rows: Annotated[int, typer.Option(min=1, max=10**9,
                                                        help="rows to print")] = 50,
                  out: Annotated[Optional[str], typer.Option(
                      help="write the whole result to this file instead: .csv, .parquet, "
                      ".json or .jsonl (same rules as rap export --out)")] = None,
                  force: Annotated[bool, typer.Option(
                      help="replace an earlier `rap query --out` result at --out")] = False
                  ) -> None:
    """Run one read-only SELECT over the store."""
    print(run_query(settings, statement, max_rows, out, force))


def runs_command(settings: Settings) -> None:
    """List the selection runs."""
    print(run_query(settings, RUNS_SQL, 1000))


def compare_command(settings: Settings,
                    run_a: Annotated[str, typer.Argument(help="a selection run")],
                    run_b: Annotated[str, typer.Argument(help="another run on the same pool")],
                    max_rows: Annotated[int, typer.Option(
                        min=1, max=10**6, help="rows of the crosstab to print")] = 30,
                    report: Annotated[Optional[str], typer.Option(
                        metavar="PATH", help="also write an HTML page of the two runs side "
                        "by side (what each selected that the other did not)")] = None,
                    per_group: Annotated[int, typer.Option(
                        min=1, max=1000, help="report: sample cards per group")] = 8,
                    force: Annotated[bool, typer.Option(
                        help="report: replace an earlier rap report at PATH")] = False) -> None:
    """Two runs on one pool: sizes, overlap, Jaccard, how each row ended in one against the
    other, groups."""
    from rap.rap_core.compare import compare_runs, format_comparison
    from rap.rap_core.store import open_store
    with open_store(settings.duckdb_path, read_only=True) as store:
        print(format_comparison(compare_runs(store, run_a, run_b), max_rows))
    if report:
        from rap.rap_core.report import write_compare_report
        manifest = write_compare_report(settings, run_a, run_b, Path(report), per_group,
                                        force=force)
        print(f"report  {manifest['path']}")
