"""A method's filters, then its rebalancer, as pure functions over a frame of stored scores.

Input: one row per pool row (the base inputs joined with each filter's source). Output: one
decision per row: selected, dropped (one reason code) or error, with the stage that decided,
the filters it passed (`passed`, before rebalancing) and the scores it was judged on.
"""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel

from rap.rap_core.estimators.base import FACT_INPUTS, Context, Plan, thresholds_for
from rap.rap_core.io.groups import NO_GROUP

DECISION_COLUMNS = ["source_row", "sample_id", "state", "stage", "reason", "detail", "passed",
                    "acc_mm", "acc_text", "d", "psi", "difficulty", "group_name"]
SCORE_COLUMNS = ("acc_mm", "acc_text", "d", "psi")
_NO_DETAIL = pl.lit(None, pl.String)


def _rule(cond, state, stage, reason, detail=None, passed: int = 0) -> tuple:
    lit = (lambda v: pl.lit(v) if isinstance(v, str) else v)
    return (cond.fill_null(False), lit(state), lit(stage), lit(reason),
            _NO_DETAIL if detail is None else lit(detail), passed)


def _fact_rules(plan: Plan, index: int, done: set[str], th) -> list[tuple]:
    """Errors for the facts filter `index` needs that no earlier filter checked: a failed
    inference phase, then a fact skipped on purpose that the filter cannot do without at
    these thresholds, then a fact that is not stored."""
    f = plan.filters[index]
    todo = [n for n in f.needs if n not in done]
    done.update(todo)
    if not todo:
        return []
    failed = pl.col("inference_error_stage").is_in([FACT_INPUTS[n].error_stage for n in todo])
    rules = [_rule(failed, "error", pl.col("inference_error_stage"),
                   pl.col("inference_error_code"), pl.col("inference_error_message"), index)]
    for need in todo:
        fact = FACT_INPUTS[need]
        missing = ~fact.present().fill_null(False)
        if fact.skipped is not None:
            skipped = fact.skipped().fill_null(False)
            missing = missing & ~skipped
            if not f.judges_skipped(thresholds_for(f.thresholds, th)):
                rules.append(_rule(skipped, "error", fact.missing_stage or f.stage_name,
                                   "missing_facts", fact.skipped_message, index))
        rules.append(_rule(missing, "error", fact.missing_stage or f.stage_name,
                           "missing_facts", fact.message, index))
    return rules


def filter_rows(frame: pl.DataFrame, plan: Plan, th: BaseModel | dict) -> pl.DataFrame:
    """State, stage, reason and the filters passed, for every row before rebalancing."""
    first = plan.filters[0].stage_name if plan.filters else (
        plan.rebalancer.name if plan.rebalancer else "ingest")
    first_name = plan.filters[0].name if plan.filters else first
    rules = [
        _rule(pl.col("row_status") == "error", "error", "ingest", pl.col("error_code"),
              pl.col("error_message")),
        _rule(pl.col("row_status") == "duplicate", "dropped", "ingest", "duplicate_row",
              "same content as an earlier row"),
        _rule(pl.col("n_images") == 0, "dropped", first, f"{first_name}_no_image",
              "text-only sample: cannot depend on an image")]
    done: set[str] = set()
    for i, f in enumerate(plan.filters):
        own = thresholds_for(f.thresholds, th)
        rules += _fact_rules(plan, i, done, th)
        # a row the rule cannot judge (a null) is dropped: a filter keeps only what it passes
        rules.append(_rule(~f.keep(own).fill_null(False), "dropped", f.stage_name, f.reason,
                           None, i))
    last = plan.filters[-1].stage_name if plan.filters else first
    names = "_".join(f.name for f in plan.filters)
    state, stage, reason = pl.lit("selected"), pl.lit(last), pl.lit(f"passed_{names}")
    detail, n_passed = _NO_DETAIL, pl.lit(len(plan.filters))
    for cond, st, sg, rs, dt, passed in reversed(rules):
        state = pl.when(cond).then(st).otherwise(state)
        stage = pl.when(cond).then(sg).otherwise(stage)
        reason = pl.when(cond).then(rs).otherwise(reason)
        detail = pl.when(cond).then(dt).otherwise(detail)
        n_passed = pl.when(cond).then(pl.lit(passed)).otherwise(n_passed)
    return _with_scores(frame, plan, th).with_columns(
        state=state, stage=stage, reason=reason, detail=detail,
        passed=pl.lit(plan.stages, dtype=pl.List(pl.String)).list.head(n_passed))


def _with_scores(frame: pl.DataFrame, plan: Plan, th) -> pl.DataFrame:
    """The decision's score columns: each filter's own, the rest as stored (or null)."""
    extra: dict[str, pl.Expr] = {}
    for f in plan.filters:
        extra.update(f.scores(thresholds_for(f.thresholds, th)))
    frame = frame.with_columns(**extra) if extra else frame
    missing = [pl.lit(None, pl.Float64).alias(c) for c in SCORE_COLUMNS if c not in frame.columns]
    frame = frame.with_columns(missing) if missing else frame
    group = (pl.col("group_name").fill_null(NO_GROUP) if "group_name" in frame.columns
             else pl.lit(NO_GROUP))
    return frame.with_columns(difficulty=1 - pl.col("acc_mm"), group_name=group)


def rebalance(decisions: pl.DataFrame, plan: Plan, th, context: Context,
              each=None) -> pl.DataFrame:
    """The method's rebalancer over the filtered decisions, then those every method runs
    (the coverage floor) where their thresholds switch them on; each(rebalancer, before,
    after) is told of every step."""
    context.filter_reasons = {f.name: f.reason for f in plan.filters}
    for rebalancer in plan.applied(th):
        before = decisions
        decisions = rebalancer.apply(decisions, thresholds_for(rebalancer.thresholds, th),
                                     context)
        if each:
            each(rebalancer, before, decisions)
    return decisions


def select_rows(inputs: pl.DataFrame, plan: Plan, th, context: Context | None = None
                ) -> pl.DataFrame:
    """Filters then rebalancer over one pool's rows; one decision per row."""
    decided = rebalance(filter_rows(inputs, plan, th), plan, th, context or Context())
    return decided.select(DECISION_COLUMNS)
