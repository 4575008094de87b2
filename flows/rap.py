"""The `rap` flow: RAP data selection over a pool, as a Prefect DAG.

    rap select                      # embedded default: easy-VQA slice + the demo model
    rap select --data pool.jsonl --model /ckpt/Qwen2-VL-2B-Instruct --device cuda --dtype bfloat16
    rap retune --lambda-c 0.3       # re-select from stored facts, no model is loaded

mode=select: ingest -> ask DuckDB what is missing -> text-only / multimodal inference and
attention extraction for those samples only -> CDE/ACE -> DRM -> store, export, MLflow.
mode=retune: the same selection over a previous run's pool from stored facts.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import polars as pl
from prefect import flow, get_run_logger

from rap_core.params import RapParams
from rap_core.settings import Settings
from rap_core.store import StoreError, open_store
from tasks.estimate import cde_ace_filter, estimate_difficulty, replacement
from tasks.inference import attention_extraction, multimodal_inference, text_only_inference
from tasks.ingest import ingest, register_model
from tasks.selection import export_selection, track, write_selection
from tasks.store import missing_attention, missing_rollouts, write_facts


def _shards(frame: pl.DataFrame, size: int):
    return [frame.slice(i, size) for i in range(0, frame.height, size)]


def _run_phase(name, task_fn, table, todo, params, settings, model, **kwargs) -> None:
    """Run task_fn shard by shard, storing each shard as soon as it is done."""
    log, done, start = get_run_logger(), 0, time.monotonic()
    for shard in _shards(todo, params.shard_size):
        result = task_fn(shard, model, params.model, batch_size=params.batch_size, **kwargs)
        write_facts(settings, table, result)
        done += shard.height
        rate = done / max(time.monotonic() - start, 1e-9)
        log.info("%s: %d/%d samples (%.1f samples/s, ETA %.0f s)", name, done, todo.height,
                 rate, (todo.height - done) / rate)


def _infer_missing(params: RapParams, settings: Settings, keys: dict, model) -> set[str]:
    """Infer only the facts DuckDB lacks; returns the ids of samples that needed inference."""
    plan = dict(settings=settings, pool_id=keys["pool_id"], model_key=keys["model_key"],
                settings_key=keys["settings_key"])
    inferred: set[str] = set()
    for name, task_fn, condition in [("text-only", text_only_inference, "text"),
                                     ("multimodal", multimodal_inference, "mm")]:
        todo = missing_rollouts(condition=condition, **plan)
        inferred |= set(todo["sample_id"])
        _run_phase(name, task_fn, "rollouts", todo, params, settings, model,
                   rollout=params.rollout, fact_key=keys["settings_key"])
    todo = missing_attention(ace_key=keys["ace_key"], response_choice=params.ace.response, **plan)
    inferred |= set(todo["sample_id"])
    _run_phase("attention", attention_extraction, "attention_stats", todo, params, settings,
               model, head_reduce=params.ace.head_reduce, fact_key=keys["ace_key"])
    return inferred


def _base_run(settings: Settings, run_id: str | None) -> dict:
    with open_store(settings.duckdb_path, read_only=True) as store:
        found = store.query("queries/run_by_id", run_id=run_id).to_dicts()
    if not found:
        raise StoreError(f"no selection run {run_id!r} to retune" if run_id
                         else "no selection run to retune: run `rap select` first")
    return found[0]


def _run_record(params: RapParams, keys: dict, n_rows: int, inferred: int, stored: int) -> dict:
    th = params.thresholds
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return {"run_id": f"{stamp}-{uuid.uuid4().hex[:6]}", "mode": params.mode,
            "base_run": params.base_run, **keys, **th.model_dump(exclude={"drm_k"}),
            "drm_k": str(th.drm_k), "params": params.model_dump_json(),
            "samples_inferred": inferred, "samples_stored": stored, "n_rows": n_rows,
            "n_selected": 0, "export_path": None, "mlflow_run_id": None,
            "created_at": datetime.now(timezone.utc).replace(tzinfo=None)}


def _prepare_select(params: RapParams, settings: Settings) -> tuple[dict, int, int]:
    pool = ingest(params.data, settings)
    model = register_model(params.model, params.rollout, params.ace, settings)
    settings_key = params.rollout.key()
    keys = {"pool_id": pool.pool_id, "model_key": model.model_key,
            "settings_key": settings_key, "ace_key": params.ace.key(settings_key)}
    inferred = _infer_missing(params, settings, keys, model)
    eligible = pool.samples.filter(pl.col("image_paths").list.len() > 0).height
    return keys, len(inferred), eligible - len(inferred)


def _prepare_retune(params: RapParams, settings: Settings) -> tuple[dict, int, int]:
    base = _base_run(settings, params.base_run)
    params.base_run = base["run_id"]
    keys = {k: base[k] for k in ("pool_id", "model_key", "settings_key", "ace_key")}
    return keys, 0, base["samples_inferred"] + base["samples_stored"]


@flow(name="rap", log_prints=True)
def rap(params: RapParams = RapParams()) -> dict:
    """RAP selection: CDE -> ACE -> DRM over a pool, every fact stored in DuckDB."""
    settings = Settings.from_env()
    prepare = _prepare_retune if params.mode == "retune" else _prepare_select
    keys, inferred, stored = prepare(params, settings)
    th = params.thresholds
    inputs = estimate_difficulty(settings, keys, th)
    decisions = replacement(cde_ace_filter(inputs, th), th)
    run = _run_record(params, keys, inputs.height, inferred, stored)
    run["n_selected"] = int((decisions["state"] == "selected").sum())
    result = write_selection(settings, run, decisions)
    export_path = export_selection(settings, run["run_id"]) if params.export else None
    mlflow_id = (track(settings, run, params.model_dump(), result, decisions, export_path)
                 if params.track else None)
    return {"run_id": run["run_id"], "mode": params.mode, "funnel": result["funnel"],
            "reasons": result["reasons"].to_dicts(), "samples_inferred": inferred,
            "samples_stored": stored, "duckdb_path": str(settings.duckdb_path),
            "export_path": export_path, "mlflow_run_id": mlflow_id, **keys}
