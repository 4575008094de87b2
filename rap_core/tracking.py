"""MLflow lineage of a selection run: parameters, fingerprints, funnel, plots, selected ids."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import polars as pl

from rap.rap_core.charts import axis_title, split_scores, threshold_cuts
from rap.rap_core.io.outputs import manifest_path
from rap.rap_core.params import dotted
from rap.rap_core.settings import Settings
from rap.rap_core.store.records import SelectionRun

HISTOGRAMS = {"d": "D(x) = acc_mm - acc_text", "psi": "ACE psi", "acc_mm": "acc_mm",
              "acc_text": "acc_text"}


def _flat_params(params: dict) -> dict:
    return {name: value[:500] for name, value in dotted(params).items()}  # MLflow's limit


def _histogram(decisions: pl.DataFrame, column: str, title: str, path: Path,
               thresholds: list[tuple[str, float]] = ()) -> None:
    """Selected and dropped rows stacked, with the thresholds the run used as lines
    (rap_core.charts: psi on a log10 axis)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    parts = split_scores(decisions, column)
    n = sum(len(p) for p in parts)
    if n:
        everything = np.concatenate(parts)
        lo, hi = float(everything.min()), float(everything.max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 31)
        ax.hist(parts, bins=bins, stacked=True, color=["#2e7d32", "#b0b7c3"],
                label=[f"selected ({len(parts[0])})", f"dropped ({len(parts[1])})"])
    for name, value in thresholds:
        ax.axvline(value, color="#c62828", linestyle="--", linewidth=1.2,
                   label=f"{name} = {value:.3g}")
    ax.set_title(f"{axis_title(column, title)} (n={n})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# decisions.csv: the outcome first, then the scores, then the rest
DECISION_FIRST = ["state", "stage", "reason", "detail", "sample_id", "source_row", "acc_mm",
                  "acc_text", "d", "psi", "difficulty", "passed"]
EXPERIMENT_NOTE = ("RAP data selection runs of this data folder: one run per selection or "
                   "retune (parameters, funnel and reason metrics, score histograms, "
                   "decisions.csv, the report page under report/), plus the demo model, "
                   "validation and experiment records in their own experiments.")


def _experiment(settings: Settings, suffix: str = ""):
    import mlflow
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    name = settings.mlflow_experiment + suffix
    found = mlflow.get_experiment_by_name(name)
    if found is None:
        mlflow.create_experiment(name, artifact_location=settings.mlflow_artifacts_uri)
        found = mlflow.get_experiment_by_name(name)
    if "mlflow.experimentKind" not in found.tags:
        # MLflow 3's UI files untyped experiments under GenAI "evaluation runs"
        mlflow.MlflowClient().set_experiment_tag(found.experiment_id, "mlflow.experimentKind",
                                                 "custom_model_development")
    if "mlflow.note.content" not in found.tags and not suffix:
        mlflow.MlflowClient().set_experiment_tag(found.experiment_id, "mlflow.note.content",
                                                 EXPERIMENT_NOTE)
    mlflow.set_experiment(name)
    return mlflow


def log_record(settings: Settings, experiment_suffix: str, run_name: str, params: dict,
               metrics: dict, tags: dict | None = None, artifacts: dict[str, str] | None = None,
               series: dict[str, list[float]] | None = None,
               curves: dict[str, list[tuple[int, float]]] | None = None) -> str:
    """Log one record (demo model training, validation, experiment) to the experiment
    `<rap experiment><suffix>`; artifacts are {file name: text}, series are metrics per
    step 0, 1, ..., curves metrics at the steps given as (step, value)."""
    mlflow = _experiment(settings, experiment_suffix)
    with mlflow.start_run(run_name=run_name) as active:
        mlflow.log_params(_flat_params(params))
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.set_tags({k: str(v) for k, v in (tags or {}).items()})
        for name, values in (series or {}).items():
            for step, value in enumerate(values):
                mlflow.log_metric(name, float(value), step=step)
        for name, points in (curves or {}).items():
            for step, value in points:
                mlflow.log_metric(name, float(value), step=int(step))
        if artifacts:
            with tempfile.TemporaryDirectory() as tmp:
                for file_name, text in artifacts.items():
                    (Path(tmp) / file_name).write_text(text)
                mlflow.log_artifacts(tmp)
        return active.info.run_id


def _reason_metric(r: dict) -> str:
    """reason.<state>.<stage>.<reason>[.from_<stage>]: a re-admitted row's metric names the
    filter that had dropped it."""
    back = r.get("readmitted_from")
    return f"reason.{r['state']}.{r['stage']}.{r['reason']}" + (f".from_{back}" if back else "")


MAX_GROUP_METRICS = 100  # groups with metrics of their own (all of them in coverage.csv)
_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. :/]")


def _metric_name(name: str) -> str:
    """A group's name as MLflow accepts it in a metric name (no other characters, no path
    that normalises to another)."""
    clean = _METRIC_UNSAFE.sub("_", name)[:200] or "_"
    parts = clean.split("/")
    return clean.replace("/", "_") if any(p in ("", ".", "..") for p in parts) else clean


def coverage_metrics(coverage: pl.DataFrame) -> dict[str, float]:
    """coverage.<group>.pool_share / .selected_share / .ratio of the largest groups."""
    return {f"coverage.{_metric_name(r['group'])}.{k}": float(r[k])
            for r in coverage.head(MAX_GROUP_METRICS).iter_rows(named=True)
            for k in ("pool_share", "selected_share", "ratio") if r[k] is not None}


def log_selection(settings: Settings, run: SelectionRun, params: dict, funnel: dict,
                  reasons: pl.DataFrame, decisions: pl.DataFrame,
                  export_path: str | None, phases: dict | None = None,
                  report_path: str | None = None,
                  coverage: pl.DataFrame | None = None) -> str:
    """Log one selection run; returns the MLflow run id."""
    mlflow = _experiment(settings)
    with mlflow.start_run(run_name=f"{run.mode}-{run.run_id}") as active:
        mlflow.log_params(_flat_params(params))
        mlflow.set_tags({k: str(getattr(run, k)) for k in (
            "run_id", "mode", "method", "pool_id", "model_key", "settings_key", "ace_key",
            "base_run")})
        mlflow.log_metrics({f"funnel.{k}": float(v) for k, v in funnel.items()})
        mlflow.log_metrics({_reason_metric(r): float(r["n"])
                            for r in reasons.iter_rows(named=True)})
        mlflow.log_metrics({"samples_inferred": run.samples_inferred,
                            "samples_stored": run.samples_stored})
        # this run's inference: seconds, generated tokens and skipped samples per phase
        mlflow.log_metrics({f"inference.{phase.replace('-', '_')}.{k}": float(v)
                            for phase, figures in (phases or {}).items()
                            for k, v in figures.items() if isinstance(v, (int, float))})
        with tempfile.TemporaryDirectory() as tmp:
            cuts = threshold_cuts(params.get("method", "rap"), params.get("thresholds") or {})
            for column, title in HISTOGRAMS.items():
                _histogram(decisions, column, title, Path(tmp) / f"hist_{column}.png",
                           cuts.get(column, []))
            nested = [c for c, t in decisions.schema.items() if isinstance(t, pl.List)]
            first = [c for c in DECISION_FIRST if c in decisions.columns]
            decisions.with_columns(pl.col(c).list.join(",") for c in nested).select(
                *first, pl.exclude(first)).write_csv(
                Path(tmp) / "decisions.csv")  # passed: 'cde,ace'; CSV holds no lists
            decisions.filter(pl.col("state") == "selected").select(
                "sample_id", "stage", "reason").write_csv(Path(tmp) / "selected_ids.csv")
            reasons.write_csv(Path(tmp) / "reasons.csv")  # every row once, by its outcome
            if coverage is not None:
                mlflow.log_metrics(coverage_metrics(coverage))
                coverage.write_csv(Path(tmp) / "coverage.csv")  # every group
            mlflow.log_artifacts(tmp, artifact_path="selection")
        if export_path:
            mlflow.log_param("export_path", export_path)
            manifest = manifest_path(Path(export_path))
            if manifest.is_file():
                mlflow.log_artifact(str(manifest), artifact_path="exports")
        if report_path and Path(report_path).is_file():
            mlflow.log_artifact(report_path, artifact_path="report")
            mlflow.set_tag("report", report_path)
        return active.info.run_id


def track_stored_run(settings: Settings, run_id: str | None, force: bool = False
                     ) -> SelectionRun:
    """Log a stored selection run to MLflow from the store alone (e.g. after MLflow was
    unreachable during the run); returns the run record with its new mlflow_run_id."""
    from rap.rap_core.estimators.stored import counts, run_coverage, run_funnel
    from rap.rap_core.store import StoreError, open_store
    with open_store(settings.duckdb_path) as store:
        run = store.selection_run(run_id, "track")
        if run.mlflow_run_id and not force:
            raise StoreError(f"run {run.run_id} is already in MLflow as "
                             f"{run.mlflow_run_id} (pass --force to log it again)")
        funnel = counts(run_funnel(store, run.run_id))
        reasons = store.query("queries/reasons_of_run", run_id=run.run_id)
        decisions = store.query("queries/decisions_of_run", run_id=run.run_id)
        coverage = run_coverage(store, run)
    report = settings.reports_dir / f"{run.run_id}.html"  # rap report's default place
    mlflow_id = log_selection(settings, run, run.parameters, funnel, reasons, decisions,
                              run.export_path, report_path=str(report) if report.is_file()
                              else None, coverage=coverage)
    with open_store(settings.duckdb_path) as store:
        store.execute("writes/set_run_tracking", run_id=run.run_id,
                      mlflow_run_id=mlflow_id, export_path=run.export_path)
    return run.model_copy(update={"mlflow_run_id": mlflow_id})


def log_export(settings: Settings, mlflow_run_id: str, manifest: dict) -> None:
    """Attach an export's manifest to the MLflow run of its selection."""
    from mlflow import MlflowClient
    client = MlflowClient(settings.mlflow_tracking_uri)
    client.log_artifact(mlflow_run_id, manifest["manifest_path"], artifact_path="exports")
    client.set_tag(mlflow_run_id, f"export.{manifest['format']}", manifest["path"])
