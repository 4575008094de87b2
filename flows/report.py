"""Markdown reports: the selection run's artifact in the Prefect UI, tables for the reports."""

from __future__ import annotations

import polars as pl


def markdown_table(frame: pl.DataFrame, floats: int = 2) -> str:
    """A GitHub markdown table of a small frame."""
    def cell(v):
        return f"{v:.{floats}f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(frame.columns) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def selection_markdown(summary: dict, tracking_uri: str, top: int = 8) -> str:
    """The funnel, the top drop reasons and where the results went, for one run."""
    f = summary["funnel"]
    steps = [k for k in f if k.startswith("after_")]
    funnel = pl.DataFrame({
        "stage": ["pool rows"] + [f"after {s[6:].upper()}" + (" (selected)" if s == steps[-1]
                                                               else "") for s in steps],
        "samples": [f["pool_rows"]] + [f[s] for s in steps]})
    reasons = pl.DataFrame(summary["reasons"], schema={
        "state": pl.String, "stage": pl.String, "reason": pl.String, "n": pl.Int64})
    dropped = (reasons.filter(pl.col("state") != "selected").sort("n", descending=True)
               .head(top))
    run = summary["run_id"]
    mlflow = (f"`{summary['mlflow_run_id']}` (tracking URI `{tracking_uri}`)"
              if summary["mlflow_run_id"] else
              f"logging FAILED (`{tracking_uri}`); the selection is stored: "
              f"`rap track --run {run}`" if summary.get("tracking_failed") else "not tracked")
    return "\n".join([
        f"# RAP {summary['mode']} run `{run}` (method {summary.get('method', 'rap')})", "",
        markdown_table(funnel), "",
        f"Errors {f['errors']}, duplicate rows {f['duplicates']}. Samples inferred in this "
        f"run: {summary['samples_inferred']}; found stored: {summary['samples_stored']}.", "",
        "## Top drop reasons", "",
        markdown_table(dropped) if dropped.height else "Nothing was dropped.", "",
        "## Where the results are", "",
        f"- MLflow run: {mlflow}",
        f"- Export: `{summary['export_path']}`" if summary["export_path"] else "- Export: none",
        f"- DuckDB: `{summary['duckdb_path']}` (pool `{summary['pool_id']}`, model "
        f"`{summary['model_key']}`, settings `{summary['settings_key']}`)",
        f"- Decisions: `rap query \"SELECT * FROM decisions WHERE run_id = '{run}'\"`",
        f"- Retune: `prefect deployment run rap/retune --param run={run} "
        "--param lambda_c=0.3 --watch`"])
