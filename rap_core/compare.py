"""`rap compare RUN_A RUN_B`: how two selections of one pool differ.

Sizes, overlap and Jaccard of the selected sets (view run_overlap), how each row ended in one
run against the other (view reason_crosstab), and the selected counts per group when the pool
has groups: verl's data_source, or the question type of the embedded easy-VQA pool.
"""

from __future__ import annotations

import polars as pl

from rap_core.params import BUILTIN_DATA
from rap_core.store import Store, StoreError


def compare_runs(store: Store, run_a: str, run_b: str) -> dict:
    """overlap (one row), crosstab and groups (frames) of two runs on the same pool."""
    a, b = store.selection_run(run_a, "compare"), store.selection_run(run_b, "compare")
    if a.pool_id != b.pool_id:
        raise StoreError(f"runs {run_a} and {run_b} selected from different pools "
                         f"({a.pool_id}, {b.pool_id}): nothing to compare row by row")
    keys = {"run_a": a.run_id, "run_b": b.run_id}
    overlap = store.query("queries/overlap_of_runs", **keys).to_dicts()[0]
    crosstab = store.query("queries/crosstab_of_runs", **keys)
    rows = store.query("queries/selected_by_group", **keys)
    source = store.query("queries/pool_source", pool_id=a.pool_id)["source"].to_list()
    return {"a": a, "b": b, "overlap": overlap, "crosstab": crosstab,
            "groups": by_group(rows, builtin=source == [BUILTIN_DATA])}


def by_group(rows: pl.DataFrame, builtin: bool) -> pl.DataFrame | None:
    """Selected counts per group, or None when the pool has no groups."""
    if rows["data_source"].drop_nulls().n_unique() > 1:
        group = pl.col("data_source").fill_null("(none)")
    elif builtin:
        from rap_core.demo.easy_vqa import question_type
        group = pl.col("answer").map_elements(question_type, return_dtype=pl.String)
    else:
        return None
    return (rows.with_columns(group=group).group_by("group")
            .agg(rows=pl.len(), selected_a=pl.col("in_a").sum(), selected_b=pl.col("in_b").sum(),
                 both=(pl.col("in_a") & pl.col("in_b")).sum())
            .sort("group"))


def format_comparison(found: dict, max_rows: int = 30) -> str:
    """The comparison as terminal tables."""
    a, b, o = found["a"], found["b"], found["overlap"]
    jaccard = "n/a" if o["jaccard"] is None else f"{o['jaccard']:.3f}"
    lines = [f"A  {a.run_id}  ({a.method}, {a.mode})  selected {o['n_a']}",
             f"B  {b.run_id}  ({b.method}, {b.mode})  selected {o['n_b']}",
             f"both {o['n_both']}, only A {o['n_a'] - o['n_both']}, only B "
             f"{o['n_b'] - o['n_both']}, Jaccard {jaccard}", "",
             "how each row ended: A (rows) against B (columns)"]
    table = found["crosstab"].pivot(on="ended_b", index="ended_a", values="n").fill_null(0)
    with pl.Config(tbl_rows=max_rows, tbl_cols=-1, fmt_str_lengths=40, tbl_width_chars=240,
                   tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        lines.append(str(table))
        if found["groups"] is not None:
            lines += ["", "selected per group", str(found["groups"])]
    lines += ["", "as SQL: SELECT * FROM run_overlap / reason_crosstab "
              f"WHERE run_a = '{a.run_id}' AND run_b = '{b.run_id}'"]
    return "\n".join(lines)
