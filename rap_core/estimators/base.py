"""What an estimator is, and the ordered table of them.

A filter estimator (CDE, ACE, pass_band) reads its scores from one SQL source over the stored
facts and keeps or drops each row by a pure rule; a rebalancer (DRM, random) then changes the
survivors. A method is an ordered list of filters and at most one rebalancer. Adding an
estimator is one module that calls `register` (+ its SQL source and tests): the selection,
the funnel, the summary, the report, MLflow and `rap validate` iterate these tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import polars as pl
from pydantic import BaseModel

# The facts an estimator can need, each computed by one inference phase of the flow.
FACTS = ("text", "mm", "attention")


class NoThresholds(BaseModel):
    """An estimator with nothing to tune."""


@dataclass(frozen=True)
class Fact:
    """How a missing or failed fact shows in the selection inputs."""

    error_stage: str  # inference_errors.stage of the phase that computes it
    present: Callable[[], pl.Expr]  # true where the fact is stored
    missing_stage: str | None  # stage of a missing-facts error (None: the estimator's own)
    message: str
    # true where the fact was skipped on purpose (it could not change the decision)
    skipped: Callable[[], pl.Expr] | None = None
    skipped_message: str = ""


_ROLLOUTS_MISSING = "no stored rollouts: run `rap select` first"
FACT_INPUTS = {
    "text": Fact("text_only", lambda: pl.col("n_text") > 0, None, _ROLLOUTS_MISSING,
                 skipped=lambda: (pl.col("n_text").fill_null(0) == 0) & (pl.col("n_mm") > 0)
                 & (pl.col("acc_mm") == 0),
                 skipped_message="its text-only rollouts were skipped (no multimodal rollout "
                 "was right) and this threshold needs them: run `rap select --all-rollouts`"),
    "mm": Fact("multimodal", lambda: pl.col("n_mm") > 0, None, _ROLLOUTS_MISSING),
    "attention": Fact("attention", lambda: pl.col("has_attention"), "attention",
                      "no stored attention statistics: run `rap select` first"),
}


@dataclass(frozen=True)
class Filter:
    """Keeps or drops each row. `source` is a SELECT over the store with a `sample_id`
    column and the score columns `keep` reads; it may use $model_key, $settings_key,
    $ace_key and the estimator's own threshold names as bound parameters."""

    name: str
    reason: str  # the drop reason code
    needs: tuple[str, ...]  # of FACTS
    source: str
    keep: Callable[[BaseModel], pl.Expr]  # thresholds -> a boolean expression over the inputs
    thresholds: type[BaseModel] = NoThresholds
    scores: Callable[[BaseModel], dict[str, pl.Expr]] = lambda th: {}  # decision columns
    stage: str = ""  # defaults to name
    # whether `keep` decides rows whose needed facts were skipped on purpose (at these
    # thresholds); where it does not, such a row is a missing-facts error
    judges_skipped: Callable[[BaseModel], bool] = lambda th: False
    # where its thresholds cut its score columns: {column: [(label, value)]} (the histograms
    # of the report page and MLflow draw them)
    cuts: Callable[[BaseModel], dict[str, list[tuple[str, float]]]] = lambda th: {}
    # why no row could pass at these thresholds, the scores' range being what it is (None:
    # some could); a select or retune refuses such thresholds before it starts
    nothing_passes: Callable[[BaseModel], str | None] = lambda th: None

    @property
    def stage_name(self) -> str:
        return self.stage or self.name


@dataclass(frozen=True)
class Rebalancer:
    """Changes the decisions after the filters: apply(decisions, thresholds, context)."""

    name: str
    reasons: tuple[str, ...]
    apply: Callable[[pl.DataFrame, BaseModel, "Context"], pl.DataFrame]
    needs: tuple[str, ...] = ()
    thresholds: type[BaseModel] = NoThresholds
    every_method: bool = False  # runs after every method's own rebalancer (coverage floor)
    active: Callable[[BaseModel], bool] = lambda th: True  # whether it runs at these thresholds


@dataclass(frozen=True)
class Method:
    """An ordered list of filters and at most one rebalancer."""

    name: str
    filters: tuple[str, ...]
    rebalancer: str | None = None
    description: str = ""


@dataclass
class Context:
    """What a rebalancer may ask of the store (e.g. the size of another run's selection)."""

    selected_count: Callable[[str | None], int] = lambda run_id: 0
    filter_reasons: dict[str, str] = field(default_factory=dict)  # filter name -> its reason


FILTERS: dict[str, Filter] = {}
REBALANCERS: dict[str, Rebalancer] = {}
METHODS: dict[str, Method] = {}


def register(*things) -> None:
    """Add filters, rebalancers or methods to the tables (a later one replaces its name)."""
    for thing in things:
        table = {Filter: FILTERS, Rebalancer: REBALANCERS, Method: METHODS}[type(thing)]
        table[thing.name] = thing


@dataclass(frozen=True)
class Plan:
    """A method resolved to its parts."""

    method: Method
    filters: tuple[Filter, ...]
    rebalancer: Rebalancer | None
    needs: frozenset[str] = field(default_factory=frozenset)
    finishers: tuple[Rebalancer, ...] = ()  # after the rebalancer, in every method

    @property
    def rebalancers(self) -> tuple[Rebalancer, ...]:
        return (*([self.rebalancer] if self.rebalancer else []), *self.finishers)

    def applied(self, values: BaseModel | dict) -> list[Rebalancer]:
        """The rebalancers that run at these thresholds, in order (the method's own always;
        a finisher where its `active` says so)."""
        return [r for r in self.rebalancers if r.active(thresholds_for(r.thresholds, values))]

    @property
    def stages(self) -> list[str]:
        return [f.stage_name for f in self.filters]

    @property
    def threshold_names(self) -> list[str]:
        """The thresholds this method reads, filters first."""
        parts = [*self.filters, *self.rebalancers]
        return [name for part in parts for name in part.thresholds.model_fields]

    def cuts(self, values: BaseModel | dict) -> dict[str, list[tuple[str, float]]]:
        """Where the filters' thresholds (taken from a run's, flat) cut each score column."""
        out: dict[str, list[tuple[str, float]]] = {}
        for f in self.filters:
            for column, marks in f.cuts(thresholds_for(f.thresholds, values)).items():
                out.setdefault(column, []).extend(marks)
        return out

    def needs_skipped(self, values: BaseModel | dict) -> set[str]:
        """The facts (of FACTS) that some filter cannot do without at these thresholds where
        they would be skipped on purpose: a select must infer them for every row."""
        return {need for f in self.filters for need in f.needs
                if FACT_INPUTS[need].skipped is not None
                and not f.judges_skipped(thresholds_for(f.thresholds, values))}

    @property
    def steps(self) -> list[str]:
        """The funnel after ingest: one step per filter, one for the rebalancer."""
        return [f"after_{s}" for s in self.stages] + (
            [f"after_{self.rebalancer.name}"] if self.rebalancer else [])


def plan(method: str) -> Plan:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (one of {', '.join(sorted(METHODS))})")
    m = METHODS[method]
    filters = tuple(FILTERS[name] for name in m.filters)
    rebalancer = REBALANCERS[m.rebalancer] if m.rebalancer else None
    needs = {n for f in filters for n in f.needs} | set(rebalancer.needs if rebalancer else ())
    finishers = tuple(r for r in REBALANCERS.values() if r.every_method)
    return Plan(m, filters, rebalancer, frozenset(needs), finishers)


def thresholds_for(model: type[BaseModel], values: BaseModel | dict) -> BaseModel:
    """An estimator's own thresholds out of a run's (all estimators' fields, flat)."""
    given = values.model_dump() if isinstance(values, BaseModel) else dict(values)
    return model.model_validate({k: v for k, v in given.items() if k in model.model_fields})
