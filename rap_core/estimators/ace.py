"""ACE, the Attention Confidence Estimator: drop x when psi, the final layer's attention over
its own reasoning, crosses lambda_a (above, as in the paper, or below). psi is computed in the
log domain from stored column sums (sql/macros/psi_log.sql), so sigma is retunable in SQL."""

from __future__ import annotations

import math
from typing import Literal

import polars as pl
from pydantic import BaseModel, Field

from rap.rap_core.estimators.base import Filter, register
from rap.rap_core.store import sql


class AceThresholds(BaseModel):
    sigma: float = Field(2.0, gt=0.0, description="ACE attention scale")
    lambda_a: float = Field(0.1, gt=0.0, description="ACE threshold on psi")
    ace_min_run: int = Field(4, ge=1, description="Columns with fewer rows are ignored")
    ace_direction: Literal["drop_above", "drop_below"] = Field(
        "drop_above", description="ACE: drop samples whose psi is above (paper) or below "
        "lambda_a")
    ace_score: Literal["product", "length_normalised"] = Field(
        "product", description="ACE: psi as the product (paper) or its per-column geometric "
        "mean")


def _score_log(th: AceThresholds) -> pl.Expr:
    return pl.col("psi_norm_log" if th.ace_score == "length_normalised" else "psi_log")


def keep(th: AceThresholds) -> pl.Expr:
    """A response too short for any qualifying column (psi null) is never dropped."""
    cut, score = math.log(th.lambda_a), _score_log(th)
    crossed = score > cut if th.ace_direction == "drop_above" else score < cut
    return ~crossed.fill_null(False)


ACE = Filter(name="ace", reason="ace_attention_bias", needs=("mm", "attention"),
             source=sql("estimators/ace"), keep=keep, thresholds=AceThresholds,
             scores=lambda th: {"psi": _score_log(th).clip(upper_bound=700).exp()},
             cuts=lambda th: {"psi": [("λa", th.lambda_a)]})
register(ACE)
