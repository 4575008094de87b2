"""Selection output tasks: store the run and its decisions, export, track in MLflow."""

from __future__ import annotations

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from rap.rap_core.io.export import write_export
from rap.rap_core.estimators.select import DECISION_COLUMNS
from rap.rap_core.estimators.stored import counts, run_coverage, run_funnel
from rap.rap_core.settings import Settings
from rap.rap_core.store import SelectionRun, open_store
from rap.rap_core.tracking import log_selection


@task(name="write-selection", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def write_selection(settings: Settings, run: SelectionRun, decisions: pl.DataFrame) -> dict:
    """Store the run and one decision per input row (replacing any earlier write of it)."""
    rows = decisions.select(DECISION_COLUMNS).with_columns(run_id=pl.lit(run.run_id))
    with open_store(settings.duckdb_path) as store, store.transaction():
        store.upsert("selection_runs", run.frame())
        store.upsert("decisions", rows)
        funnel = run_funnel(store, run.run_id)
        reasons = store.query("queries/reasons_of_run", run_id=run.run_id)
        coverage = run_coverage(store, run)
    return {"funnel": funnel, "reasons": reasons, "coverage": coverage}


@task(name="export-easyr1", cache_policy=NO_CACHE, retries=1)
def export_selection(settings: Settings, run_id: str, pool_id: str) -> str:
    """Write the selected samples as EasyR1 Parquet with embedded image bytes (+ manifest)."""
    with open_store(settings.duckdb_path) as store:
        selected = store.query("queries/selected_rows", run_id=run_id)
    # a retry may find this run's own export already in place: it is rewritten
    manifest = write_export(selected, "easyr1", settings.exports_dir / run_id / "easyr1.parquet",
                            run_id, pool_id, settings.data_dir,
                            replaceable=lambda previous: previous.get("selection_run") == run_id)
    with open_store(settings.duckdb_path) as store:
        store.execute("writes/set_run_export", run_id=run_id, export_path=manifest["path"])
    get_run_logger().info("exported %d samples to %s", selected.height, manifest["path"])
    return manifest["path"]


@task(name="report", cache_policy=NO_CACHE)
def write_run_report(settings: Settings, run_id: str) -> str | None:
    """The run's report page (rap_core/report). The selection is already stored: a page
    that cannot be written is logged and costs nothing else (`rap report` writes it later)."""
    from rap.rap_core.report import write_report
    try:
        manifest = write_report(settings, run_id)
    except Exception as exc:  # any failure: the run stands without its page
        get_run_logger().warning("report page not written (%s: %s); `rap report --run %s` "
                                 "writes it later", type(exc).__name__, str(exc)[:300], run_id)
        return None
    get_run_logger().info("report page: %s (%.0f KB, %d cards, %.1f s)", manifest["path"],
                          manifest["bytes"] / 1024, manifest["cards"], manifest["seconds"])
    return manifest["path"]


@task(name="track", cache_policy=NO_CACHE)
def track(settings: Settings, run: SelectionRun, params: dict, result: dict,
          decisions: pl.DataFrame, export_path: str | None,
          phases: dict | None = None, report_path: str | None = None) -> str | None:
    """Log the run to MLflow and link it from the store. The selection is already stored:
    if MLflow cannot be reached, say so and return None (`rap track --run R` logs it later)."""
    funnel = counts(result["funnel"])
    try:
        mlflow_id = log_selection(settings, run, params, funnel, result["reasons"],
                                  decisions, export_path, phases, report_path,
                                  result.get("coverage"))
    except Exception as exc:  # any tracking-store failure: the selection stands
        get_run_logger().warning(
            "MLflow logging failed (%s: %s). The selection is stored; log it later with "
            "`rap track --run %s`", type(exc).__name__, str(exc)[:300], run.run_id)
        return None
    with open_store(settings.duckdb_path) as store:
        store.execute("writes/set_run_tracking", run_id=run.run_id,
                      mlflow_run_id=mlflow_id, export_path=export_path)
    return mlflow_id
