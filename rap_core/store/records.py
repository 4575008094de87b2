"""Typed records of the store's rows that travel between the flow's steps."""

from __future__ import annotations

import json
from datetime import datetime

import polars as pl
from pydantic import BaseModel

from rap.rap_core.keys import FactKeys


class SelectionRun(BaseModel):
    """One row of selection_runs: a selection or retune, what it read and what it made."""

    run_id: str
    mode: str
    base_run: str | None = None
    method: str = "rap"
    stages: list[str] = []
    rebalancer: str | None = None
    pool_id: str
    model_key: str
    settings_key: str
    ace_key: str
    # the paper's thresholds, also as columns (older stores and SQL users read them there);
    # every estimator's thresholds are in params
    lambda_c: float
    sigma: float
    lambda_a: float
    ace_min_run: int
    ace_direction: str
    ace_score: str
    drm_k: str
    drm_require_positive_d: bool
    params: str  # the run's RapParams as JSON
    samples_inferred: int
    samples_stored: int
    n_rows: int
    n_selected: int = 0
    export_path: str | None = None
    mlflow_run_id: str | None = None
    created_at: datetime | None = None

    @property
    def fact_keys(self) -> FactKeys:
        return FactKeys.model_validate(self.model_dump(include=set(FactKeys.model_fields)))

    @property
    def parameters(self) -> dict:
        """The run's parameters, grouped as RapParams holds them."""
        return json.loads(self.params)

    @property
    def thresholds(self) -> dict:
        """The run's thresholds as recorded (every estimator's, flat)."""
        return self.parameters.get("thresholds", {})

    def frame(self) -> pl.DataFrame:
        """The row, for an upsert into selection_runs."""
        return pl.DataFrame([self.model_dump()])
