"""The `rap` flow: RAP data selection over a pool, as a Prefect DAG.

    rap select                      # embedded default: easy-VQA slice + the demo model
    rap select --data pool.jsonl --model /ckpt/Qwen2-VL-2B-Instruct --device cuda --dtype bfloat16
    rap retune --lambda-c 0.3       # re-select from stored facts, no model is loaded
    prefect deployment run rap/retune --param lambda_c=0.3 --watch   # the same on a worker

mode=select: ingest -> ask DuckDB what is missing -> text-only / multimodal inference and
attention extraction for those samples only -> CDE/ACE -> DRM -> store, export, MLflow.
mode=retune: the same selection over a previous run's pool from stored facts.

The flow's parameters are flat (one per field of RapParams, see FLOW_PARAMETERS), typed and
described, so the Prefect UI shows a form and a deployment refuses bad values at submission.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Annotated

import polars as pl
from prefect import flow, get_run_logger
from prefect.artifacts import (create_markdown_artifact, create_progress_artifact,
                               update_progress_artifact)
from prefect.states import Failed
from pydantic import ValidationError

from rap.flows.report import selection_markdown
from rap.flows.runners import shard_runner
from rap.rap_core.estimators import plan as method_plan
from rap.rap_core.params import (FLOW_PARAMETERS, LEGACY_THRESHOLDS, FactKeys, RapParams,
                             flat_params, flow_parameter_fields, inherit_base_run,
                             explain, legacy_columns, params_from_flat)
from rap.rap_core.errors import ModelLoadError, PoolReadError, StoreError, ThresholdError
from rap.rap_core.inputs import check_inputs
from rap.rap_core.store.lock import RunLock
from rap.rap_core.store.preflight import check_store, prepare_data_dir
from rap.rap_core.settings import Settings
from rap.rap_core.store import SelectionRun, open_store
from rap.tasks.estimate import apply_filters, estimate_difficulty, replacement, resolve_groups
from rap.tasks.inference import attention_extraction, multimodal_inference, text_only_inference
from rap.tasks.ingest import ingest, register_model
from rap.tasks.selection import export_selection, track, write_run_report, write_selection
from rap.tasks.store import missing_attention, missing_rollouts, write_facts

# multimodal first: a sample none of whose multimodal rollouts is right needs no text-only ones
PHASES = ("multimodal", "text-only", "attention")
PHASE_FACT = {"text-only": "text", "multimodal": "mm", "attention": "attention"}


USER_ERRORS = (ValidationError, PoolReadError, ModelLoadError, StoreError, ThresholdError)
# called with (todo, done) per phase on every update; the CLI draws its bars from them
PROGRESS_LISTENERS: list[Callable[[dict[str, int], dict[str, int]], None]] = []


class InferenceProgress:
    """One Prefect progress artifact over the three inference phases of a run (and the
    listeners' bars)."""

    EVERY_S = 10.0  # each update is an API call; on 2 cores they add up

    def __init__(self, todo: dict[str, int]):
        self.todo, self.done = dict(todo), dict.fromkeys(todo, 0)
        self.shown, self.last = 0.0, time.monotonic()
        self.artifact = _shown_only(create_progress_artifact, 0.0, key="rap-inference",
                                    description=self._text())
        self._tell()

    def _text(self) -> str:
        return "Inference: " + " · ".join(f"{p} {self.done[p]}/{self.todo[p]}" for p in PHASES)

    def set_todo(self, phase: str, n: int) -> None:
        self.todo[phase] = n
        self._tell()

    def _tell(self) -> None:
        for listener in PROGRESS_LISTENERS:
            listener(dict(self.todo), dict(self.done))

    def update(self, phase: str, done: int, force: bool = False) -> None:
        self.done[phase] = done
        self._tell()
        if self.artifact is None or not force and time.monotonic() - self.last < self.EVERY_S:
            return
        self.last = time.monotonic()
        total = sum(self.todo.values())
        # never moves backwards when a later phase's count turns out larger than estimated
        self.shown = max(self.shown, 100.0 * sum(self.done.values()) / max(total, 1))
        _shown_only(update_progress_artifact, self.artifact, self.shown,
                    description=self._text())


def _shown_only(create_or_update, *args, **kwargs):
    """Artifacts are for the UI: failing to write one must not fail a run."""
    try:
        return create_or_update(*args, **kwargs)
    except Exception as exc:  # any API or network error
        get_run_logger().warning("could not write the %s artifact: %s",
                                 create_or_update.__name__, exc)
        return None


def _shards(frame: pl.DataFrame, size: int):
    return [frame.slice(i, size) for i in range(0, frame.height, size)]


def _run_phase(name, task_fn, table, todo, params, settings, model, progress, runner,
               **kwargs) -> dict:
    """Run task_fn shard by shard, storing each shard as soon as it is done; returns the
    seconds spent in engine calls and in DuckDB writes."""
    log, done, start = get_run_logger(), 0, time.monotonic()
    spent = {"engine_s": 0.0, "write_s": 0.0, "generated_tokens": 0}
    shards = _shards(todo, params.shard_size)
    results = runner.results(name, task_fn, shards, params, model, progress, **kwargs)
    for shard, result in zip(shards, results):
        written = time.perf_counter()
        write_facts(settings, table, result)
        spent["write_s"] += time.perf_counter() - written
        spent["engine_s"] += result.engine_s
        if "token_ids" in result.facts.columns and name != "attention":
            spent["generated_tokens"] += int(result.facts["token_ids"].list.len().sum() or 0)
        done += shard.height
        progress.update(name, done, force=True)
        rate = done / max(time.monotonic() - start, 1e-9)
        log.info("%s: %d/%d samples (%.1f samples/s, ETA %.0f s)", name, done, todo.height,
                 rate, (todo.height - done) / rate)
    return spent


def _infer_missing(params: RapParams, settings: Settings, keys: FactKeys, model,
                   timings: dict) -> set[str]:
    """Infer only the facts DuckDB lacks; returns the ids of samples that needed inference
    and puts each phase's wall, engine and DuckDB-write seconds in timings."""
    where = dict(settings=settings, pool_id=keys.pool_id, model_key=keys.model_key,
                 settings_key=keys.settings_key)
    attention = dict(ace_key=keys.ace_key, response_choice=params.ace.response, **where)
    every_text = all_text_rollouts(params)
    plans = {"multimodal": lambda: missing_rollouts(condition="mm", **where),
             "text-only": lambda: missing_rollouts(condition="text", all_rollouts=every_text,
                                                   **where),
             "attention": lambda: missing_attention(**attention)}
    # only the facts the method's estimators need (pass_band: multimodal rollouts alone)
    needs = method_plan(params.method).needs
    plans = {phase: plan_of for phase, plan_of in plans.items() if PHASE_FACT[phase] in needs}
    if not plans:
        return set()
    # estimates for the progress bar; each phase plans again once the one before has
    # stored its facts and errors (a sample that failed multimodal is not run again, one
    # with no right multimodal answer gets no text-only rollouts)
    first = {phase: plan_of() for phase, plan_of in list(plans.items())[:1]}
    estimate = {phase: 0 for phase in PHASES}
    estimate.update({p: f.height for p, f in first.items()})
    if "text-only" in plans and "text-only" not in first:
        estimate["text-only"] = plans["text-only"]().height + estimate["multimodal"]
    if "attention" in plans:
        estimate["attention"] = estimate["multimodal"] + plans["attention"]().height
    if not any(estimate.values()):
        return set()
    progress = InferenceProgress(estimate)
    with shard_runner(params.runner) as runner:
        return _infer_phases(params, settings, keys, model, timings, first, plans, progress,
                             runner)


def _infer_phases(params, settings, keys, model, timings, first, plans, progress,
                  runner) -> set[str]:
    inferred: set[str] = set()
    tasks = [("multimodal", multimodal_inference, "rollouts"),
             ("text-only", text_only_inference, "rollouts"),
             ("attention", attention_extraction, "attention_stats")]
    for name, task_fn, table in tasks:
        if name not in plans:
            continue
        todo = first[name] if name in first else plans[name]()
        progress.set_todo(name, todo.height)
        inferred |= set(todo["sample_id"])
        options = (dict(head_reduce=params.ace.head_reduce, fact_key=keys.ace_key)
                   if name == "attention" else
                   dict(rollout=params.rollout, fact_key=keys.settings_key))
        if todo.height and bool(todo["retrying"].any()):
            # asked again after the server was unavailable: not the failed shards' cached
            # results (the task cache keys a shard by its samples)
            task_fn = task_fn.with_options(refresh_cache=True)
        start = time.perf_counter()
        spent = _run_phase(name, task_fn, table, todo, params, settings, model, progress,
                           runner, **options)
        timings[name] = {"seconds": round(time.perf_counter() - start, 3),
                         **{k: round(v, 3) for k, v in spent.items()}}
    if "text-only" in plans and not all_text_rollouts(params):
        skipped = _skipped_text(settings, keys)
        timings["text-only"] = {**timings.get("text-only", {}), "skipped_samples": skipped}
        if skipped:
            get_run_logger().info("text-only: %d samples skipped (no multimodal rollout was "
                                  "right, so no text-only rollout can change their decision; "
                                  "--all-rollouts runs them)", skipped)
    return inferred


def all_text_rollouts(params: RapParams) -> bool:
    """Whether every sample gets its text-only rollouts: asked for, or needed by a filter at
    this run's thresholds (CDE at lambda_c < 0 cannot drop a never-right sample unseen)."""
    return params.all_rollouts or "text" in method_plan(params.method).needs_skipped(
        params.thresholds)


def _skipped_text(settings: Settings, keys: FactKeys) -> int:
    with open_store(settings.duckdb_path, read_only=True) as store:
        return int(store.query("queries/skipped_text", pool_id=keys.pool_id,
                               model_key=keys.model_key,
                               settings_key=keys.settings_key)["n"][0])


def _base_run(settings: Settings, run_id: str | None) -> SelectionRun:
    with open_store(settings.duckdb_path) as store:  # a writer: upgrades an older store
        return store.selection_run(run_id, "retune")


def _run_record(params: RapParams, keys: FactKeys, n_rows: int, inferred: int,
                stored: int, n_selected: int) -> SelectionRun:
    th, resolved = params.thresholds, method_plan(params.method)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return SelectionRun(
        run_id=f"{stamp}-{uuid.uuid4().hex[:6]}", mode=params.mode, base_run=params.base_run,
        method=params.method, stages=resolved.stages,
        rebalancer=resolved.rebalancer.name if resolved.rebalancer else None,
        **keys.model_dump(), **th.model_dump(include=set(LEGACY_THRESHOLDS)),
        drm_k=str(th.drm_k), params=params.model_dump_json(), samples_inferred=inferred,
        samples_stored=stored, n_rows=n_rows, n_selected=n_selected,
        created_at=datetime.now(timezone.utc).replace(tzinfo=None))


def _prepare_select(params: RapParams, settings: Settings, timings: dict
                    ) -> tuple[RapParams, FactKeys, int, int, float]:
    pool = ingest(params.data, settings, params.thresholds.group_by)
    model = register_model(params.model, params.rollout, params.ace, settings)
    settings_key = params.rollout.key(params.model.engine)
    keys = FactKeys(pool_id=pool.pool_id, model_key=model.model_key,
                    settings_key=settings_key, ace_key=params.ace.key(settings_key))
    start = time.perf_counter()
    inferred = _infer_missing(params, settings, keys, model, timings)
    seconds = time.perf_counter() - start
    eligible = pool.samples.filter(pl.col("image_paths").list.len() > 0).height
    return params, keys, len(inferred), eligible - len(inferred), seconds


def _prepare_retune(params: RapParams, settings: Settings, _timings: dict
                    ) -> tuple[RapParams, FactKeys, int, int, float]:
    """The base run's facts and parameters: thresholds not given are the base run's, and
    the pool, model and settings recorded are those whose facts are re-selected."""
    given, default = flat_params(params), flat_params(RapParams())
    ignored = [name for name, (group, _) in FLOW_PARAMETERS.items()
               if group in ("data", "model", "rollout", "ace", "runner")
               and given[name] != default[name]]
    if ignored:
        get_run_logger().warning("retune ignores %s: it re-selects the base run's pool with "
                                 "its model and settings", ", ".join(ignored))
    base = _base_run(settings, params.base_run)
    params = inherit_base_run(params, base.parameters, legacy_columns(base))
    params.base_run = base.run_id
    return params, base.fact_keys, 0, base.samples_inferred + base.samples_stored, 0.0


def run_rap(params: RapParams) -> dict:
    """The flow's body: select (or retune), store, export, track; returns the run summary."""
    settings = Settings.from_env()
    prepare_data_dir(settings)
    with RunLock(settings.data_dir, params.wait_for_lock, get_run_logger().warning):
        check_store(settings, write=True)
        return _select(params, settings)


def _select(params: RapParams, settings: Settings) -> dict:
    prepare = _prepare_retune if params.mode == "retune" else _prepare_select
    phases: dict = {}
    params, keys, inferred, stored, inference_s = prepare(params, settings, phases)
    # a retune's thresholds: the base run's where not given; the group key resolved (auto)
    group_by = resolve_groups(settings, keys.pool_id, params.thresholds.group_by)
    params.thresholds = th = params.thresholds.model_copy(update={"group_by": group_by})
    inputs = estimate_difficulty(settings, keys, th, params.method)
    decisions = replacement(apply_filters(inputs, th, params.method), th, params.method,
                            settings, keys.pool_id)
    run = _run_record(params, keys, inputs.height, inferred, stored,
                      n_selected=int((decisions["state"] == "selected").sum()))
    result = write_selection(settings, run, decisions)
    export_path = (export_selection(settings, run.run_id, keys.pool_id)
                   if params.export else None)
    report_path = write_run_report(settings, run.run_id)
    mlflow_id = (track(settings, run, params.model_dump(), result, decisions, export_path,
                       phases, report_path) if params.track else None)
    summary = {"run_id": run.run_id, "mode": params.mode, "method": params.method,
               "funnel": result["funnel"],
               "thresholds": {name: getattr(th, name)
                              for name in method_plan(params.method).threshold_names},
               "reasons": result["reasons"].to_dicts(),
               "coverage": result["coverage"].to_dicts(), "group_by": th.group_by,
               "coverage_floor": th.coverage_floor, "coverage_warn": th.coverage_warn,
               "samples_inferred": inferred,
               "samples_stored": stored, "inference_s": round(inference_s, 3),
               "inference_phases": phases,
               "duckdb_path": str(settings.duckdb_path),
               "engine": params.model.engine,
               "engine_url": params.model.engine_url if params.model.engine == "openai" else None,
               "export_path": export_path, "report_path": report_path,
               "mlflow_run_id": mlflow_id,
               "tracking_failed": params.track and mlflow_id is None, **keys.model_dump()}
    _shown_only(create_markdown_artifact,
                selection_markdown(summary, settings.mlflow_tracking_uri), key="rap-selection",
                description=f"RAP {params.mode} run {run.run_id}: {run.n_selected} "
                "selected")
    _shown_only(_label_flow_run, params, run, inputs.height)
    get_run_logger().info("run %s: %d rows -> %d selected (MLflow run %s, export %s)",
                          run.run_id, inputs.height, run.n_selected, mlflow_id,
                          export_path)
    return summary


def _label_flow_run(params: RapParams, run: SelectionRun, n_rows: int) -> None:
    """Name the flow run after what it made (`select rap 1000->339 20261130-...`) and tag it,
    so the Prefect UI's list of runs says what each one is."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run
    if not flow_run.id:
        return
    name = f"{params.mode} {params.method} {n_rows}->{run.n_selected} {run.run_id}"
    tags = {"rap", f"mode:{params.mode}", f"method:{params.method}", f"run:{run.run_id}",
            f"engine:{params.model.engine}", *(flow_run.tags or [])}
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, name=name, tags=sorted(tags))


def _rap(**parameters):
    """The flow's body; a mistake in its input (parameters, pool, model, group column, a
    store or data folder it cannot use) fails the run with one line as its state's message,
    logged as such, not a traceback."""
    try:
        params = params_from_flat(parameters)
        check_inputs(params)  # the group column: at ingest, or resolve-groups for a retune
        return run_rap(params)
    except USER_ERRORS as exc:
        message = explain(exc) if isinstance(exc, ValidationError) else str(exc)
        get_run_logger().error("rap: error: %s", message)
        return Failed(message=message)


def _flat_signature() -> inspect.Signature:
    def annotation(field):
        return Annotated[(field.annotation, *field.metadata)] if field.metadata \
            else field.annotation
    return inspect.Signature(
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=field.default,
                           annotation=annotation(field))
         for name, field in flow_parameter_fields().items()], return_annotation=dict)


# Prefect reads the form (types, bounds, defaults) from the signature and the descriptions
# from the docstring's Args section; both come from RapParams, the one definition.
_rap.__signature__ = _flat_signature()
DESCRIPTION = "RAP selection: CDE -> ACE -> DRM over a pool, every fact stored in DuckDB."
_rap.__doc__ = DESCRIPTION + "\n\nArgs:\n" + "\n".join(
    f"    {name}: {field.description}" for name, field in flow_parameter_fields().items())
rap = flow(name="rap", description=DESCRIPTION, log_prints=True)(_rap)


def run_flow(params: RapParams) -> dict:
    """The `rap` flow (a Prefect flow run) with its parameters given as a RapParams."""
    return rap(**flat_params(params))
