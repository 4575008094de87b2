"""Estimation tasks: a method's scores from stored facts, its filters, its rebalancer."""

from __future__ import annotations

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from rap.rap_core.estimators import Context, plan
from rap.rap_core.estimators.select import filter_rows, rebalance
from rap.rap_core.estimators.stored import group_key, selection_inputs
from rap.rap_core.params import FactKeys, Thresholds
from rap.rap_core.settings import Settings
from rap.rap_core.store import StoreError, open_store


@task(name="resolve-groups", cache_policy=NO_CACHE)
def resolve_groups(settings: Settings, pool_id: str, requested: str) -> str:
    """The group key of the run (--group-by; auto resolved against the pool's stored keys)."""
    with open_store(settings.duckdb_path, read_only=True) as store:
        key = group_key(store, pool_id, requested, warn=get_run_logger().warning)
    get_run_logger().info("groups: %s", key)
    return key


@task(name="estimate-difficulty", cache_policy=NO_CACHE)
def estimate_difficulty(settings: Settings, keys: FactKeys, th: Thresholds,
                        method: str = "rap") -> pl.DataFrame:
    """Per pool row: the stored facts and the scores each filter of the method reads."""
    with open_store(settings.duckdb_path) as store:
        return selection_inputs(store, plan(method), keys, th)


@task(name="estimator-filters", cache_policy=NO_CACHE)
def apply_filters(inputs: pl.DataFrame, th: Thresholds, method: str = "rap") -> pl.DataFrame:
    """The method's filters in order: every row gets a state, stage, reason and the filters
    it passed."""
    resolved = plan(method)
    out = filter_rows(inputs, resolved, th)
    kept = [f"{s} kept {out['passed'].list.contains(s).sum()}" for s in resolved.stages]
    get_run_logger().info("%s of %d rows", ", ".join(kept) or "no filters", out.height)
    return out


@task(name="replacement", cache_policy=NO_CACHE)
def replacement(filtered: pl.DataFrame, th: Thresholds, method: str, settings: Settings,
                pool_id: str) -> pl.DataFrame:
    """The method's rebalancer (DRM for rap: swap easy survivors for hard, solvable,
    image-dependent rejected samples; random: a seeded pick), then the coverage floor."""
    out, lines = rebalanced(filtered, plan(method), th, Context(
        selected_count=lambda like: selected_count(settings, pool_id, like)))
    for line in lines:
        get_run_logger().info("%s", line)
    return out


def rebalanced(filtered: pl.DataFrame, resolved, th: Thresholds, context: Context
               ) -> tuple[pl.DataFrame, list[str]]:
    """The rebalanced decisions and a log line per rebalancer, each of what that step did
    (a later step may undo some of it: the coverage floor can take back a row DRM swapped
    out), then, after more than one, the final state of all their reasons."""
    lines: list[str] = []
    reasons: list[str] = []

    def each(rebalancer, before, after):
        lines.append(rebalance_report(rebalancer.name, before, after, rebalancer.reasons))
        reasons.extend(rebalancer.reasons)
    out = rebalance(filtered, resolved, th, context, each)
    if len(lines) > 1:
        lines.append(rebalance_report("after all of them", filtered, out, tuple(reasons)))
    return out, lines


def rebalance_report(name: str, before: pl.DataFrame, after: pl.DataFrame,
                     reasons: tuple[str, ...]) -> str:
    """'drm: drm_replaced_easy 306 (mean difficulty 0.00), ...; selected 339 -> 339, mean
    difficulty 0.21 -> 0.45': the rows holding each reason in `after`."""
    def mean(frame: pl.DataFrame) -> str:
        value = frame["difficulty"].mean()
        return "n/a" if value is None else f"{value:.2f}"
    parts = [f"{r} {after.filter(pl.col('reason') == r).height} (mean difficulty "
             f"{mean(after.filter(pl.col('reason') == r))})" for r in reasons]
    chosen = [frame.filter(pl.col("state") == "selected") for frame in (before, after)]
    return (f"{name}: {', '.join(parts)}; selected {chosen[0].height} -> {chosen[1].height}, "
            f"mean difficulty {mean(chosen[0])} -> {mean(chosen[1])}")


def selected_count(settings: Settings, pool_id: str, run_id: str | None) -> int:
    """How many samples run_id selected (default: the latest rap run on pool_id)."""
    with open_store(settings.duckdb_path, read_only=True) as store:
        found = store.query("queries/selected_count", run_id=run_id, pool_id=pool_id)
    if found.is_empty():
        raise StoreError(f"no selection run {run_id!r} to copy the size of" if run_id else
                         f"no rap run on pool {pool_id} to copy the size of: pass random_n "
                         "(--random-n N) or random_like (--random-like RUN)")
    return int(found["n_selected"][0])
