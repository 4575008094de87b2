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
from functools import wraps

import typer

from rap.flows.commands import evidence, export, pages, selection, server, store
from rap.flows.commands.selection import (format_summary, params_from_options,  # noqa: F401
                                          select, selection_options)
from rap.rap_core.settings import Settings, configure_process_env

app = typer.Typer(name="rap", help="RAP data selection for multimodal reasoning "
                  "(CDE -> ACE -> DRM).", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})
server_app = typer.Typer(help="A Prefect server, the deployments of prefect.yaml and a "
                         "worker, for `prefect deployment run rap/select`.",
                         no_args_is_help=True)
app.add_typer(server_app, name="server")

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


def _register(group: typer.Typer, name: str, body, help: str | None = None,
              guard: str | None = None) -> None:
    """A command module's function as `rap [group] name`, behind _guarded."""
    group.command(name, help=help)(_guarded(guard or name)(body))


_register(app, "select", selection.selection_command("select"),
          help="Infer what the store lacks for the pool, then select.")
_register(app, "retune", selection.selection_command("retune"),
          help="Re-select a stored run's pool from its stored facts (no model is loaded): "
          "another method or other thresholds, in seconds.")
_register(app, "sweep", selection.sweep,
          help="Select every point of a threshold grid from a stored run's facts and print "
          "one table (no model, no Prefect, nothing written unless asked).")
for _name, _body in (("query", store.query_command), ("runs", store.runs_command),
                     ("compare", store.compare_command), ("report", pages.report_command),
                     ("track", pages.track_command),
                     ("demo-model", evidence.demo_model_command),
                     ("validate", evidence.validate_command),
                     ("experiment", evidence.experiment_command),
                     ("export", export.export_command)):
    _register(app, _name, _body)
for _name, _body in (("start", server.server_start), ("deploy", server.server_deploy),
                     ("mlflow", server.server_mlflow), ("worker", server.server_worker)):
    _register(server_app, _name, _body, guard=f"server {_name}")


if __name__ == "__main__":
    sys.exit(main())
