"""The selection commands: select and retune (one flag per flat flow parameter), their
summary, and sweep."""

from __future__ import annotations

import inspect
import types
from typing import Annotated, Literal, Optional, Union, get_args, get_origin

import typer
from rich.markup import escape

from rap.flows.commands.common import say
from rap.rap_core.settings import Settings

# Flags that are not `--` + the parameter's name with dashes (two-way booleans above all).
FLAG_NAMES = {
    "export": "--export/--no-export", "track": "--track/--no-track",
    "drm_require_positive_d": "--drm-require-positive-d/--drm-allow-nonpositive-d",
    "allow_outside_paths": "--allow-outside-paths/--no-allow-outside-paths",
    "all_rollouts": "--all-rollouts/--skip-settled-rollouts",
    "random_stratify": "--random-stratify/--random-unstratified",
}
PANELS = {"data": "Pool", "model": "Model", "rollout": "Rollouts",
          "ace": "ACE attention pass (a new pass when changed)", "runner": "Where inference runs",
          None: "Run"}
ROLLOUT_ENGINE_PANEL = "Rollout engine (transformers, an OpenAI-compatible server, vLLM)"
RETUNE_PARAMETERS = {"run", "method", "export", "track", "wait_for_lock"}  # + the thresholds



def _cli_type(annotation):
    """The flag's type: the field's, without None; a union of kinds (drm_k) is read as text
    and left to the parameter model."""
    kinds = [a for a in get_args(annotation) if a is not type(None)] \
        if get_origin(annotation) in (Union, types.UnionType) else [annotation]
    if len(kinds) != 1:
        return str
    kind = get_args(kinds[0])[0] if get_origin(kinds[0]) is Annotated else kinds[0]
    return kind if get_origin(kind) is Literal or kind in (bool, int, float, str) else str


def _threshold_owner(name: str) -> str:
    from rap.rap_core.estimators import FILTERS, REBALANCERS
    for part in [*FILTERS.values(), *REBALANCERS.values()]:
        if name in part.thresholds.model_fields:
            return f"Thresholds: {part.name}"
    return "Thresholds"


def selection_options(mode: str) -> list[inspect.Parameter]:
    """select's and retune's options, one per flat flow parameter (rap_core.params): a new
    estimator's thresholds are flags with no change here. Every default is None, so only
    the flags given override the parameter model's defaults."""
    from rap.rap_core.params import FLOW_PARAMETERS, flow_parameter_fields
    options = []
    for name, field in flow_parameter_fields().items():
        group = FLOW_PARAMETERS[name][0]
        if name == "mode" or (mode == "select" and name == "run") or (
                mode == "retune" and group != "thresholds" and name not in RETUNE_PARAMETERS):
            continue
        kind = _cli_type(field.annotation)
        if name == "method":
            from rap.rap_core.estimators import METHODS
            kind = Literal[tuple(sorted(METHODS))]
        panel = (_threshold_owner(name) if group == "thresholds" else
                 ROLLOUT_ENGINE_PANEL if name.startswith("engine") else PANELS[group])
        default = field.default
        shown = False if default is None else str(default)
        option = typer.Option(FLAG_NAMES.get(name, "--" + name.replace("_", "-")),
                              help=escape(field.description), rich_help_panel=panel,
                              show_default=shown)
        options.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                         annotation=Annotated[Optional[kind], option]))
    return options


def params_from_options(mode: str, options: dict):
    """RapParams from the flags given (None: not given)."""
    from rap.rap_core.params import params_from_flat
    return params_from_flat({"mode": mode, **{k: v for k, v in options.items()
                                               if v is not None}})


def format_summary(summary: dict, settings: Settings) -> str:
    """The funnel step by step, the reasons, and where everything went."""
    from rap.flows.report import coverage_lines
    from rap.rap_core.estimators.stored import readmitted, reason_label
    f = summary["funnel"]
    steps = [k for k in f if k.startswith("after_")]
    width = max([11] + [len(step) for step in steps])
    back = readmitted(f)
    selected = "   <- selected" + (f" (re-admitted after a drop by {back})" if back else "")
    lines = [f"RAP {summary['mode']} run {summary['run_id']}"
             f" (method {summary.get('method', 'rap')})",
             f"  {'pool rows':<{width}} {f['pool_rows']:>8}   "
             f"(errors {f['errors']}, duplicates {f['duplicates']})"]
    lines += [f"  {'after ' + step[6:].upper():<{width}} {f[step]:>8}"
              + (selected if step == steps[-1] else "") for step in steps]
    if summary.get("thresholds"):
        lines += ["  thresholds  " + " ".join(f"{k}={v}" for k, v in
                                            summary["thresholds"].items())]
    lines += ["  by state / stage / reason (every pool row once):"]
    lines += [f"    {r['state']:<9}{r['stage']:<12}{reason_label(r):<44}{r['n']:>8}"
              for r in summary["reasons"]]
    lines += coverage_lines(summary)
    lines += [f"  samples inferred {summary['samples_inferred']}"
              + (f" ({summary['inference_s']:.1f} s)" if summary.get("inference_s") else "")
              + f", found stored {summary['samples_stored']}",
              *_phase_lines(summary.get("inference_phases") or {}),
              *([f"  rollouts    engine {summary['engine']}"
                 + (f" at {summary['engine_url']}" if summary.get("engine_url") else "")]
                if summary.get("engine", "transformers") != "transformers" else []),
              f"  DuckDB      {summary['duckdb_path']}",
              f"  MLflow run  {_tracking(summary)}  [{settings.mlflow_tracking_uri}]",
              f"  export      {summary['export_path'] or '(none)'}",
              f"  report      {summary.get('report_path') or '(not written: rap report)'}"]
    return "\n".join(lines)


def _phase_lines(phases: dict) -> list[str]:
    """Generated tokens per rollout phase, and the samples whose text-only rollouts were
    skipped."""
    tokens = [f"{p} {f['generated_tokens']:,}" for p, f in phases.items()
              if f.get("generated_tokens")]
    skipped = phases.get("text-only", {}).get("skipped_samples")
    lines = [f"  generated tokens: {', '.join(tokens)}"] if tokens else []
    if skipped:
        lines.append(f"  text-only rollouts skipped for {skipped} samples with no right "
                     "multimodal answer (they cannot pass CDE or be DRM replacements; "
                     "--all-rollouts runs them)")
    return lines


def _tracking(summary: dict) -> str:
    if summary.get("tracking_failed"):
        return f"(logging FAILED, the selection is stored: rap track --run {summary['run_id']})"
    return summary["mlflow_run_id"] or "(not tracked)"



def selection_command(mode: str):
    def command(settings: Settings, **options) -> None:
        params = params_from_options(mode, options)
        print(format_summary(select(params, settings), settings))
    command.__name__ = mode
    command.__signature__ = inspect.Signature(
        [inspect.Parameter("settings", inspect.Parameter.POSITIONAL_ONLY)]
        + selection_options(mode))
    return command



def select(params, settings: Settings) -> dict:
    """select / retune: the run lock and the store are checked before Prefect starts (a
    second run, a damaged store or a store from a newer rap stop here, at once)."""
    from rap.rap_core.store.lock import RunLock
    from rap.rap_core.inputs import check_inputs
    from rap.rap_core.store.preflight import check_store
    with RunLock(settings.data_dir, params.wait_for_lock, say, hand_down=True):
        check_store(settings, write=True)
        check_inputs(params, settings.duckdb_path)
        from rap.flows import rap as flow_module
        from rap.flows.terminal import PhaseBars, terminal_progress
        with terminal_progress() as progress:
            listener = progress and PhaseBars(progress)
            if listener:
                flow_module.PROGRESS_LISTENERS.append(listener)
            try:
                return flow_module.run_flow(params)
            finally:
                if listener:
                    flow_module.PROGRESS_LISTENERS.remove(listener)


def sweep(settings: Settings, **options) -> None:
    from rap.flows.sweep import sweep_command
    sweep_command(settings, **options)


def _sweep_signature() -> inspect.Signature:
    from rap.flows.sweep import signature
    return inspect.Signature([inspect.Parameter("settings", inspect.Parameter.POSITIONAL_ONLY)]
                             + list(signature().parameters.values()))


sweep.__signature__ = _sweep_signature()
