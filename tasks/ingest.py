"""Ingest tasks: read a pool, register it and the model in the store."""

from __future__ import annotations

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from rap.rap_core.grading import GRADER_VERSION
from rap.rap_core.models import ResolvedModel, model_row, resolve_model
from rap.rap_core.params import AceSettings, DataSpec, ModelSpec, RolloutSettings
from rap.rap_core.io.groups import AUTO
from rap.rap_core.io.readers import Pool, read_pool
from rap.rap_core.settings import Settings
from rap.rap_core.store import open_store


@task(name="ingest", cache_policy=NO_CACHE)
def ingest(data: DataSpec, settings: Settings, group_by: str = AUTO) -> Pool:
    """Read and validate the pool; store samples, one status row per input row and each
    row's groups (rap_core/io/groups)."""
    pool = read_pool(data, settings.images_dir, group_by)
    rows = pool.rows.with_columns(pool_id=pl.lit(pool.pool_id))
    groups = pool.groups.with_columns(pool_id=pl.lit(pool.pool_id))
    meta = pl.DataFrame([{"pool_id": pool.pool_id, "source": pool.source,
                          "n_rows": pool.rows.height, "n_samples": pool.samples.height}])
    with open_store(settings.duckdb_path) as store, store.transaction():
        store.upsert("samples", pool.samples)
        store.upsert("pool_rows", rows)
        store.execute("writes/clear_pool_groups", pool_id=pool.pool_id,
                      keys=list(pool.group_keys))
        store.upsert("pool_groups", groups)
        store.upsert("pools", meta)
    errors = pool.rows.filter(pl.col("row_status") == "error").height
    get_run_logger().info("ingest: %d rows -> %d samples, %d row errors (pool %s)",
                          pool.rows.height, pool.samples.height, errors, pool.pool_id)
    return pool


@task(name="register-model", cache_policy=NO_CACHE)
def register_model(model: ModelSpec, rollout: RolloutSettings, ace: AceSettings,
                   settings: Settings) -> ResolvedModel:
    """Resolve the model to a key (building the embedded one if needed) and record the keys."""
    resolved = resolve_model(model, settings, log=get_run_logger().info)
    rollout_key = rollout.key(model.engine)
    with open_store(settings.duckdb_path) as store, store.transaction():
        store.upsert("models", model_row(resolved, model))
        store.upsert("rollout_settings", pl.DataFrame([{
            "settings_key": rollout_key, **rollout.model_dump(),
            "grader_version": GRADER_VERSION, "engine": model.engine}]))
        store.upsert("ace_settings", pl.DataFrame([{
            "ace_key": ace.key(rollout_key), "settings_key": rollout_key,
            "head_reduce": ace.head_reduce, "response_choice": ace.response}]))
    get_run_logger().info("model %s -> key %s", resolved.path, resolved.model_key)
    return resolved
