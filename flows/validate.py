"""`rap validate`: does D(x) find planted language priors, and what does each stage drop
per easy-VQA question type? Runs the `rap` flow on a planted test-split pool."""

from __future__ import annotations

import json

import polars as pl

from rap.flows.report import markdown_table
from rap.rap_core.params import DataSpec, ModelSpec, RapParams, RolloutSettings
from rap.rap_core.settings import Settings
from rap.rap_core.store import open_store
from rap.rap_core.demo.validation import planted_pool, planted_report, stage_breakdown, with_groups


def format_report(report: dict, breakdown: pl.DataFrame, run_id: str, model: str) -> str:
    by_type = ", ".join(f"{k} {v:.3f}" for k, v in report["auroc_by_type"].items()
                        if k != "open")
    return "\n".join([
        f"RAP validation on easy-VQA test questions (run {run_id}, model {model})",
        "",
        f"Planted language priors ({report['phrasing']} phrasings): {report['planted']} of "
        f"{report['samples']} scored samples ({report['unscored']} unscored)",
        f"  ROC AUC of D(x) (low D = planted): {report['auroc']:.3f} overall, "
        f"{report['auroc_by_type'].get('open', float('nan')):.3f} on colour and shape "
        f"questions;  by type: {by_type}",
        f"  at lambda_c = {report['lambda_c']}: precision {report['precision']:.3f}, "
        f"recall {report['recall']:.3f} (CDE drop = predicted planted)",
        f"  mean D: planted {report['mean_d_planted']:.3f}, untouched "
        f"{report['mean_d_untouched']:.3f}",
        "",
        "Funnel by question type (untouched questions by type; planted ones apart):",
        "",
        markdown_table(breakdown),
    ])


def validate(settings: Settings, n: int = 1000, share: float = 0.3, seed: int = 0,
             model: str | None = None, phrasing: str = "seen", batch_size: int = 16) -> dict:
    """Plant, select, measure; returns the report with the breakdown and the run id."""
    from rap.flows.rap import run_flow
    path = (settings.data_dir / "validation"
            / f"planted-n{n}-share{share}-seed{seed}-{phrasing}.jsonl")
    truth = planted_pool(path, n, share, seed, phrasing)
    params = RapParams(data=DataSpec(path=str(path)), rollout=RolloutSettings(seed=seed),
                       model=ModelSpec(path=model) if model else ModelSpec(),
                       batch_size=batch_size, export=False,
                       all_rollouts=True)  # D of every sample, for the ROC AUC
    summary = run_flow(params)
    with open_store(settings.duckdb_path, read_only=True) as store:
        decisions = store.query("queries/decisions_of_run", run_id=summary["run_id"])
    report = planted_report(decisions, truth, params.thresholds.lambda_c)
    breakdown = stage_breakdown(with_groups(decisions, truth), "group")
    report["phrasing"] = phrasing
    text = format_report(report, breakdown, summary["run_id"], params.model.path)
    out = settings.data_dir / "validation" / f"report-{summary['run_id']}.md"
    out.write_text(text + "\n")
    report.update(run_id=summary["run_id"], report_path=str(out), text=text,
                  breakdown=breakdown.to_dicts(), mlflow_run_id=summary["mlflow_run_id"])
    _track(settings, report, params, n, share, seed, text)
    return report


def _track(settings, report, params, n, share, seed, text) -> None:
    from rap.rap_core.tracking import log_record
    metrics = {k: report[k] for k in ("auroc", "precision", "recall", "mean_d_planted",
                                      "mean_d_untouched", "samples", "planted")}
    metrics.update({f"auroc.{k.replace('/', '_')}": v for k, v in report["auroc_by_type"].items()})
    try:
        report["validation_mlflow_run_id"] = log_record(
            settings, "-validation", f"planted-{report['run_id']}",
            params={"n": n, "share": share, "seed": seed, "model": params.model.path,
                    "phrasing": report["phrasing"],
                    "lambda_c": params.thresholds.lambda_c},
            metrics=metrics, tags={"selection_run": report["run_id"],
                                   "selection_mlflow_run": report["mlflow_run_id"]},
            artifacts={"validation.md": text + "\n",
                       "breakdown.json": json.dumps(report["breakdown"], indent=2)})
    except Exception as exc:  # the report is written; MLflow is a copy
        print(f"rap: MLflow logging of the validation failed: {exc}")
