"""The `rap` command line: run the flow locally (Prefect ephemeral mode) and query the store.

    rap select [--data PATH] [--model DIR] [options]   # infer what is missing, then select
    rap select --method pass_band|random               # the baselines, same interface
    rap retune [--run RUN] [--lambda-c 0.3 ...]         # re-select from stored facts only
    rap query "SELECT * FROM funnel"                    # one read-only SELECT over the store
    rap query "SELECT * FROM selected" --out sel.csv    # its whole result as a file
    rap runs                                            # the selection runs so far
    rap compare RUN_A RUN_B                             # overlap, Jaccard, crosstab
    rap sweep --lambda-c 0:0.8:0.1 --lambda-a 1e-5,0.1  # a threshold grid, from stored facts
    rap track [--run RUN]                               # log a stored run to MLflow later
    rap demo-model [--retrain]                          # train / show the embedded model
    rap validate                                        # planted priors, question types
    rap experiment                                      # the miniature of the paper's claim
    rap server start | deploy | worker                  # Prefect server, deployments, worker
    rap export --format verl --out sel.parquet          # a selection for a trainer
    rap export --check sel.parquet --format verl        # check a trainer file
"""

from __future__ import annotations

import inspect
import sys
import types
from functools import wraps
from pathlib import Path
from typing import Annotated, Literal, Optional, Union, get_args, get_origin

import typer
from rich.markup import escape

from rap.rap_core.settings import Settings, configure_process_env

app = typer.Typer(name="rap", help="RAP data selection for multimodal reasoning "
                  "(CDE -> ACE -> DRM).", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})
server_app = typer.Typer(help="A Prefect server, the deployments of prefect.yaml and a "
                         "worker, for `prefect deployment run rap/select`.",
                         no_args_is_help=True)
app.add_typer(server_app, name="server")

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


def _say(line: str) -> None:
    print(line, flush=True)


def demo_model(settings: Settings, retrain: bool) -> str:
    from rap.flows.terminal import TrainingBars, terminal_progress
    from rap.rap_core.demo.model import obtain_demo_model, read_meta
    with terminal_progress() as progress:
        path, trained = obtain_demo_model(settings, _say, retrain=retrain,
                                          progress=progress and TrainingBars(progress))
    meta = trained or read_meta(path)
    acc, fit, vision = meta["test_accuracy"], meta["train"], meta["vision"]
    source = ("trained now" if trained else "shipped with rap" if meta.get("shipped")
              else "trained earlier in the data folder")
    return "\n".join([
        f"demo model {meta['version']} ({source}): {path}",
        f"  trained in {meta['seconds']:.0f} s: vision tower {vision['steps']} steps "
        f"({vision['seconds']:.0f} s), then {fit['steps']} steps on {fit['examples_seen']} "
        f"easy-VQA examples ({fit['seconds']:.0f} s), final loss {fit['final_loss']:.3f}",
        f"  test accuracy (greedy, {acc['questions']} test questions): "
        f"{acc['with_image']:.1%} with the image, {acc['text_only']:.1%} text only",
        f"  use it: rap select (default) or --model {path}"])


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


WRITING_COMMANDS = {"select", "retune", "track", "demo-model", "validate", "experiment",
                    "server", "report"}
# they read the store first
READING_COMMANDS = {"query", "runs", "compare", "export", "track", "report", "sweep"}


def _guarded(command: str):
    """A command's body with the data folder and store checked first, and the errors of
    input and environment as one line and exit status 2 (a bug still raises)."""
    def decorate(body):
        @wraps(body)
        def run(**kwargs):
            settings = Settings.from_env()
            configure_process_env(settings.data_dir)
            code = _checked(command, settings, lambda: body(settings, **kwargs),
                            reads_store=not kwargs.get("check"))
            if code:
                raise typer.Exit(code)
        run.__signature__ = inspect.Signature(
            list(inspect.signature(body, eval_str=True).parameters.values())[1:])
        return run
    return decorate


def _checked(command: str, settings: Settings, body, reads_store: bool = True) -> int:
    from pydantic import ValidationError

    from rap.rap_core.io.outputs import OutputError
    from rap.rap_core.io.readers import PoolReadError
    from rap.rap_core.store import StoreError
    from rap.rap_core.store.query import QueryRefused
    from rap.rap_core.errors import SweepError, ThresholdError
    try:
        from rap.rap_core.store.preflight import check_store, prepare_data_dir
        if command.split()[0] in WRITING_COMMANDS:
            prepare_data_dir(settings)
        if command in READING_COMMANDS and reads_store:
            check_store(settings, write=False)  # whole, and of this rap's schema
        return body() or 0
    except ValidationError as exc:
        from rap.rap_core.params import explain
        return _fail(explain(exc))
    except (PoolReadError, StoreError, OutputError, QueryRefused, SweepError,
            ThresholdError) as exc:
        return _fail(exc)
    except Exception as exc:
        return _known_failure(exc, settings)


def _fail(exc: BaseException | str) -> int:
    print(f"rap: error: {exc}", file=sys.stderr)
    return 2


def _known_failure(exc: Exception, settings: Settings) -> int:
    """Errors of the environment and of the engine: one line, exit 2; a bug still raises."""
    import duckdb

    from rap.flows.server import ServerError
    from rap.rap_core.engines.checkpoints import ModelLoadError
    from rap.rap_core.errors import EngineConfigError, RunnerError
    from rap.rap_core.store import StoreDamaged, damage_detail, damage_in
    if isinstance(exc, duckdb.Error) and damage_in(exc):
        return _fail(StoreDamaged(settings.duckdb_path, damage_detail(exc)))
    if isinstance(exc, (duckdb.Error, ModelLoadError, ServerError, RunnerError,
                        EngineConfigError)):
        return _fail(exc)
    from prefect.exceptions import FailedRun
    if isinstance(exc, FailedRun):  # the flow refused its input: its state's message
        return _fail(exc)
    if isinstance(exc, OSError) and exc.filename:
        return _fail(f"{exc.strerror or exc}: {exc.filename}")
    raise exc


def main(argv: list[str] | None = None) -> int:
    """The `rap` command; returns its exit status (2: bad input or environment). A command
    line Click cannot parse (an unknown flag, a bad value) is one line too."""
    try:  # the Click that Typer runs on (vendored by Typer since 0.2x)
        from typer._click import exceptions as click
    except ImportError:
        from click import exceptions as click
    try:
        code = app(args=argv, prog_name="rap", standalone_mode=False)
    except click.NoArgsIsHelpError as exc:
        exc.show()
        return exc.exit_code
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "rap"
        message = exc.format_message().replace("Value error, ", "")
        return _fail(f"{message} (`{command} --help` lists the options)")
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        return 1
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(bool(exc.code))
    return code if isinstance(code, int) else 0


def parse_command(argv: list[str]) -> tuple[list[str], dict]:
    """The command path and its parsed options, without running it (for tests and tools)."""
    command, names, args = typer.main.get_command(app), [], list(argv)
    while hasattr(command, "commands") and args and args[0] in command.commands:
        command = command.commands[args[0]]
        names.append(args.pop(0))
    ctx = command.make_context(" ".join(["rap", *names]), args)
    return names, ctx.params


def parse_params(argv: list[str]):
    """The RapParams a `select` or `retune` command line stands for."""
    names, options = parse_command(argv)
    return params_from_options(names[0], options)


def _selection_command(mode: str):
    def command(settings: Settings, **options) -> None:
        params = params_from_options(mode, options)
        print(format_summary(select(params, settings), settings))
    command.__name__ = mode
    command.__signature__ = inspect.Signature(
        [inspect.Parameter("settings", inspect.Parameter.POSITIONAL_ONLY)]
        + selection_options(mode))
    return command


app.command("select", help="Infer what the store lacks for the pool, then select.")(
    _guarded("select")(_selection_command("select")))
app.command("retune", help="Re-select a stored run's pool from its stored facts (no model "
            "is loaded): another method or other thresholds, in seconds.")(
    _guarded("retune")(_selection_command("retune")))


def select(params, settings: Settings) -> dict:
    """select / retune: the run lock and the store are checked before Prefect starts (a
    second run, a damaged store or a store from a newer rap stop here, at once)."""
    from rap.rap_core.store.lock import RunLock
    from rap.rap_core.inputs import check_inputs
    from rap.rap_core.store.preflight import check_store
    with RunLock(settings.data_dir, params.wait_for_lock, _say, hand_down=True):
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


def _sweep(settings: Settings, **options) -> None:
    from rap.flows.sweep import sweep_command
    sweep_command(settings, **options)


def _sweep_signature() -> inspect.Signature:
    from rap.flows.sweep import signature
    return inspect.Signature([inspect.Parameter("settings", inspect.Parameter.POSITIONAL_ONLY)]
                             + list(signature().parameters.values()))


_sweep.__signature__ = _sweep_signature()
app.command("sweep", help="Select every point of a threshold grid from a stored run's facts "
            "and print one table (no model, no Prefect, nothing written unless asked).")(
    _guarded("sweep")(_sweep))


def _open_range(low: float, high: float):
    """An option callback: low < value < high."""
    def check(value):
        if value is not None and not low < value < high:
            raise typer.BadParameter(f"{value} is outside ({low}, {high})")
        return value
    return check


@app.command("query")
@_guarded("query")
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


@app.command("runs")
@_guarded("runs")
def runs_command(settings: Settings) -> None:
    """List the selection runs."""
    print(run_query(settings, RUNS_SQL, 1000))


@app.command("compare")
@_guarded("compare")
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


@app.command("report")
@_guarded("report")
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


@app.command("track")
@_guarded("track")
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


@app.command("demo-model")
@_guarded("demo-model")
def demo_model_command(settings: Settings,
                       retrain: Annotated[bool, typer.Option(
                           help="train it again from scratch (minutes)")] = False) -> None:
    """Show the embedded easy-VQA model (shipped with rap) and its test accuracy, or train
    it again."""
    print(demo_model(settings, retrain))


@app.command("validate")
@_guarded("validate")
def validate_command(settings: Settings,
                     n: Annotated[int, typer.Option(min=2, max=9673,
                                                    help="test questions")] = 1000,
                     share: Annotated[float, typer.Option(
                         callback=_open_range(0.0, 1.0),
                         help="share rewritten to give the answer away, in (0, 1)")] = 0.3,
                     seed: int = 0,
                     model: Annotated[Optional[str], typer.Option(
                         help="model folder", show_default="the demo model")] = None,
                     phrasing: Annotated[Literal["seen", "unseen"], typer.Option(
                         help="plant statements in phrasings the demo model was trained to "
                         "read (seen) or in new ones (unseen)")] = "seen") -> None:
    """Planted language priors (ROC AUC of D) and the funnel by question type, on easy-VQA
    test questions."""
    from rap.flows.validate import validate
    report = validate(settings, n=n, share=share, seed=seed, model=model, phrasing=phrasing)
    print(report["text"])
    print(f"\nreport written to {report['report_path']}")


def _seed_list(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of integers")
    return seeds


@app.command("experiment")
@_guarded("experiment")
def experiment_command(settings: Settings,
                       trainer: Annotated[Literal["grpo", "sft"], typer.Option(
                           help="grpo: reinforcement learning on each arm's subset with "
                           "equal steps (the paper's setting); sft: supervised continuation, "
                           "equal epochs (the earlier stand-in)")] = "grpo",
                       seeds: Annotated[Optional[str], typer.Option(
                           callback=_seed_list, help="comma-separated seeds",
                           show_default="grpo 0,1,2,3,4; sft 0,1,2; --calibrate 10")] = None,
                       calibrate: Annotated[bool, typer.Option(
                           "--calibrate", help="grpo: instead of the arms, run the candidate "
                           "GRPO budgets on calibration questions (never an arm) and report "
                           "each one's gain over the base model")] = False,
                       budgets: Annotated[Optional[str], typer.Option(
                           help="--calibrate: comma-separated candidate names",
                           show_default="all of flows/experiment_calibration.CANDIDATES")
                       ] = None,
                       pool_size: Annotated[Optional[int], typer.Option(
                           min=10, max=30000, help="training questions the methods select "
                           "from", show_default="grpo 1000, sft 3000")] = None,
                       steps: Annotated[int, typer.Option(
                           min=1, max=100000, help="grpo: GRPO steps per arm")] = 120,
                       generations: Annotated[int, typer.Option(
                           min=2, max=64, help="grpo: answers sampled per question (the "
                           "group)")] = 8,
                       questions_per_step: Annotated[int, typer.Option(
                           min=1, max=1024, help="grpo: questions per GRPO step")] = 4,
                       lr: Annotated[float, typer.Option(
                           callback=_open_range(0.0, 1.0), help="grpo: learning rate")] = 3e-5,
                       beta: Annotated[float, typer.Option(
                           min=0.0, max=10.0, help="grpo: KL term's weight (0: none, TRL's "
                           "default)")] = 0.0,
                       test_questions: Annotated[int, typer.Option(
                           min=10, max=9673, help="grpo: test questions evaluated")] = 1000,
                       balanced_from: Annotated[int, typer.Option(
                           min=10, max=8000, help="grpo: other test questions the "
                           "prior-balanced test is drawn from (about half remain)")] = 3000,
                       base_questions: Annotated[int, typer.Option(
                           min=10, max=20000, help="grpo: questions the base model is "
                           "trained on")] = 2000,
                       base_steps: Annotated[int, typer.Option(
                           min=1, max=100000, help="grpo: the base model's answer steps "
                           "(vision steps: twice as many)")] = 300,
                       base_model: Annotated[Optional[str], typer.Option(
                           help="grpo: start every seed from this model folder instead of "
                           "training a base model")] = None,
                       epochs: Annotated[float, typer.Option(
                           callback=_open_range(0.0, 100.0),
                           help="sft: epochs over each subset")] = 3.0) -> None:
    """A miniature of the paper's claim: GRPO on six arms (RAP, RAP with a coverage floor,
    pass_band, random and stratified random of RAP's size, the whole pool), five seeds, on an
    in-distribution and a prior-balanced test (about 46 min on 2 cores); --calibrate: the
    budget's calibration runs; --trainer sft: the earlier supervised stand-in."""
    if trainer == "sft":
        from rap.flows.experiment import ExperimentConfig, run_experiment
        run_experiment(settings, ExperimentConfig(seeds=seeds or (0, 1, 2),
                                                  pool_size=pool_size or 3000,
                                                  epochs=epochs), log=_say)
        return
    from rap.flows.experiment_grpo import GrpoExperimentConfig, run_grpo_experiment
    from rap.rap_core.demo.grpo import GrpoSettings
    cfg = GrpoExperimentConfig(
        seeds=seeds or (0, 1, 2, 3, 4), pool_size=pool_size or 1000,
        test_questions=test_questions, balanced_from=balanced_from,
        base_questions=base_questions, base_steps=base_steps,
        base_vision_steps=2 * base_steps, base_model=base_model,
        grpo=GrpoSettings(steps=steps, generations=generations,
                          prompts_per_step=questions_per_step, lr=lr, beta=beta))
    if calibrate:
        from rap.flows.experiment_calibration import calibrate as run_calibration, candidates
        try:
            chosen = candidates(budgets)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--budgets")
        run_calibration(settings, chosen, seeds=seeds or (10,), cfg=cfg, log=_say)
        return
    run_grpo_experiment(settings, cfg, log=_say)


@app.command("export")
@_guarded("export")
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
        return check_file(check, format, _say)
    export_run(settings, run, format, out, data_source, _say, force=force)
    return 0


PORT = Annotated[Optional[int], typer.Option(min=1, max=65535, help="server port",
                                             show_default="PREFECT_API_URL if exported, "
                                             "else 4200")]
WAIT = Annotated[float, typer.Option(min=0.0, max=3600.0,
                                     help="seconds to wait for the server to answer")]


@server_app.command("start")
@_guarded("server start")
def server_start(settings: Settings, host: str = "127.0.0.1",
                 port: Annotated[int, typer.Option(min=1, max=65535)] = 4200) -> None:
    """Start a Prefect server (database in the data folder); runs in the foreground."""
    from rap.flows import server
    server.start_server(settings, host, port, _say)


@server_app.command("deploy")
@_guarded("server deploy")
def server_deploy(settings: Settings, port: PORT = None, wait: WAIT = 120.0) -> None:
    """Create the work pool if missing and register the deployments rap/select and
    rap/retune."""
    from rap.flows import server
    server.deploy(settings, port, _say, wait)


@server_app.command("mlflow")
@_guarded("server mlflow")
def server_mlflow(settings: Settings, host: str = "127.0.0.1",
                  port: Annotated[int, typer.Option(min=1, max=65535)] = 5000) -> None:
    """Start MLflow's UI over the data folder's runs (foreground; needs the full mlflow
    package, which make install adds)."""
    from rap.flows import server
    server.start_mlflow_ui(settings, host, port, _say)


@server_app.command("worker")
@_guarded("server worker")
def server_worker(settings: Settings, port: PORT = None, wait: WAIT = 120.0) -> None:
    """Create the work pool if missing and run a worker on it (foreground)."""
    from rap.flows import server
    server.start_worker(settings, port, _say, wait)


if __name__ == "__main__":
    sys.exit(main())
