"""DRM, the Difficulty-aware Replacement Module: swap the easiest survivors of the filters for
the hardest solvable, image-dependent samples the filters rejected (difficulty = 1 - acc_mm)."""

from __future__ import annotations

from typing import Annotated, Literal

import polars as pl
from pydantic import BaseModel, Field

from rap_core.estimators.base import Context, Rebalancer, register


class DrmThresholds(BaseModel):
    drm_k: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="DRM replacements, or auto: the survivors with acc_mm = 1")
    drm_require_positive_d: bool = Field(
        True, description="DRM: replacements must have D(x) > 0")


def drm_k(survivors: pl.DataFrame, eligible: pl.DataFrame, th: DrmThresholds) -> int:
    """k = drm_k, or the survivors with acc_mm = 1 (auto), capped by what can be swapped."""
    k = survivors.filter(pl.col("acc_mm") >= 1.0).height if th.drm_k == "auto" else th.drm_k
    return min(k, eligible.height, survivors.height)


def replace_easy(decisions: pl.DataFrame, th: DrmThresholds, context: Context) -> pl.DataFrame:
    """Swap the k easiest survivors for the k hardest eligible rejected samples."""
    survivors = decisions.filter(pl.col("state") == "selected")
    rejected = decisions.filter(pl.col("reason").is_in(list(context.filter_reasons)))
    eligible = rejected.filter((pl.col("acc_mm") > 0)
                               & ((pl.col("d") > 0) if th.drm_require_positive_d else True))
    k = drm_k(survivors, eligible, th)
    easiest = survivors.sort(["acc_mm", "d", "sample_id"], descending=[True, False, False]).head(k)
    hardest = eligible.sort(["acc_mm", "d", "sample_id"], descending=[False, True, False]).head(k)
    out_rows, in_rows = set(easiest["source_row"]), set(hardest["source_row"])
    row = pl.col("source_row")
    return decisions.with_columns(
        state=pl.when(row.is_in(out_rows)).then(pl.lit("dropped"))
        .when(row.is_in(in_rows)).then(pl.lit("selected")).otherwise(pl.col("state")),
        stage=pl.when(row.is_in(out_rows | in_rows)).then(pl.lit("drm")).otherwise(pl.col("stage")),
        reason=pl.when(row.is_in(out_rows)).then(pl.lit("drm_replaced_easy"))
        .when(row.is_in(in_rows)).then(pl.lit("drm_hard_replacement")).otherwise(pl.col("reason")),
    )


DRM = Rebalancer(name="drm", reasons=("drm_replaced_easy", "drm_hard_replacement"),
                 apply=replace_easy, thresholds=DrmThresholds)
register(DRM)
