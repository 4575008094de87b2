"""The coverage floor: rap's own rebalancer, after the method's, off by default.

Not in the paper. CDE drops the samples whose answer the text alone predicts, and on a real
pool those are often a whole kind of question (easy-VQA's yes/no questions: 73% of the
default pool, 39% of its selection); RL on such a subset unlearns that kind. With floor
F in [0, 1], every group g (the run's --group-by) must hold at least
floor(F * pool_share(g) * |S|) of the |S| selected rows (shares among the rows that could be
selected: errors and rows ingest set aside count in no group). A group under its floor gains its
own rejected rows that are solvable (acc_mm > 0), in RAP's order of preference: highest D
first, then harder (lower acc_mm), then sample id. Each added row replaces the easiest
selected row (acc_mm desc, D asc, sample id) of a group above its floor, so |S| does not
change and no group is pushed under its own floor. A group without enough solvable rows
gets what it has; its shortfall shows in the coverage table. F = 0 is the paper's method;
F = 1 is RAP within each group, in the pool's proportions.

A rejected row is one the method dropped on its merits (any filter's drop, or DRM's
replaced easy rows); errors, duplicate rows and text-only rows never come back.
"""

from __future__ import annotations

import math
from typing import Annotated

import polars as pl
from pydantic import BaseModel, Field, StringConstraints

from rap.rap_core.estimators.base import Context, Rebalancer, register
from rap.rap_core.io.groups import AUTO

GroupKey = Annotated[str, StringConstraints(min_length=1, max_length=200,
                                            pattern=r"^[^\x00-\x1f\x7f]+$")]


class CoverageThresholds(BaseModel):
    group_by: GroupKey = Field(
        AUTO, description="Group of each pool row, for the coverage table and floor: a pool "
        "column (data_source, source, category, subject; a.b reads inside a struct), "
        "answer_kind (yes/no, choice, number, short text, other text) or question_type "
        "(builtin pool); auto: data_source when rows carry several, else question_type "
        "(the builtin pool), else answer_kind")
    coverage_floor: float = Field(
        0.0, ge=0.0, le=1.0, description="Coverage floor F (rap's own, not the paper's): "
        "every group keeps at least F x its pool share of the selection, by swapping its "
        "best rejected rows for the easiest rows of other groups; 0: off (the paper)")
    coverage_warn: float = Field(
        0.6, ge=0.0, le=1.0, description="Flag a group as under-represented when its "
        "selected share is under this fraction of its pool share (display only)")


def floor_rows(floor: float, pool_rows: int, total: int, n_selected: int) -> int:
    """A group's floor in rows: floor(F * pool_share * |S|)."""
    # a hair under the exact product still rounds to it (0.7 * 10 * 100 / 10 = 69.999...)
    return math.floor(floor * pool_rows * n_selected / total + 1e-9)


def selectable(decisions: pl.DataFrame) -> pl.DataFrame:
    """The rows a method or the floor could select: not errors, nor rows ingest set aside
    (duplicates, rows without an image). Only they count in the composition and the floors
    (view coverage alike)."""
    return decisions.filter((pl.col("state") != "error") & (pl.col("stage") != "ingest"))


def floors(decisions: pl.DataFrame, floor: float) -> dict[str, int]:
    """Each group's floor, in rows."""
    decisions = selectable(decisions)
    n_selected = int((decisions["state"] == "selected").sum())
    sizes = decisions.group_by("group_name").len()
    return {g: floor_rows(floor, n, decisions.height, n_selected) for g, n in sizes.iter_rows()}


def candidates(decisions: pl.DataFrame, group: str) -> pl.DataFrame:
    """A group's rejected, solvable rows in RAP's order of preference."""
    rejected = decisions.filter((pl.col("group_name") == group) & (pl.col("state") == "dropped")
                                & (pl.col("stage") != "ingest") & (pl.col("acc_mm") > 0))
    return rejected.sort(["d", "acc_mm", "sample_id"], descending=[True, False, False],
                         nulls_last=True)


def swaps(decisions: pl.DataFrame, floor: float) -> list[tuple[dict, dict]]:
    """(added row, replaced row) pairs that bring every group to its floor, as far as its
    candidates go."""
    wanted = floors(decisions, floor)
    selected = decisions.filter(pl.col("state") == "selected")
    have = dict(selected.group_by("group_name").len().iter_rows())
    additions: list[dict] = []
    for group in sorted(wanted):
        need = wanted[group] - have.get(group, 0)
        if need > 0:
            additions += candidates(decisions, group).head(need).to_dicts()
    additions.sort(key=lambda r: (-(r["d"] if r["d"] is not None else -math.inf),
                                  r["acc_mm"], r["sample_id"]))
    donors = selected.sort(["acc_mm", "d", "sample_id"], descending=[True, False, False],
                           nulls_last=True).to_dicts()
    pairs, at = [], 0
    for added in additions:
        # groups only lose rows here, so a donor skipped once stays skipped
        while at < len(donors) and have[donors[at]["group_name"]] <= wanted[
                donors[at]["group_name"]]:
            at += 1
        if at == len(donors):  # cannot happen: the floors sum to at most |S|
            break
        replaced = donors[at]
        at += 1
        have[replaced["group_name"]] -= 1
        pairs.append((added, replaced))
    return pairs


def keep_every_group(decisions: pl.DataFrame, th: CoverageThresholds, context: Context
                     ) -> pl.DataFrame:
    """The coverage floor over the method's decisions (unchanged at F = 0)."""
    if th.coverage_floor <= 0:
        return decisions
    details: dict[int, str] = {}
    for added, replaced in swaps(decisions, th.coverage_floor):
        details[added["source_row"]] = (
            f"group {added['group_name']} under its floor; was {added['reason']}; replaces "
            f"{replaced['sample_id']} (group {replaced['group_name']})")
        details[replaced["source_row"]] = (
            f"replaced by {added['sample_id']} to keep group {added['group_name']} at its "
            f"floor (acc_mm {replaced['acc_mm']:.2f}, the easiest above its own floor)")
    if not details:
        return decisions
    row = pl.col("source_row")
    moved = row.is_in(list(details))
    was_selected = pl.col("state") == "selected"
    return decisions.with_columns(
        state=pl.when(moved & was_selected).then(pl.lit("dropped"))
        .when(moved).then(pl.lit("selected")).otherwise(pl.col("state")),
        stage=pl.when(moved).then(pl.lit("coverage")).otherwise(pl.col("stage")),
        reason=pl.when(moved & was_selected).then(pl.lit("coverage_replaced"))
        .when(moved).then(pl.lit("coverage_added")).otherwise(pl.col("reason")),
        detail=row.replace_strict(details, default=pl.col("detail"), return_dtype=pl.String))


def composition(decisions: pl.DataFrame) -> pl.DataFrame:
    """The coverage view's rows for decisions not (yet) stored, largest group first."""
    decisions = selectable(decisions)
    n_selected = int((decisions["state"] == "selected").sum())
    return (decisions.group_by(pl.col("group_name").fill_null("(none)").alias("group"))
            .agg(pool_rows=pl.len(), selected_rows=(pl.col("state") == "selected").sum())
            .with_columns(pool_share=pl.col("pool_rows") / decisions.height,
                          selected_share=(pl.col("selected_rows") / n_selected)
                          if n_selected else pl.lit(None, pl.Float64))
            .with_columns(ratio=pl.col("selected_share") / pl.col("pool_share"))
            .select("group", "pool_rows", "pool_share", "selected_rows", "selected_share",
                    "ratio")
            .sort(["pool_rows", "group"], descending=[True, False]))


def with_floors(table: pl.DataFrame, floor: float) -> pl.DataFrame:
    """A run's coverage table (view coverage) with each group's floor and shortfall at F
    (both 0 at F = 0)."""
    total, n_selected = int(table["pool_rows"].sum()), int(table["selected_rows"].sum())
    floor_of = [floor_rows(floor, int(n), total, n_selected) for n in table["pool_rows"]]
    return table.with_columns(floor_rows=pl.Series(floor_of, dtype=pl.Int64)).with_columns(
        shortfall=(pl.col("floor_rows") - pl.col("selected_rows")).clip(lower_bound=0))


def under_represented(table: pl.DataFrame, warn: float) -> list[str]:
    """'yes/no 73% of the pool -> 39% of the selection' for every group whose selected share
    is under `warn` times its pool share (none when nothing was selected)."""
    if not int(table["selected_rows"].sum()):
        return []
    low = table.filter(pl.col("selected_share") < warn * pl.col("pool_share"))
    return [f"{r['group']} {r['pool_share']:.0%} of the pool -> {r['selected_share']:.0%} of "
            "the selection" for r in low.iter_rows(named=True)]


def largest(table: pl.DataFrame, n: int = 12) -> pl.DataFrame:
    """The n largest groups of a coverage table (sorted largest first), the rest summed into
    one row '(k other groups)'."""
    if table.height <= n:
        return table
    rest = table.slice(n)
    total_pool, total_sel = table["pool_rows"].sum(), table["selected_rows"].sum()
    summed = rest.select(pl.lit(f"({rest.height} other groups)").alias("group"),
                         *[pl.col(c).sum() for c in table.columns if c != "group"
                           and table.schema[c].is_numeric()])
    summed = summed.with_columns(
        pool_share=pl.col("pool_rows") / total_pool,
        selected_share=pl.col("selected_rows") / total_sel if total_sel else pl.lit(None),
    ).with_columns(ratio=pl.col("selected_share") / pl.col("pool_share"))
    return pl.concat([table.head(n), summed.select(table.columns)], how="vertical_relaxed")


COVERAGE = Rebalancer(name="coverage", reasons=("coverage_added", "coverage_replaced"),
                      apply=keep_every_group, thresholds=CoverageThresholds,
                      every_method=True, active=lambda th: th.coverage_floor > 0)
register(COVERAGE)
