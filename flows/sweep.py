"""`rap sweep`: thresholds chosen by looking. Every point of a grid is selected from one stored
run's facts in this process (rap_core/sweep.py) and printed as one table; nothing is written
unless asked (`--out`, `--report`, or `--record`: each point a `rap retune` run).

    rap sweep --lambda-c 0:0.8:0.1 --lambda-a 1e-6,1e-5,1e-4,0.1
    rap sweep --coverage-floor 0,0.5,1 --method rap,pass_band --out sweep.csv --report s.html
"""

from __future__ import annotations

import inspect
from typing import Annotated, Optional

import typer
from rich.markup import escape

from rap.rap_core.settings import Settings

PANEL = "Thresholds to sweep (a,b,c or start:stop:step; the others stay the run's)"


def sweep_command(settings: Settings, run: str | None, method: str | None, max_points: int,
                  record: bool, out: str | None, report: str | None, force: bool,
                  **specs: str | None) -> None:
    from rap.rap_core.estimators import METHODS
    from rap.rap_core.store import open_store
    from rap.rap_core.errors import SweepError
    from rap.rap_core.sweep import make_grid, sweep
    given = {name: spec for name, spec in specs.items() if spec is not None}
    with open_store(settings.duckdb_path, read_only=True) as store:
        methods = ([m.strip() for m in method.split(",")] if method else
                   [store.selection_run(run, "sweep").method])
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise SweepError(f"--method {unknown[0]!r}: one of {', '.join(sorted(METHODS))}")
        grid = make_grid(given, methods, max_points)
        found = sweep(store, run, grid)
    print(format_sweep(found))
    if out:
        print(write_table(settings, found, out, force))
    if report:
        from rap.rap_core.report import write_sweep_report
        manifest = write_sweep_report(settings, found, report, force)
        print(f"report page: {manifest['path']}")
    if record:
        record_points(settings, found)


def format_sweep(found) -> str:
    """The grid as one terminal table, the missing facts named once under it."""
    import polars as pl

    from rap.rap_core.sweep import is_current, shown
    table = found.table
    mark = [("*" if is_current(r, found.current) else "") for r in table.iter_rows(named=True)]
    printed = table.select(
        pl.Series("", mark), "method",
        *[pl.col(n).map_elements(shown, return_dtype=pl.String) for n in found.swept],
        *[c for c in table.columns if c.startswith("after_")], "selected", "readmitted",
        "errors", pl.col("mean_difficulty").round(3),
        pl.col("lowest_ratio").round(2), "lowest_group")
    if len(set(table["method"])) == 1:
        printed = printed.drop("method")
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=40, tbl_width_chars=240,
                   tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        lines = [f"sweep of run {found.run_id}: {table.height} points, from stored facts "
                 "(nothing written)", str(printed)]
    if any(mark):
        lines.append("* the run's own method and thresholds")
    lines += [f"errors: missing facts at some points: {note}" for note in found.notes]
    return "\n".join(lines)


def write_table(settings: Settings, found, out: str, force: bool) -> str:
    """The grid, every column (group shares included), as a file under the output rules."""
    import duckdb
    from pathlib import Path

    from rap.rap_core.store.query import write_result
    con = duckdb.connect()
    con.register("sweep", found.table.to_arrow())
    manifest = write_result(con, "SELECT * FROM sweep", Path(out), settings.data_dir, force,
                            kind="sweep", what="a sweep", run_id=found.run_id)
    return f"wrote {manifest['rows']} points to {manifest['path']}"


def record_points(settings: Settings, found) -> None:
    """Each point as a `rap retune` run (a Prefect run, an MLflow run, a stored selection;
    the flow takes the run lock itself)."""
    from rap.flows.rap import run_flow
    from rap.rap_core.params import RapParams, Thresholds
    from rap.rap_core.sweep import shown
    for r in found.table.iter_rows(named=True):
        th = Thresholds.model_validate({n: r[n] for n in found.swept})
        summary = run_flow(RapParams(mode="retune", base_run=found.run_id, method=r["method"],
                                     thresholds=th, export=False))
        values = ", ".join(f"{n}={shown(r[n])}" for n in found.swept)
        print(f"recorded retune run {summary['run_id']} ({r['method']}, {values}): "
              f"{summary['funnel']['selected']} selected")


def signature() -> inspect.Signature:
    """sweep's options: one per threshold (its values as text), then the command's own."""
    from rap.rap_core.params import Thresholds
    options = [inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None,
        annotation=Annotated[Optional[str], typer.Option(
            "--" + name.replace("_", "-"), metavar="VALUES", rich_help_panel=PANEL,
            help=escape(f"{field.description} (the run's when not swept)"),
            show_default=False)])
        for name, field in Thresholds.model_fields.items()]
    own = {
        "run": Annotated[Optional[str], typer.Option(
            help="The run whose stored facts are swept", show_default="the latest")],
        "method": Annotated[Optional[str], typer.Option(
            help="Method(s) to sweep, e.g. rap,pass_band", show_default="the run's")],
        "max_points": Annotated[int, typer.Option(
            min=1, max=100_000, help="Refuse a larger grid")],
        "record": Annotated[bool, typer.Option(
            help="Also store every point as a retune run (Prefect, MLflow, the store)")],
        "out": Annotated[Optional[str], typer.Option(
            help="Write every point to this .csv/.parquet/.json/.jsonl file",
            show_default=False)],
        "report": Annotated[Optional[str], typer.Option(
            help="Write a page with the curves to this .html file", show_default=False)],
        "force": Annotated[bool, typer.Option(
            help="Replace an earlier --out / --report file rap wrote")],
    }
    defaults = {"run": None, "method": None, "max_points": 200, "record": False, "out": None,
                "report": None, "force": False}
    return inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=defaults[n],
                           annotation=a) for n, a in own.items()] + options)
