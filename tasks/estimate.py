"""Estimation tasks: difficulty and scores from stored facts, CDE/ACE filtering, DRM."""

from __future__ import annotations

import polars as pl
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from rap_core.params import Thresholds
from rap_core.selection import filter_cde_ace, replace_easy
from rap_core.settings import Settings
from rap_core.store import open_store


@task(name="estimate-difficulty", cache_policy=NO_CACHE)
def estimate_difficulty(settings: Settings, keys: dict, th: Thresholds) -> pl.DataFrame:
    """Per pool row: acc_mm, acc_text, D(x), difficulty inputs and psi (for th's sigma)."""
    with open_store(settings.duckdb_path) as store:
        return store.query("queries/selection_inputs", pool_id=keys["pool_id"],
                           model_key=keys["model_key"], settings_key=keys["settings_key"],
                           ace_key=keys["ace_key"], sigma=th.sigma, min_run=th.ace_min_run)


@task(name="cde-ace-filter", cache_policy=NO_CACHE)
def cde_ace_filter(inputs: pl.DataFrame, th: Thresholds) -> pl.DataFrame:
    """CDE then ACE: every row gets a state, stage and reason."""
    out = filter_cde_ace(inputs, th)
    get_run_logger().info("CDE kept %d, ACE kept %d of %d rows",
                          out["passed_cde"].sum(), out["passed_ace"].sum(), out.height)
    return out


@task(name="replacement", cache_policy=NO_CACHE)
def replacement(filtered: pl.DataFrame, th: Thresholds) -> pl.DataFrame:
    """DRM: swap easy survivors for hard, solvable, image-dependent rejected samples."""
    return replace_easy(filtered, th)
