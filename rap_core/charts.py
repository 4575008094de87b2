"""What the score histograms show, on the report page and in MLflow alike: a score of a run's
rows split into selected and dropped, and where the method's thresholds cut it. ψ is drawn on
a log10 axis (its values span many decades), its thresholds with it."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

LOG10 = {"psi"}


def axis_title(column: str, title: str) -> str:
    return f"log10 {title}" if column in LOG10 else title


def split_scores(decisions: pl.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(selected, dropped) finite values of a score column (errors are neither)."""
    values = decisions.select("state", pl.col(column).cast(pl.Float64).alias("v"))
    if column in LOG10:
        values = values.filter(pl.col("v") > 0).with_columns(pl.col("v").log10())
    values = values.drop_nulls().filter(pl.col("v").is_finite())
    return tuple(values.filter(pl.col("state") == s)["v"].to_numpy()
                 for s in ("selected", "dropped"))


def threshold_cuts(method: str, thresholds: dict) -> dict[str, list[tuple[str, float]]]:
    """{column: [(label, value)]} on the charts' axes, for a run's method and thresholds."""
    from rap.rap_core.estimators import plan
    cuts = plan(method).cuts(thresholds)
    return {column: [(f"log10 {label}", math.log10(value)) for label, value in marks
                     if value > 0] if column in LOG10 else marks
            for column, marks in cuts.items()}
