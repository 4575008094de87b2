"""Between the estimators and the store: a method's inputs from the stored facts, and a run's
funnel read back, step by step."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
from pydantic import BaseModel

from rap.rap_core.estimators.base import Plan, thresholds_for
from rap.rap_core.io.groups import AUTO, DERIVED, resolve_group_by
from rap.rap_core.keys import FactKeys
from rap.rap_core.store import SelectionRun, Store, StoreError, open_store

_PARAMETER = re.compile(r"\$([A-Za-z_]\w*)")


def source_parameters(source: str) -> set[str]:
    """The $names an estimator's SQL source binds."""
    return set(_PARAMETER.findall(source))


def source_frame(store: Store, source: str, keys: dict, thresholds: BaseModel) -> pl.DataFrame:
    """One estimator's scores: its SELECT with the fact keys and its own thresholds bound
    (only the parameters it names)."""
    values = {**keys, **thresholds.model_dump()}
    names = source_parameters(source)
    unknown = names - set(values)
    if unknown:
        raise StoreError(f"estimator source uses unknown parameter(s) {sorted(unknown)}; "
                         f"known: {sorted(values)}")
    return store.con.sql(source, params={n: values[n] for n in names}).pl()


def group_key(store: Store, pool_id: str, requested: str, warn=None) -> str:
    """The group key a run on pool_id uses (auto resolved), if the pool's rows have it
    stored; a pool ingested before rap stored groups has none (all rows are '(none)')."""
    stored = dict(store.query("queries/group_keys_of_pool", pool_id=pool_id)
                  .select("group_key", "n_values").iter_rows())
    key = resolve_group_by(requested, stored)
    if not stored:
        if warn:
            warn(f"pool {pool_id} has no stored groups (it was read by an older rap): every "
                 "row is group (none); `rap select` on the pool stores them")
    elif key not in stored:
        raise StoreError(f"group column {key!r} was not stored for pool {pool_id} (stored: "
                         f"{', '.join(sorted(stored))}): run `rap select --group-by {key}` "
                         "on the pool once to read it")
    return key


def selection_inputs(store: Store, plan: Plan, keys: FactKeys, th: BaseModel) -> pl.DataFrame:
    """Per pool row: ingest status, inference errors, which facts are stored, its group under
    th.group_by (resolved) and the score columns of each filter of the method (a column
    already there is not joined again)."""
    frame = store.query("queries/selection_base", **keys.model_dump())
    groups = store.query("queries/groups_of_pool", pool_id=keys.pool_id,
                         group_key=getattr(th, "group_by", AUTO))
    frame = frame.join(groups, on="source_row", how="left", maintain_order="left")
    for f in plan.filters:
        scores = source_frame(store, f.source, keys.facts(), thresholds_for(f.thresholds, th))
        new = [c for c in scores.columns if c == "sample_id" or c not in frame.columns]
        frame = frame.join(scores.select(new).unique("sample_id", keep="first"),
                           on="sample_id", how="left", maintain_order="left")
    return frame


def run_funnel(store: Store, run_id: str) -> dict:
    """run_id, pool rows, errors, duplicates, then each step of the method's funnel
    (after_cde, after_ace, after_drm for rap), the selected count and, with a rebalancer,
    readmitted_from_<stage>: the selected rows that filter had dropped (DRM's replacements)."""
    wide = store.query("queries/funnel_of_run", run_id=run_id).to_dicts()[0]
    steps = store.query("queries/funnel_steps_of_run", run_id=run_id)
    funnel = {k: wide[k] for k in ("run_id", "pool_rows", "errors", "duplicates")}
    funnel.update({s: int(n) for s, n in steps.iter_rows() if s != "pool_rows"})
    funnel["selected"] = wide["selected"]
    readmitted = store.query("queries/readmitted_of_run", run_id=run_id)
    funnel.update({f"readmitted_from_{s}": int(n) for s, n in readmitted.iter_rows()})
    return funnel


def run_coverage(store: Store, run: SelectionRun) -> pl.DataFrame:
    """A stored run's composition per group, largest first, with floors and shortfalls at
    the run's coverage floor."""
    from rap.rap_core.estimators.coverage import with_floors
    return with_floors(store.query("queries/coverage_of_run", run_id=run.run_id),
                       run.thresholds.get("coverage_floor", 0.0))


def readmitted(funnel: dict) -> str:
    """'CDE 200, ACE 54': the rebalancer's re-admissions by the filter that had dropped them
    ('' when it brought none back)."""
    by_stage = {k.removeprefix("readmitted_from_"): n for k, n in funnel.items()
                if k.startswith("readmitted_from_")}
    return ", ".join(f"{s.upper()} {n}" for s, n in by_stage.items()) if any(
        by_stage.values()) else ""


def reason_label(reason: dict) -> str:
    """The reason, with the filter a re-admitted row had been dropped by."""
    back = reason.get("readmitted_from")
    return reason["reason"] + (f" (was dropped by {back.upper()})" if back else "")


def counts(funnel: dict) -> dict:
    """The funnel's numbers alone (for metrics)."""
    return {k: v for k, v in funnel.items() if isinstance(v, (int, float))}


def check_group_by(params, duckdb_path: Path) -> None:
    """A group key the run names must exist: a column of the pool (select), or one stored for
    the base run's pool (retune; the base run itself must exist). PoolReadError or
    StoreError, before anything runs."""
    from rap.rap_core.io.readers import has_column, missing_group_column
    group_by = params.thresholds.group_by
    if params.mode == "select":
        if group_by != AUTO and group_by not in DERIVED and not has_column(params.data, group_by):
            raise missing_group_column(group_by, params.data)
        return
    if not duckdb_path.exists():  # a retune needs a stored run: said before Prefect starts
        raise StoreError(f"no selection run {params.base_run!r} to retune" if params.base_run
                         else "no selection run to retune: run `rap select` first")
    with open_store(duckdb_path) as store:  # a writer: upgrades an older store
        base = store.selection_run(params.base_run, "retune")
        if "group_by" in params.thresholds.model_fields_set:
            group_key(store, base.pool_id, group_by)
