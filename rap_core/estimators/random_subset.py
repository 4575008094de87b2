"""random, the control every data-selection paper reports: a seeded random subset of the rows
that may be selected, by default as large as another run's selection (the latest rap run on
the same pool), drawn from all of them at once or, stratified, from each group (the run's
--group-by) in its share of them. Needs no model facts at all."""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, Field

from rap.rap_core.estimators.base import Context, Method, Rebalancer, register


class RandomThresholds(BaseModel):
    random_n: int | None = Field(None, ge=0, description="random: how many to pick (default: "
                                 "as many as random_like's selection)")
    random_like: str | None = Field(None, description="random: the run whose selection size to "
                                    "copy (default: the latest rap run on the same pool)")
    random_seed: int = Field(0, description="random: the seed of the pick")
    random_stratify: bool = Field(False, description="random: pick within each group (the "
                                  "run's --group-by) in proportion to its selectable rows, "
                                  "so the subset keeps the pool's composition")


def quotas(sizes: dict[str, int], n: int) -> dict[str, int]:
    """n rows shared out over groups in proportion to their sizes, by largest remainder
    (ties: the larger group, then the name), never more than a group has."""
    total = sum(sizes.values())
    n = min(n, total)
    if not total:
        return {g: 0 for g in sizes}
    exact = {g: n * size / total for g, size in sizes.items()}
    out = {g: int(v) for g, v in exact.items()}
    order = sorted(sizes, key=lambda g: (-(exact[g] - out[g]), -sizes[g], g))
    for g in order[:n - sum(out.values())]:
        out[g] += 1
    return out


def pick(decisions: pl.DataFrame, th: RandomThresholds, context: Context) -> pl.DataFrame:
    """Pick n of the selectable rows, seeded; the others are dropped as not picked."""
    n = th.random_n if th.random_n is not None else context.selected_count(th.random_like)
    selectable = decisions.filter(pl.col("state") == "selected").sort("source_row")
    if th.random_stratify:
        groups = selectable.partition_by("group_name", as_dict=True)
        share = quotas({k[0]: g.height for k, g in groups.items()}, n)
        chosen = {row for k, g in groups.items()
                  for row in g.sample(share[k[0]], seed=th.random_seed)["source_row"]}
    else:
        chosen = set(selectable.sample(min(n, selectable.height),
                                       seed=th.random_seed)["source_row"])
    row, able = pl.col("source_row"), pl.col("state") == "selected"
    return decisions.with_columns(
        state=pl.when(able & ~row.is_in(chosen)).then(pl.lit("dropped"))
        .otherwise(pl.col("state")),
        stage=pl.when(able).then(pl.lit("random")).otherwise(pl.col("stage")),
        reason=pl.when(able & row.is_in(chosen)).then(pl.lit("random_pick"))
        .when(able).then(pl.lit("random_not_picked")).otherwise(pl.col("reason")))


RANDOM = Rebalancer(name="random", reasons=("random_pick", "random_not_picked"), apply=pick,
                    thresholds=RandomThresholds)
register(RANDOM, Method("random", (), "random", description="a seeded random subset, as large "
                        "as a rap run's selection by default (--random-stratify: within "
                        "each group, in the pool's proportions)"))
