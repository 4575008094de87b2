"""CDE, ACE and DRM as pure functions over a frame of stored scores.

Input: one row per pool row (sql/queries/selection_inputs.sql). Output: one decision per row:
selected (stage that admitted it), dropped (one reason code) or error.
"""

from __future__ import annotations

import math

import polars as pl

from rap_core.params import Thresholds

DECISION_COLUMNS = ["source_row", "sample_id", "state", "stage", "reason", "detail",
                    "passed_cde", "passed_ace", "acc_mm", "acc_text", "d", "psi", "difficulty"]


def cde_pass(d: pl.Expr, lambda_c: float) -> pl.Expr:
    """Keep x iff D(x) > lambda_c."""
    return d > lambda_c


def ace_drop(score_log: pl.Expr, th: Thresholds) -> pl.Expr:
    """Drop x iff its psi crosses lambda_a in the configured direction (log domain);
    a response too short for any qualifying column is never dropped."""
    cut = math.log(th.lambda_a)
    crossed = score_log > cut if th.ace_direction == "drop_above" else score_log < cut
    return crossed.fill_null(False)


def filter_cde_ace(frame: pl.DataFrame, th: Thresholds) -> pl.DataFrame:
    """State, stage and reason for every row before DRM."""
    score_log = pl.col("psi_norm_log" if th.ace_score == "length_normalised" else "psi_log")
    passed_cde = cde_pass(pl.col("d"), th.lambda_c).fill_null(False)
    rollout_error = pl.col("inference_error_stage").is_in(["text_only", "multimodal"])
    attention_error = pl.col("inference_error_stage") == "attention"
    rules = [  # (condition, state, stage, reason, detail) in priority order
        (pl.col("row_status") == "error", "error", "ingest", pl.col("error_code"),
         pl.col("error_message")),
        (pl.col("row_status") == "duplicate", "dropped", "ingest", pl.lit("duplicate_row"),
         pl.lit("same content as an earlier row")),
        (pl.col("n_images") == 0, "dropped", "cde", pl.lit("cde_no_image"),
         pl.lit("text-only sample: cannot depend on an image")),
        (rollout_error, "error", pl.col("inference_error_stage"),
         pl.col("inference_error_code"), pl.col("inference_error_message")),
        (pl.col("n_mm").is_null() | pl.col("n_text").is_null(), "error", "cde",
         pl.lit("missing_facts"), pl.lit("no stored rollouts: run `rap select` first")),
        (~passed_cde, "dropped", "cde", pl.lit("cde_language_prior"), None),
        (attention_error, "error", "attention", pl.col("inference_error_code"),
         pl.col("inference_error_message")),
        (~pl.col("has_attention"), "error", "attention", pl.lit("missing_facts"),
         pl.lit("no stored attention statistics: run `rap select` first")),
        (ace_drop(score_log, th), "dropped", "ace", pl.lit("ace_attention_bias"), None),
    ]
    state, stage = pl.lit("selected"), pl.lit("ace")
    reason, detail = pl.lit("passed_cde_ace"), pl.lit(None, pl.String)
    for cond, st, sg, rs, dt in reversed(rules):
        cond = cond.fill_null(False)
        state = pl.when(cond).then(pl.lit(st) if isinstance(st, str) else st).otherwise(state)
        stage = pl.when(cond).then(pl.lit(sg) if isinstance(sg, str) else sg).otherwise(stage)
        reason = pl.when(cond).then(rs).otherwise(reason)
        detail = pl.when(cond).then(dt if dt is not None else pl.lit(None, pl.String)).otherwise(detail)
    return frame.with_columns(
        state=state, stage=stage, reason=reason, detail=detail,
        psi=score_log.clip(upper_bound=700).exp(), difficulty=1 - pl.col("acc_mm"),
    ).with_columns(
        passed_cde=(pl.col("state") == "selected") | pl.col("stage").is_in(["ace", "attention"]),
        passed_ace=pl.col("state") == "selected",
    )


def drm_k(survivors: pl.DataFrame, eligible: pl.DataFrame, th: Thresholds) -> int:
    """k = drm_k, or the survivors with acc_mm = 1 (auto), capped by what can be swapped."""
    k = survivors.filter(pl.col("acc_mm") >= 1.0).height if th.drm_k == "auto" else th.drm_k
    return min(k, eligible.height, survivors.height)


def replace_easy(decisions: pl.DataFrame, th: Thresholds) -> pl.DataFrame:
    """DRM: swap the k easiest survivors for the k hardest solvable, image-dependent
    samples that CDE or ACE rejected."""
    survivors = decisions.filter(pl.col("state") == "selected")
    rejected = decisions.filter(pl.col("reason").is_in(["cde_language_prior",
                                                        "ace_attention_bias"]))
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


def select(inputs: pl.DataFrame, th: Thresholds) -> pl.DataFrame:
    """CDE -> ACE -> DRM over one pool's rows; one decision per row."""
    return replace_easy(filter_cde_ace(inputs, th), th).select(DECISION_COLUMNS)
