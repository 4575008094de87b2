"""pass_band, the online filter of MM-Eureka, DAPO and EasyR1 applied offline: keep a sample
whose multimodal pass rate lies strictly inside a band (default 0 < acc_mm < 1), i.e. one the
model neither always nor never solves. Needs the multimodal rollouts alone."""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, Field

from rap.rap_core.estimators.base import Filter, Method, register
from rap.rap_core.store import sql


class PassBandThresholds(BaseModel):
    pass_band_low: float = Field(0.0, ge=0.0, le=1.0,
                                 description="pass_band: keep iff acc_mm > this")
    pass_band_high: float = Field(1.0, ge=0.0, le=1.0,
                                  description="pass_band: keep iff acc_mm < this")


def keep(th: PassBandThresholds) -> pl.Expr:
    return (pl.col("acc_mm") > th.pass_band_low) & (pl.col("acc_mm") < th.pass_band_high)


def nothing_passes(th: PassBandThresholds) -> str | None:
    low, high = th.pass_band_low, th.pass_band_high
    if low >= high or low >= 1 or high <= 0:
        return (f"--pass-band-low {low:g} and --pass-band-high {high:g} let no row pass: "
                "pass_band keeps low < acc_mm < high, and acc_mm lies in [0, 1]")
    return None


PASS_BAND = Filter(name="pass_band", reason="pass_band_outside", needs=("mm",),
                   source=sql("estimators/pass_band"), keep=keep, thresholds=PassBandThresholds,
                   cuts=lambda th: {"acc_mm": [("low", th.pass_band_low),
                                               ("high", th.pass_band_high)]},
                   nothing_passes=nothing_passes)
register(PASS_BAND, Method("pass_band", ("pass_band",), description="keep samples whose "
                           "multimodal pass rate lies in the band (the online filter, offline)"))
