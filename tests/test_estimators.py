"""CDE, ACE and DRM on hand-computed cases."""

import math

import duckdb
import numpy as np
import polars as pl
import pytest
import torch

from rap.rap_core.engines.attention_stats import column_log_sums
from rap.rap_core.estimators import plan
from rap.rap_core.estimators.select import select_rows
from rap.rap_core.params import Thresholds
from rap.rap_core.store import Store


def select(inputs, th):
    """RAP's decisions (CDE -> ACE -> DRM) for a hand-made input frame."""
    return select_rows(inputs, plan("rap"), th)


def psi_product(response_attn: np.ndarray, sigma: float, min_run: int) -> float | None:
    """psi by the direct product over each column's run (the reference for the log-domain
    SQL). None when no column has a run of at least min_run rows."""
    size = response_attn.shape[0]
    values = [math.prod(sigma * response_attn[i, j] for i in range(j, size))
              for j in range(size) if size - j >= min_run]
    return max(values) if values else None

INPUT_COLUMNS = ["source_row", "sample_id", "row_status", "error_code", "error_message",
                 "n_images", "n_mm", "n_text", "acc_mm", "acc_text", "d",
                 "inference_error_stage", "inference_error_code", "inference_error_message",
                 "has_attention", "psi_log", "psi_norm_log"]


def row(i, acc_mm, acc_text, psi_log=-10.0, psi_norm_log=-1.0, **over):
    base = dict(source_row=i, sample_id=f"s{i}", row_status="ok", error_code=None,
                error_message=None, n_images=1, n_mm=5, n_text=5, acc_mm=acc_mm,
                acc_text=acc_text, d=None if acc_mm is None else acc_mm - acc_text,
                inference_error_stage=None, inference_error_code=None,
                inference_error_message=None, has_attention=True, psi_log=psi_log,
                psi_norm_log=psi_norm_log)
    base.update(over)
    return base


def frame(rows):
    return pl.DataFrame(rows, schema_overrides={"error_code": pl.String,
                                                "error_message": pl.String,
                                                "inference_error_stage": pl.String,
                                                "inference_error_code": pl.String,
                                                "inference_error_message": pl.String,
                                                "psi_log": pl.Float64}).select(INPUT_COLUMNS)


def by_sample(decisions):
    return {r["sample_id"]: (r["state"], r["stage"], r["reason"])
            for r in decisions.iter_rows(named=True)}


@pytest.fixture
def memory_store():
    store = Store(duckdb.connect())
    store.migrate()
    return store


def test_d_on_the_grid_of_its_values_is_exact(memory_store):
    """0.8 - 0.2 is 0.6000000000000001 in floating point: D > 0.6 must still drop it, as it
    drops 1.0 - 0.4 (both D = 0.6 at M = 5)."""
    rows = [{"sample_id": sid, "model_key": "m", "settings_key": "s", "condition": c,
             "rollout_index": i, "response": "", "token_ids": [], "extracted_answer": None,
             "correct": i < k}
            for sid, mm, text in (("x", 4, 1), ("y", 5, 2), ("z", 3, 2), ("w", 2, 1))
            for c, k in (("mm", mm), ("text", text)) for i in range(5)]
    memory_store.upsert("rollouts", pl.DataFrame(rows, schema_overrides={
        "token_ids": pl.List(pl.Int32), "extracted_answer": pl.String}))
    d = dict(memory_store.con.sql("SELECT sample_id, d FROM cde_scores").fetchall())
    assert d == {"x": 0.6, "y": 0.6, "z": 0.2, "w": 0.2}
    assert [sid for sid, v in sorted(d.items()) if v > 0.6] == []
    assert [sid for sid, v in sorted(d.items()) if v > 0.2] == ["x", "y"]


def test_cde_view_computes_d(memory_store):
    mm, text = [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]
    rows = [{"sample_id": "x", "model_key": "m", "settings_key": "s", "condition": c,
             "rollout_index": i, "response": "", "token_ids": [], "extracted_answer": None,
             "correct": bool(v)}
            for c, grades in (("mm", mm), ("text", text)) for i, v in enumerate(grades)]
    memory_store.upsert("rollouts", pl.DataFrame(rows, schema_overrides={
        "token_ids": pl.List(pl.Int32), "extracted_answer": pl.String}))
    got = memory_store.con.sql("SELECT acc_mm, acc_text, d FROM cde_scores").fetchall()[0]
    assert got == pytest.approx((0.6, 0.2, 0.4))
    diff = memory_store.con.sql("SELECT difficulty FROM difficulty").fetchall()[0][0]
    assert diff == pytest.approx(0.4)


def test_cde_threshold_is_strict():
    """lambda_c = 0.5 with M = 5 means D >= 0.6 survives, D = 0.4 does not."""
    out = by_sample(select(frame([row(0, 0.6, 0.0), row(1, 0.6, 0.2), row(2, 1.0, 0.4)]),
                           Thresholds(drm_k=0)))
    assert out["s0"][0] == "selected"
    assert out["s1"] == ("dropped", "cde", "cde_language_prior")
    assert out["s2"][0] == "selected"


def causal_attention(size: int, prompt: int, seed: int) -> np.ndarray:
    """A real softmax over prompt + response keys, returned on the response block."""
    g = torch.Generator().manual_seed(seed)
    total = prompt + size
    logits = torch.randn(total, total, generator=g, dtype=torch.float64) * 2
    logits = logits.masked_fill(torch.triu(torch.ones(total, total, dtype=torch.bool), 1),
                                float("-inf"))
    return torch.softmax(logits, -1)[prompt:, prompt:].numpy()


def sql_psi(con, sums, sigma, min_run):
    return con.execute("SELECT psi_log($s, $g, $m)",
                       {"s": list(map(float, sums)), "g": sigma, "m": min_run}).fetchall()[0][0]


@pytest.mark.parametrize("size, sigma, min_run", [(6, 2.0, 1), (9, 2.0, 4), (12, 3.5, 4),
                                                  (5, 2.0, 5)])
def test_psi_log_domain_matches_direct_product(memory_store, size, sigma, min_run):
    attn = causal_attention(size, prompt=7, seed=size)
    sums = column_log_sums(torch.from_numpy(attn))
    expected = psi_product(attn, sigma, min_run)
    got = sql_psi(memory_store.con, sums, sigma, min_run)
    assert math.exp(got) == pytest.approx(expected, rel=1e-9)


def test_psi_ignores_short_runs_and_is_null_without_any(memory_store):
    attn = causal_attention(3, prompt=4, seed=1)
    sums = column_log_sums(torch.from_numpy(attn))
    assert psi_product(attn, 2.0, 4) is None
    assert sql_psi(memory_store.con, sums, 2.0, 4) is None
    # the last column (run of 1) scores sigma * A[L, L] and would dominate without the guard
    assert math.exp(sql_psi(memory_store.con, sums, 2.0, 1)) == pytest.approx(
        psi_product(attn, 2.0, 1))


def test_psi_log_domain_survives_underflow(memory_store):
    size = 400
    attn = np.tril(np.full((size, size), 1e-3))
    assert psi_product(attn, 2.0, 350) == 0.0  # the direct product underflows
    got = sql_psi(memory_store.con, column_log_sums(torch.from_numpy(attn)), 2.0, 350)
    assert got == pytest.approx(350 * math.log(2e-3))


def test_length_normalised_psi(memory_store):
    attn = causal_attention(8, prompt=5, seed=3)
    sums = column_log_sums(torch.from_numpy(attn))
    expected = max(np.mean(np.log(2.0 * attn[j:, j])) for j in range(8) if 8 - j >= 4)
    got = memory_store.con.execute("SELECT psi_norm_log($s, 2.0, 4)",
                                   {"s": list(map(float, sums))}).fetchall()[0][0]
    assert got == pytest.approx(expected)


def test_ace_drops_over_trusted_and_direction_is_configurable():
    rows = [row(0, 1.0, 0.0, psi_log=math.log(0.5)), row(1, 1.0, 0.0, psi_log=math.log(0.01)),
            row(2, 1.0, 0.0, psi_log=None)]
    above = by_sample(select(frame(rows), Thresholds(drm_k=0)))
    assert above["s0"] == ("dropped", "ace", "ace_attention_bias")
    assert above["s1"][0] == "selected"
    assert above["s2"][0] == "selected"  # too short to judge: kept
    below = by_sample(select(frame(rows), Thresholds(drm_k=0, ace_direction="drop_below")))
    assert below["s0"][0] == "selected" and below["s1"][2] == "ace_attention_bias"


def test_ace_length_normalised_uses_its_own_score():
    rows = [row(0, 1.0, 0.0, psi_log=math.log(0.5), psi_norm_log=math.log(0.05))]
    out = by_sample(select(frame(rows), Thresholds(drm_k=0, ace_score="length_normalised")))
    assert out["s0"][0] == "selected"


def drm_pool():
    return [
        row(0, 1.0, 0.0), row(1, 1.0, 0.2),      # easy survivors (D 1.0, 0.8)
        row(2, 0.8, 0.0),                        # survivor, not easy
        row(3, 0.2, 0.0), row(4, 0.4, 0.0),      # CDE-rejected, solvable, D > 0
        row(5, 0.0, 0.0),                        # unsolvable: never a replacement
        row(6, 0.6, 0.6),                        # D = 0: not image-dependent
        row(7, 1.0, 0.0, psi_log=0.0),           # ACE-rejected, but acc_mm = 1: never harder
        row(8, 0.6, 0.0, psi_log=0.0),           # ACE-rejected, solvable, harder than s2
    ]


def swaps(decisions) -> list[tuple[str, str]]:
    """(replaced survivor, its replacement) pairs, read from the decisions' details."""
    d = decisions.filter(pl.col("reason") == "drm_replaced_easy")
    return sorted((r["sample_id"], r["detail"].split()[2]) for r in d.iter_rows(named=True))


def test_drm_auto_k_swaps_easiest_for_strictly_harder():
    decisions = select(frame(drm_pool()), Thresholds())
    out = by_sample(decisions)
    # pairs in order: s1 (1.0, D 0.8) <- s3 (0.2), s0 (1.0, D 1.0) <- s4 (0.4); auto stops at
    # the two survivors with acc_mm = 1 (s2 <- s8 would be strictly harder too)
    assert swaps(decisions) == [("s0", "s4"), ("s1", "s3")]
    assert out["s2"] == ("selected", "ace", "passed_cde_ace")
    assert out["s5"][0] == out["s6"][0] == out["s7"][0] == out["s8"][0] == "dropped"
    detail = decisions.filter(pl.col("sample_id") == "s3")["detail"][0]
    assert detail == "re-admitted, was cde_language_prior; replaces s1 (acc_mm 0.20 < 1.00)"


def test_drm_explicit_k_is_capped_by_the_strictly_harder_pairs():
    one = select(frame(drm_pool()), Thresholds(drm_k=1))
    assert swaps(one) == [("s1", "s3")]
    many = select(frame(drm_pool()), Thresholds(drm_k=50))
    # s2 (0.8) <- s8 (0.6, dropped by ACE) is the third pair; s7 (1.0) is never harder
    assert swaps(many) == [("s0", "s4"), ("s1", "s3"), ("s2", "s8")]
    assert (many["state"] == "selected").sum() == 3  # DRM keeps the size constant
    assert by_sample(many)["s7"][2] == "ace_attention_bias"


def test_drm_pool_cde_rejected_keeps_ace_drops_out():
    everything = by_sample(select(frame(drm_pool()), Thresholds(drm_k=50)))
    assert everything["s8"] == ("selected", "drm", "drm_hard_replacement")
    cde_only = select(frame(drm_pool()), Thresholds(drm_k=50, drm_pool="cde_rejected"))
    assert swaps(cde_only) == [("s0", "s4"), ("s1", "s3")]
    assert by_sample(cde_only)["s8"] == ("dropped", "ace", "ace_attention_bias")


def test_a_readmitted_ace_drop_keeps_both_facts():
    decisions = select(frame(drm_pool()), Thresholds(drm_k=50))
    s8 = decisions.filter(pl.col("sample_id") == "s8").row(0, named=True)
    assert (s8["state"], s8["reason"], s8["passed"]) == ("selected", "drm_hard_replacement",
                                                         ["cde"])  # passed CDE, not ACE
    assert s8["detail"].startswith("re-admitted, was ace_attention_bias; replaces s2")


def test_drm_can_allow_nonpositive_d():
    out = by_sample(select(frame(drm_pool()), Thresholds(drm_k=50,
                                                         drm_require_positive_d=False)))
    # s6 (0.6, D = 0) now ties s8 (0.6, D 0.6): the higher D goes first
    assert out["s8"][2] == "drm_hard_replacement" and out["s6"][2] == "cde_language_prior"
    out = by_sample(select(frame([row(0, 1.0, 0.0), row(1, 0.6, 0.6)]),
                           Thresholds(drm_require_positive_d=False)))
    assert out["s1"][2] == "drm_hard_replacement"
    assert out["s0"][2] == "drm_replaced_easy"
    assert by_sample(select(frame(drm_pool()), Thresholds(drm_k=50)))["s5"][2] == \
        "cde_language_prior"  # acc_mm = 0 is never eligible


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("pool", ["all_rejected", "cde_rejected"])
@pytest.mark.parametrize("k", ["auto", 3, 1000])
def test_no_replacement_is_as_easy_as_what_it_replaces(seed, pool, k):
    rng = np.random.default_rng(seed)
    rows = [row(i, float(rng.integers(0, 6)) / 5, float(rng.integers(0, 6)) / 5,
                psi_log=float(rng.choice([-10.0, 0.0]))) for i in range(60)]
    th = Thresholds(drm_k=k, drm_pool=pool)
    decisions = select(frame(rows), th)
    acc = dict(zip(decisions["sample_id"], decisions["acc_mm"]))
    pairs = [(easy, hard) for easy, hard in swaps(decisions)]
    assert all(acc[hard] < acc[easy] for easy, hard in pairs)
    assert len(pairs) == (decisions["reason"] == "drm_hard_replacement").sum()
    if k == "auto":
        easy_survivors = decisions.filter(pl.col("passed").list.len() == 2)
        assert len(pairs) <= (easy_survivors["acc_mm"] >= 1).sum()
    if pool == "cde_rejected":
        back = decisions.filter(pl.col("reason") == "drm_hard_replacement")
        assert (back["passed"].list.len() == 0).all()  # all had been dropped by CDE


def test_every_row_ends_in_exactly_one_state():
    rows = drm_pool() + [
        row(8, None, None, row_status="error", error_code="image_missing",
            error_message="gone", sample_id=None, n_mm=None, n_text=None, has_attention=False),
        row(9, 1.0, 0.0, row_status="duplicate", sample_id="s0"),
        row(10, None, None, n_mm=None, n_text=None, inference_error_stage="multimodal",
            inference_error_code="prompt_too_long", inference_error_message="long"),
        row(11, 1.0, 0.0, n_images=0),
        row(12, 1.0, 0.0, has_attention=False, psi_log=None,
            inference_error_stage="attention", inference_error_code="bad_response",
            inference_error_message="empty"),
    ]
    out = select(frame(rows), Thresholds())
    assert out.height == len(rows)
    assert set(out["state"]) == {"selected", "dropped", "error"}
    states = dict(zip(out["source_row"], zip(out["state"], out["reason"])))
    assert states[8] == ("error", "image_missing")
    assert states[9] == ("dropped", "duplicate_row")
    assert states[10] == ("error", "prompt_too_long")
    assert states[11] == ("dropped", "cde_no_image")
    assert states[12] == ("error", "bad_response")
