"""Store tasks: ask DuckDB what is missing, and write facts (the single writer)."""

from __future__ import annotations

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from rap.rap_core.engines.inference import CONDITIONS, ShardResult
from rap.rap_core.settings import Settings
from rap.rap_core.store import open_store


@task(name="plan-rollouts", cache_policy=NO_CACHE)
def missing_rollouts(settings: Settings, pool_id: str, model_key: str, settings_key: str,
                     condition: str, all_rollouts: bool = True) -> pl.DataFrame:
    """Samples of the pool with no stored rollouts (and no stored error) for these keys;
    text-only ones only where a multimodal rollout was right, unless all_rollouts."""
    with open_store(settings.duckdb_path) as store:
        return store.query("queries/missing_rollouts", pool_id=pool_id, model_key=model_key,
                           settings_key=settings_key, condition=condition,
                           all_rollouts=all_rollouts)


@task(name="plan-attention", cache_policy=NO_CACHE)
def missing_attention(settings: Settings, pool_id: str, model_key: str, settings_key: str,
                      ace_key: str, response_choice: str) -> pl.DataFrame:
    """Samples with multimodal rollouts but no attention statistics, with the rollout to use."""
    with open_store(settings.duckdb_path) as store:
        return store.query("queries/missing_attention", pool_id=pool_id, model_key=model_key,
                           settings_key=settings_key, ace_key=ace_key,
                           response_choice=response_choice)


@task(name="write-facts", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def write_facts(settings: Settings, table: str, result: ShardResult) -> int:
    """Store a shard's facts and errors in one transaction: the whole shard or nothing."""
    with open_store(settings.duckdb_path) as store, store.transaction():
        store.upsert("inference_errors", result.errors)
        for keys, ids in _stored(table, result.facts):
            store.execute("writes/clear_retried_errors", sample_ids=ids, **keys)
        return store.upsert(table, result.facts)


STAGE_OF_CONDITION = {condition: stage for stage, (condition, _) in CONDITIONS.items()}


def _stored(table: str, facts: pl.DataFrame):
    """(model_key, fact_key, stage) and the sample ids of the facts a shard stores."""
    if facts.is_empty():
        return []
    if table == "attention_stats":
        groups = facts.group_by("model_key", "ace_key").agg(pl.col("sample_id").unique())
        return [({"model_key": m, "fact_key": a, "stage": "attention"}, ids)
                for m, a, ids in groups.iter_rows()]
    groups = facts.group_by("model_key", "settings_key", "condition").agg(
        pl.col("sample_id").unique())
    return [({"model_key": m, "fact_key": k, "stage": STAGE_OF_CONDITION[c]}, ids)
            for m, k, c, ids in groups.iter_rows()]
