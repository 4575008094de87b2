"""`rap compare RUN_A RUN_B`: how two selections of one pool differ.

Sizes, overlap and Jaccard of the selected sets (view run_overlap), how each row ended in one
run against the other (view reason_crosstab), and the selected counts per group when the pool
has groups: the groups of the coverage table (each run's --group-by, as stored with its
decisions).
"""

from __future__ import annotations

import polars as pl

from rap.rap_core.store import Store, StoreError


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
    # the groups of the run that has them (A's when both do): the coverage table's groups
    side = "group_a" if rows["group_a"].n_unique() > 1 or rows["group_b"].n_unique() <= 1 \
        else "group_b"
    run = a if side == "group_a" else b
    return {"a": a, "b": b, "overlap": overlap, "crosstab": crosstab,
            "group_by": run.thresholds.get("group_by", "group"),
            "groups": by_group(rows, side)}


def by_group(rows: pl.DataFrame, side: str = "group_a") -> pl.DataFrame | None:
    """Per group: pool rows and share, each run's selected rows and share, and the rows both
    selected; None when the pool has one group only."""
    if rows[side].n_unique() <= 1:
        return None
    n_a, n_b = max(int(rows["in_a"].sum()), 1), max(int(rows["in_b"].sum()), 1)
    return (rows.group_by(pl.col(side).alias("group"))
            .agg(rows=pl.len(), selected_a=pl.col("in_a").sum(),
                 selected_b=pl.col("in_b").sum(),
                 both=(pl.col("in_a") & pl.col("in_b")).sum())
            .with_columns(pool_share=(pl.col("rows") / rows.height).round(3),
                          share_a=(pl.col("selected_a") / n_a).round(3),
                          share_b=(pl.col("selected_b") / n_b).round(3))
            .select("group", "rows", "pool_share", "selected_a", "share_a", "selected_b",
                    "share_b", "both")
            .sort(["rows", "group"], descending=[True, False]))


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
            lines += ["", f"selected per group ({found['group_by']}; shares of the pool and "
                      "of each selection)", str(found["groups"])]
    lines += ["", "as SQL: SELECT * FROM run_overlap / reason_crosstab "
              f"WHERE run_a = '{a.run_id}' AND run_b = '{b.run_id}'"]
    return "\n".join(lines)
