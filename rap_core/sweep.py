"""`rap sweep`: a grid of thresholds over one stored run's facts, each point selected with the
flow's own code (estimators.stored.selection_inputs, then estimators.select.select_rows) and
nothing written: no model, no Prefect, no MLflow, no new run.

A point's thresholds are the base run's, with the swept ones replaced (as `rap retune` takes
them). The scores a filter reads from SQL (ACE's psi depends on sigma) are read once per
distinct value of the thresholds its source binds; every other point is polars over the same
frame.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field

import polars as pl
from pydantic import ValidationError

from rap.rap_core.estimators import Context, plan
from rap.rap_core.estimators.coverage import composition
from rap.rap_core.estimators.select import select_rows
from rap.rap_core.errors import SweepError
from rap.rap_core.estimators.stored import group_key, selection_inputs, source_parameters
from rap.rap_core.params import RapParams, Thresholds, inherit_base_run, legacy_columns
from rap.rap_core.store import Store, StoreError

MAX_POINTS = 200
SHARE_GROUPS = 12  # groups whose selected share gets a column of its own
_RANGE = re.compile(r"^\s*([^:]+):([^:]+):([^:]+)\s*$")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def values_of(name: str, spec: str) -> list[str]:
    """A swept value list: `a,b,c`, one value, or the numeric range `start:stop:step` (stop
    included when the steps land on it)."""
    found = _RANGE.match(spec)
    if not found:
        values = [v.strip() for v in spec.split(",")]
        if not all(values):
            raise SweepError(f"{flag(name)} {spec!r}: an empty value (give a,b,c or "
                             "start:stop:step)")
        return values
    try:
        start, stop, step = (float(x) for x in found.groups())
    except ValueError:
        raise SweepError(f"{flag(name)} {spec!r}: a range is start:stop:step, three "
                         "numbers") from None
    if not (step > 0 and stop >= start and all(map(math.isfinite, (start, stop, step)))):
        raise SweepError(f"{flag(name)} {spec!r}: a range needs start <= stop and step > 0")
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count > 10_000:
        raise SweepError(f"{flag(name)} {spec!r}: {count:,} values")
    return [repr(round(start + i * step, 12)) for i in range(count)]


@dataclass
class Grid:
    """The swept names and their values (methods first), every combination a point."""

    methods: list[str]
    values: dict[str, list[str]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.methods) * math.prod(len(v) for v in self.values.values())

    def points(self):
        names = list(self.values)
        for method in self.methods:
            for combo in itertools.product(*self.values.values()):
                yield method, dict(zip(names, combo))


def make_grid(specs: dict[str, str], methods: list[str], max_points: int = MAX_POINTS
              ) -> Grid:
    """The grid of the flags given ({threshold name: spec}); refused above max_points."""
    unknown = [n for n in specs if n not in Thresholds.model_fields]
    if unknown:
        raise SweepError(f"{flag(unknown[0])} is not a threshold (sweepable: "
                         f"{', '.join(flag(n) for n in Thresholds.model_fields)})")
    grid = Grid(methods, {name: values_of(name, spec) for name, spec in specs.items()})
    if grid.size > max_points:
        sizes = " x ".join([f"{len(methods)} methods"] * (len(methods) > 1)
                           + [f"{len(v)} {flag(n)}" for n, v in grid.values.items()])
        raise SweepError(f"the grid has {grid.size:,} points ({sizes}); at most "
                         f"{max_points:,} (--max-points)")
    return grid


def _thresholds(base_params: dict, columns: dict, method: str, values: dict) -> Thresholds:
    """A point's thresholds: the base run's, the swept ones replaced (validated as a retune
    validates them)."""
    try:
        given = Thresholds.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "?"
        raise SweepError(f"{flag(name)} {values.get(name)!r}: {error['msg']}") from None
    params = RapParams(mode="retune", method=method, thresholds=given)
    return inherit_base_run(params, base_params, columns).thresholds


def _bound(method_plan, th: Thresholds) -> tuple:
    """The threshold values the method's SQL sources bind (one read of the scores each)."""
    names = sorted({n for f in method_plan.filters for n in source_parameters(f.source)}
                   & set(Thresholds.model_fields))
    return tuple((n, getattr(th, n)) for n in names) + (("group_by", th.group_by),)


def funnel_of(decisions: pl.DataFrame, method_plan, th: Thresholds) -> dict:
    """The funnel_steps view's numbers for decisions not yet stored."""
    passed = decisions["passed"]
    steps = {f"after_{s}": int(passed.list.contains(s).sum()) for s in method_plan.stages}
    selected = int((decisions["state"] == "selected").sum())
    steps.update({f"after_{r.name}": selected for r in method_plan.applied(th)})
    readmitted = 0
    if method_plan.rebalancer:  # selected by the rebalancer after a filter had dropped it
        readmitted = decisions.filter(
            (pl.col("state") == "selected") & (pl.col("stage") == method_plan.rebalancer.name)
            & (passed.list.len() < len(method_plan.stages))).height
    return {"pool_rows": decisions.height, **steps, "selected": selected,
            "readmitted": readmitted, "errors": int((decisions["state"] == "error").sum())}


def _point(decisions: pl.DataFrame, method_plan, th: Thresholds) -> dict:
    chosen = decisions.filter(pl.col("state") == "selected")
    table = composition(decisions)
    lowest = table.drop_nulls("ratio").sort(["ratio", "group"]).head(1)
    row = {**funnel_of(decisions, method_plan, th),
           "mean_difficulty": chosen["difficulty"].mean(),
           "lowest_ratio": lowest["ratio"][0] if lowest.height else None,
           "lowest_group": lowest["group"][0] if lowest.height else None}
    for r in table.head(SHARE_GROUPS).iter_rows(named=True):
        row[f"share.{r['group']}"] = r["selected_share"]
    return row


@dataclass
class Sweep:
    run_id: str
    table: pl.DataFrame  # one row per point: method, swept values, funnel, scores, shares
    notes: list[str]  # the missing facts some points needed, each named once
    swept: list[str]  # the swept threshold names
    current: dict  # the base run's method and values of the swept thresholds


def sweep(store: Store, run_id: str | None, grid: Grid) -> Sweep:
    """Every point of the grid over the stored facts of run_id (default the latest run)."""
    base = store.selection_run(run_id, "sweep")
    keys, params, columns = base.fact_keys, base.parameters, legacy_columns(base)
    inputs: dict[tuple, pl.DataFrame] = {}
    context = Context(selected_count=lambda like: _selected_count(store, base.pool_id, like))
    current_th = inherit_base_run(RapParams(mode="retune"), params, columns).thresholds
    rows, notes, group_keys = [], {}, {}
    for method, values in grid.points():
        th = _thresholds(params, columns, method, values)
        if th.group_by not in group_keys:  # resolved once per requested key
            group_keys[th.group_by] = group_key(store, base.pool_id, th.group_by)
        th = th.model_copy(update={"group_by": group_keys[th.group_by]})
        method_plan = plan(method)
        key = (method, _bound(method_plan, th))
        if key not in inputs:
            inputs[key] = selection_inputs(store, method_plan, keys, th)
        if inputs[key].is_empty():
            raise StoreError(f"run {base.run_id}'s pool has no stored rows to sweep")
        decisions = select_rows(inputs[key], method_plan, th, context)
        missing = decisions.filter(pl.col("reason") == "missing_facts")
        for stage, detail in missing.select("stage", "detail").unique().iter_rows():
            notes.setdefault(f"{stage}: {detail}", None)
        rows.append({"method": method, **{n: getattr(th, n) for n in values},
                     **_point(decisions, method_plan, th)})
    table = pl.DataFrame(rows, infer_schema_length=None)
    # a grid that selects nothing anywhere has all-null scores: they are numbers still
    table = table.with_columns(
        pl.col("mean_difficulty", "lowest_ratio", *[c for c in table.columns
                                                   if c.startswith("share.")]).cast(pl.Float64),
        pl.col("lowest_group").cast(pl.String))
    current = {"method": base.method, **{n: getattr(current_th, n) for n in grid.values}}
    return Sweep(base.run_id, table, list(notes), list(grid.values), current)


def _selected_count(store: Store, pool_id: str, run_id: str | None) -> int:
    found = store.query("queries/selected_count", run_id=run_id, pool_id=pool_id)
    if found.is_empty():
        raise SweepError(f"no selection run {run_id!r} to copy the size of" if run_id else
                         f"no rap run on pool {pool_id} to copy the size of")
    return int(found["n_selected"][0])


def shown(value) -> str:
    """A swept value as the table and the page print it (1e-05, 0.5, auto)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def is_current(row: dict, current: dict) -> bool:
    """Whether a point is the base run's own method and thresholds."""
    def same(a, b) -> bool:
        if isinstance(a, float) or isinstance(b, float):
            return a is not None and b is not None and math.isclose(float(a), float(b),
                                                                    rel_tol=1e-9)
        return str(a) == str(b)
    return all(same(row[k], v) for k, v in current.items())
