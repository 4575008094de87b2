"""CDE, the Causal Discrepancy Estimator: keep x iff D(x) = acc_mm - acc_text > lambda_c, i.e.
only samples the model answers better with the image than without it."""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, Field

from rap.rap_core.estimators.base import Filter, register
from rap.rap_core.store import sql


class CdeThresholds(BaseModel):
    lambda_c: float = Field(0.5, description="Keep x iff D(x) > lambda_c")


def keep(th: CdeThresholds) -> pl.Expr:
    return pl.col("d") > th.lambda_c


def judges_skipped(th: CdeThresholds) -> bool:
    """A sample with acc_mm = 0 has D <= 0 whatever its text-only rollouts would give, so
    at lambda_c >= 0 CDE drops it without them (its D is then not known, only <= 0)."""
    return th.lambda_c >= 0


def nothing_passes(th: CdeThresholds) -> str | None:
    if th.lambda_c >= 1:
        return (f"--lambda-c {th.lambda_c:g} lets no row pass CDE: D = acc_mm - acc_text lies "
                "in [-1, 1] and CDE keeps D > lambda_c (use a value below 1)")
    return None


CDE = Filter(name="cde", reason="cde_language_prior", needs=("text", "mm"),
             source=sql("estimators/cde"), keep=keep, thresholds=CdeThresholds,
             judges_skipped=judges_skipped, cuts=lambda th: {"d": [("λc", th.lambda_c)]},
             nothing_passes=nothing_passes)
register(CDE)
