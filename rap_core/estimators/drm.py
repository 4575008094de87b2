"""DRM, the Difficulty-aware Replacement Module: swap the easiest survivors of the filters for
harder rejected samples that are still solvable and image-dependent (difficulty = 1 - acc_mm).

The easiest survivors (acc_mm desc, then D asc) are paired with the hardest eligible rejects
(acc_mm asc, then D desc), and a pair is swapped only while the reject is strictly harder
(lower acc_mm) than the survivor it replaces: swapping equally easy samples would only trade
a strongly image-dependent sample for a weakly image-dependent one."""

from __future__ import annotations

from typing import Annotated, Literal

import polars as pl
from pydantic import BaseModel, Field

from rap.rap_core.estimators.base import Context, Rebalancer, register

POOLS = ("all_rejected", "cde_rejected")


class DrmThresholds(BaseModel):
    drm_k: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="DRM: at most this many swaps, or auto: every pair whose "
        "replacement is strictly harder (lower acc_mm) than the survivor it replaces, at most "
        "one per survivor with acc_mm = 1")
    drm_require_positive_d: bool = Field(
        True, description="DRM: replacements must have D(x) > 0")
    drm_pool: Literal["all_rejected", "cde_rejected"] = Field(
        "all_rejected", description="DRM: which rejects may come back: all_rejected (any "
        "filter's, the paper's wording) or cde_rejected (CDE's only: ACE's drops stay "
        "dropped)")


def candidates(decisions: pl.DataFrame, th: DrmThresholds, context: Context) -> pl.DataFrame:
    """The rejects that may come back: dropped by an allowed filter, solvable (acc_mm > 0)
    and image-dependent (D > 0, unless switched off)."""
    reasons = (list(context.filter_reasons.values()) if th.drm_pool == "all_rejected"
               else [context.filter_reasons["cde"]] if "cde" in context.filter_reasons
               else [])
    rejected = decisions.filter(pl.col("reason").is_in(reasons))
    return rejected.filter((pl.col("acc_mm") > 0)
                           & ((pl.col("d") > 0) if th.drm_require_positive_d else True))


def pairs(survivors: pl.DataFrame, eligible: pl.DataFrame, th: DrmThresholds
          ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The survivors to drop and their replacements, pair by pair: only pairs whose
    replacement has a lower acc_mm; at most drm_k of them, or (auto) at most as many as the
    survivors with acc_mm = 1."""
    easiest = survivors.sort(["acc_mm", "d", "sample_id"], descending=[True, False, False])
    hardest = eligible.sort(["acc_mm", "d", "sample_id"], descending=[False, True, False])
    n = min(easiest.height, hardest.height)
    harder = (hardest["acc_mm"].head(n) < easiest["acc_mm"].head(n)).to_list()
    k = next((i for i, ok in enumerate(harder) if not ok), n)
    cap = survivors.filter(pl.col("acc_mm") >= 1.0).height if th.drm_k == "auto" else th.drm_k
    k = min(k, cap)
    return easiest.head(k), hardest.head(k)


def replace_easy(decisions: pl.DataFrame, th: DrmThresholds, context: Context) -> pl.DataFrame:
    """Swap each easy survivor for its strictly harder partner; both decisions say whom they
    were paired with, and a replacement keeps the reason it had been dropped for."""
    out, into = pairs(decisions.filter(pl.col("state") == "selected"),
                      candidates(decisions, th, context), th)
    if out.is_empty():
        return decisions
    out_detail, in_detail = {}, {}
    for easy, hard in zip(out.iter_rows(named=True), into.iter_rows(named=True)):
        harder = f"acc_mm {hard['acc_mm']:.2f} < {easy['acc_mm']:.2f}"
        out_detail[easy["source_row"]] = f"replaced by {hard['sample_id']} ({harder})"
        in_detail[hard["source_row"]] = (f"re-admitted, was {hard['reason']}; replaces "
                                         f"{easy['sample_id']} ({harder})")
    row = pl.col("source_row")
    out_rows, in_rows = list(out_detail), list(in_detail)
    return decisions.with_columns(
        state=pl.when(row.is_in(out_rows)).then(pl.lit("dropped"))
        .when(row.is_in(in_rows)).then(pl.lit("selected")).otherwise(pl.col("state")),
        stage=pl.when(row.is_in(out_rows + in_rows)).then(pl.lit("drm"))
        .otherwise(pl.col("stage")),
        reason=pl.when(row.is_in(out_rows)).then(pl.lit("drm_replaced_easy"))
        .when(row.is_in(in_rows)).then(pl.lit("drm_hard_replacement"))
        .otherwise(pl.col("reason")),
        detail=row.replace_strict({**out_detail, **in_detail}, default=pl.col("detail"),
                                  return_dtype=pl.String),
    )


DRM = Rebalancer(name="drm", reasons=("drm_replaced_easy", "drm_hard_replacement"),
                 apply=replace_easy, thresholds=DrmThresholds)
register(DRM)
