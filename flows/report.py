"""Markdown reports: the selection run's artifact in the Prefect UI, tables for the reports."""

from __future__ import annotations

import polars as pl

from rap.rap_core.estimators.coverage import largest, under_represented
from rap.rap_core.estimators.stored import readmitted, reason_label


def markdown_table(frame: pl.DataFrame, floats: int = 2) -> str:
    """A GitHub markdown table of a small frame."""
    def cell(v):
        if v is None or (isinstance(v, float) and v != v):
            return "–"
        return f"{v:.{floats}f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(frame.columns) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def coverage_frame(summary: dict) -> pl.DataFrame | None:
    """The run's coverage table from its summary (None for a summary without one)."""
    rows = summary.get("coverage")
    return pl.DataFrame(rows) if rows else None


def coverage_notes(summary: dict, table: pl.DataFrame) -> list[str]:
    """The under-represented groups and, with a floor, what it added and fell short of."""
    warn, floor = summary.get("coverage_warn", 0.6), summary.get("coverage_floor", 0.0)
    notes = [f"under-represented: {low}" for low in under_represented(table, warn)]
    if floor:
        added = sum(r["n"] for r in summary["reasons"] if r["reason"] == "coverage_added")
        short = table.filter(pl.col("shortfall") > 0)
        notes.append(f"coverage floor {floor:g}: {added} rows added to groups under their "
                     "floor, each replacing the easiest row of a group above its own; "
                     + ("every group at its floor" if short.is_empty() else "short of the "
                        "floor (too few solvable rejects): " + ", ".join(
                            f"{r['group']} by {r['shortfall']}"
                            for r in short.iter_rows(named=True))))
    return notes


def coverage_lines(summary: dict, top: int = 12) -> list[str]:
    """The composition per group for a terminal: the `top` largest groups, the rest summed."""
    table = coverage_frame(summary)
    if table is None:
        return []
    shown = largest(table, top)
    width = max(12, *(len(g) for g in shown["group"]))
    lines = [f"  groups by {summary.get('group_by', 'group')} (pool -> selected; share; "
             "ratio of the shares):"]
    for r in shown.iter_rows(named=True):
        sel = ("     -" if r["selected_share"] is None else f"{r['selected_share']:>6.1%}")
        ratio = "   -" if r["ratio"] is None else f"{r['ratio']:>4.2f}"
        lines.append(f"    {r['group']:<{width}} {r['pool_rows']:>8} {r['pool_share']:>6.1%}"
                     f"  -> {r['selected_rows']:>7} {sel}   x{ratio}")
    return lines + [f"  {note}" for note in coverage_notes(summary, table)]


def coverage_markdown(summary: dict) -> list[str]:
    """The composition per group as markdown lines (empty for a summary without one)."""
    table = coverage_frame(summary)
    if table is None:
        return []
    floor = ["floor_rows", "shortfall"] if summary.get("coverage_floor") else []
    shown = largest(table, 50).select(
        "group", "pool_rows", "pool_share", "selected_rows", "selected_share", "ratio", *floor)
    notes = coverage_notes(summary, table)
    return [f"## Composition by {summary.get('group_by', 'group')}", "",
            markdown_table(shown), "", *[f"- {note}" for note in notes],
            *([""] if notes else [])]


def selection_markdown(summary: dict, tracking_uri: str) -> str:
    """The funnel, every (state, stage, reason) with its count (they add up to the pool) and
    where the results went, for one run."""
    f = summary["funnel"]
    steps = [k for k in f if k.startswith("after_")]
    funnel = pl.DataFrame({
        "stage": ["pool rows"] + [f"after {s[6:].upper()}" + (" (selected)" if s == steps[-1]
                                                               else "") for s in steps],
        "samples": [f["pool_rows"]] + [f[s] for s in steps]})
    reasons = pl.DataFrame({
        "state": [r["state"] for r in summary["reasons"]],
        "stage": [r["stage"] for r in summary["reasons"]],
        "reason": [reason_label(r) for r in summary["reasons"]],
        "n": [r["n"] for r in summary["reasons"]]},
        schema={"state": pl.String, "stage": pl.String, "reason": pl.String, "n": pl.Int64})
    back = readmitted(f)
    run = summary["run_id"]
    mlflow = (f"`{summary['mlflow_run_id']}` (tracking URI `{tracking_uri}`)"
              if summary["mlflow_run_id"] else
              f"logging FAILED (`{tracking_uri}`); the selection is stored: "
              f"`rap track --run {run}`" if summary.get("tracking_failed") else "not tracked")
    return "\n".join([
        f"# RAP {summary['mode']} run `{run}` (method {summary.get('method', 'rap')})", "",
        markdown_table(funnel), "",
        *([f"Of the selected, re-admitted after a drop by {back}.", ""] if back else []),
        f"Errors {f['errors']}, duplicate rows {f['duplicates']}. Samples inferred in this "
        f"run: {summary['samples_inferred']}; found stored: {summary['samples_stored']}.", "",
        *coverage_markdown(summary),
        "## Every row, by state, stage and reason", "",
        markdown_table(reasons) if reasons.height else "No rows.", "",
        "## Where the results are", "",
        f"- MLflow run: {mlflow}",
        f"- Export: `{summary['export_path']}`" if summary["export_path"] else "- Export: none",
        (f"- Report page (samples with their images and scores, per reason): "
         f"[{summary['report_path']}](file://{summary['report_path']})"
         if summary.get("report_path") else
         f"- Report page: not written (`rap report --run {run}`)"),
        f"- DuckDB: `{summary['duckdb_path']}` (pool `{summary['pool_id']}`, model "
        f"`{summary['model_key']}`, settings `{summary['settings_key']}`)",
        f"- Decisions: `rap query \"SELECT * FROM decisions WHERE run_id = '{run}'\"`",
        f"- Retune: `prefect deployment run rap/retune --param run={run} "
        "--param lambda_c=0.3 --watch`"])
