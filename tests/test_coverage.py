"""Groups and the coverage floor: answer kinds, reading group columns, the floor's order and
its invariants on random frames, and the composition shown for a run."""

import dataclasses
import json
import math

import polars as pl
import pytest
from hypothesis import given, settings, strategies as st

from rap.rap_core.estimators import plan
from rap.rap_core.estimators.coverage import (composition, floors, largest, under_represented,
                                          with_floors)
from rap.rap_core.estimators.select import select_rows
from rap.rap_core.grading import answer_kind
from rap.rap_core.io.groups import column_value, resolve_group_by
from rap.rap_core.io.readers import PoolReadError, read_pool
from rap.rap_core.params import DataSpec, Thresholds

from conftest import write_png
from test_estimators import frame, row


@pytest.mark.parametrize("answer, kind", [
    ("Yes", "yes/no"), ("no.", "yes/no"), ("True", "yes/no"), ("B", "choice"),
    ("(C)", "choice"), ("A. 12 cm", "choice"), ("12", "number"), ("\\frac{1}{2}", "number"),
    ("3 cm", "number"), ("x^2+1", "number"), ("2x+1", "number"), ("3 apples", "short text"),
    ("blue", "short text"),
    ("red circle", "short text"), ("the big red circle", "other text")])
def test_answer_kind_follows_the_grading_rules(answer, kind):
    assert answer_kind(answer) == kind


def test_group_values_and_auto():
    raw = {"data_source": "geo", "extra_info": {"split": "train", "n": 3}, "tags": ["a"],
           "score": float("nan"), "level": 2}
    assert column_value(raw, "data_source") == "geo"
    assert column_value(raw, "extra_info.split") == "train"
    assert column_value(raw, "level") == "2"
    assert column_value(raw, "tags") is None and column_value(raw, "score") is None
    assert column_value(raw, "extra_info.missing") is None
    assert resolve_group_by("auto", {"data_source": 2, "answer_kind": 3}) == "data_source"
    assert resolve_group_by("auto", {"data_source": 1, "answer_kind": 3}) == "answer_kind"
    assert resolve_group_by("auto", {"question_type": 3, "answer_kind": 2}) == "question_type"
    assert resolve_group_by("subject", {}) == "subject"


def _grouped(rows, groups):
    return frame(rows).with_columns(group_name=pl.Series(groups))


def _rap(inputs, floor):
    return select_rows(inputs, plan("rap"), Thresholds(coverage_floor=floor))


def test_floor_adds_a_groups_best_rejects_in_raps_order():
    # group y: 10 rows, 6 pass CDE (D = 1); group n: 10 rows the text answers (D <= 0.2)
    rows = [row(i, 1.0, 0.0) for i in range(6)] + [row(i, 0.2, 0.2) for i in range(6, 10)]
    rejects = [(0.2, 0.0), (0.6, 0.4), (0.8, 0.8), (0.4, 0.4), (0.2, 0.2), (0.0, 0.0),
               (1.0, 1.0), (0.2, 0.4), (0.6, 0.6), (0.2, 0.2)]
    rows += [row(10 + i, mm, text) for i, (mm, text) in enumerate(rejects)]
    inputs = _grouped(rows, ["y"] * 10 + ["n"] * 10)
    paper = select_rows(inputs, plan("rap"), Thresholds(drm_k=0))
    assert int((paper["state"] == "selected").sum()) == 6
    out = select_rows(inputs, plan("rap"), Thresholds(drm_k=0, coverage_floor=1.0))
    chosen = out.filter(pl.col("state") == "selected")
    assert chosen.height == 6  # |S| unchanged
    assert floors(out, 1.0) == {"y": 3, "n": 3}
    added = out.filter(pl.col("reason") == "coverage_added")
    # highest D first (0.2: s10, s11), then lower acc_mm (0.2: s14, s19), then sample id
    assert added["sample_id"].to_list() == ["s10", "s11", "s14"]
    replaced = out.filter(pl.col("reason") == "coverage_replaced")
    assert replaced["sample_id"].to_list() == ["s0", "s1", "s2"]  # the easiest, by id
    assert all("group n under its floor" in d for d in added["detail"])
    assert all(d.startswith("replaced by s1") for d in replaced["detail"])
    # every other decision is the paper's
    same = out.filter(pl.col("stage") != "coverage")
    assert same.select("source_row", "state", "reason").equals(
        paper.filter(pl.col("source_row").is_in(same["source_row"].to_list())).select(
            "source_row", "state", "reason"))


def test_floor_takes_the_easiest_rows_of_groups_above_their_floor():
    # a and b: 4 pool rows each, all selected (floor 2 each); c: 8 rows, none selected (floor 4)
    rows = [row(i, 1.0, 0.0) for i in range(8)] + [row(i, 0.4, 0.2) for i in range(8, 16)]
    inputs = _grouped(rows, ["a"] * 4 + ["b"] * 4 + ["c"] * 8).with_columns(
        acc_mm=pl.Series([1.0, 1.0, 0.8, 0.8, 1.0, 0.8, 0.8, 0.8] + [0.4] * 8))
    inputs = inputs.with_columns(d=pl.col("acc_mm") - pl.col("acc_text"))
    out = select_rows(inputs, plan("rap"), Thresholds(coverage_floor=1.0, drm_k=0))
    replaced = out.filter(pl.col("reason") == "coverage_replaced")["sample_id"].to_list()
    # acc_mm 1.0 first (s0, s1, s4); then s2 and s3 would take a under its floor: s5
    assert sorted(replaced) == ["s0", "s1", "s4", "s5"]
    counts = dict(out.filter(pl.col("state") == "selected").group_by("group_name").len()
                  .iter_rows())
    assert counts == {"a": 2, "b": 2, "c": 4}


def test_shortfall_when_a_group_has_too_few_solvable_rows():
    rows = [row(i, 1.0, 0.0) for i in range(5)] + [
        row(5, 0.0, 0.0), row(6, 0.2, 0.0), row(7, 0.0, 0.2), row(8, 0.0, 0.0),
        row(9, 0.0, 0.0)]
    inputs = _grouped(rows, ["y"] * 5 + ["n"] * 5)
    out = select_rows(inputs, plan("rap"), Thresholds(drm_k=0, coverage_floor=1.0))
    assert out.filter(pl.col("reason") == "coverage_added")["sample_id"].to_list() == ["s6"]
    table = with_floors(composition(out), 1.0)
    assert dict(zip(table["group"], table["floor_rows"])) == {"y": 2, "n": 2}
    assert dict(zip(table["group"], table["shortfall"])) == {"y": 0, "n": 1}
    paper = composition(select_rows(inputs, plan("rap"), Thresholds(drm_k=0)))
    assert under_represented(paper, 0.6) == ["n 50% of the pool -> 0% of the selection"]
    assert under_represented(table, 0.6) == ["n 50% of the pool -> 20% of the selection"]


def test_largest_sums_the_rest():
    table = pl.DataFrame({"group": [f"g{i}" for i in range(15)], "pool_rows": [15 - i
                                                                               for i in range(15)],
                          "selected_rows": [1] * 15}).with_columns(
        pool_share=pl.col("pool_rows") / 120, selected_share=pl.lit(1 / 15),
        ratio=pl.lit(1.0))
    top = largest(table, 12)
    assert top.height == 13 and top["group"][-1] == "(3 other groups)"
    assert top["pool_rows"][-1] == 3 + 2 + 1 and top["selected_rows"][-1] == 3
    assert top["pool_share"][-1] == pytest.approx(6 / 120)


@st.composite
def pools(draw):
    n = draw(st.integers(1, 40))
    rows, groups = [], []
    for i in range(n):
        mm = draw(st.sampled_from([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]))
        text = draw(st.sampled_from([0.0, 0.2, 0.4, 0.6, 0.8, 1.0]))
        kind = draw(st.sampled_from(["ok", "ok", "ok", "ok", "error", "no_image"]))
        extra = ({"row_status": "error", "error_code": "bad", "sample_id": None}
                 if kind == "error" else {"n_images": 0} if kind == "no_image" else {})
        rows.append(row(i, mm, text, psi_log=draw(st.sampled_from([-10.0, 0.0])), **extra))
        groups.append(draw(st.sampled_from(["a", "b", "c", "(none)"])))
    return _grouped(rows, groups)


@settings(max_examples=150, deadline=None)
@given(pools(), st.sampled_from([0.0, 0.3, 0.5, 0.8, 1.0]),
       st.sampled_from(["rap", "pass_band"]))
def test_floor_invariants_on_random_frames(inputs, floor, method):
    without_floor = dataclasses.replace(plan(method), finishers=())
    paper = select_rows(inputs, without_floor, Thresholds())
    out = select_rows(inputs, plan(method), Thresholds(coverage_floor=floor))
    if floor == 0:
        assert out.equals(paper)
        return
    chosen = out.filter(pl.col("state") == "selected")
    assert chosen.height == int((paper["state"] == "selected").sum())  # |S| unchanged
    added = out.filter(pl.col("reason") == "coverage_added")
    assert (added["acc_mm"] > 0).all()
    assert added["sample_id"].n_unique() == added.height
    assert chosen["sample_id"].null_count() == 0
    wanted = floors(paper, floor)
    have = dict(chosen.group_by("group_name").len().iter_rows())
    for group, low in wanted.items():
        if have.get(group, 0) < low:  # short: no solvable reject of the group is left out
            left = out.filter((pl.col("group_name") == group) & (pl.col("state") == "dropped")
                              & (pl.col("stage") != "ingest") & (pl.col("acc_mm") > 0))
            assert left.is_empty()
    # a group never falls under its floor by giving rows away
    for r in out.filter(pl.col("reason") == "coverage_replaced").iter_rows(named=True):
        assert have.get(r["group_name"], 0) >= wanted[r["group_name"]]


def test_floor_of_exact_products_rounds_as_arithmetic():
    # 0.7 * 10 * 100 / 10 is 69.99999999999999 in floating point
    decisions = pl.DataFrame({"group_name": ["a"] * 10, "state": ["selected"] * 10,
                              "stage": ["ace"] * 10})
    assert floors(decisions, 0.7)["a"] == math.floor(7)


def test_rows_that_can_never_be_selected_count_in_no_group():
    """Ingest errors (no group: '(none)'), duplicates and inference errors are not part of
    the composition nor of the floors: they would only ever be 'under-represented'."""
    from rap.rap_core.estimators.coverage import composition, under_represented
    decisions = pl.DataFrame({
        "group_name": ["a"] * 6 + ["b"] * 4 + [None] * 6 + ["a", "b"],
        "state": ["selected", "selected", "selected", "dropped", "dropped", "dropped",
                  "selected", "selected", "dropped", "dropped"] + ["error"] * 6
                 + ["dropped", "error"],
        "stage": ["ace"] * 3 + ["cde"] * 3 + ["ace"] * 2 + ["cde"] * 2 + ["ingest"] * 6
                 + ["ingest", "multimodal"]})
    table = composition(decisions)
    assert table["group"].to_list() == ["a", "b"] and table["pool_rows"].to_list() == [6, 4]
    assert table["pool_share"].to_list() == pytest.approx([0.6, 0.4])
    assert under_represented(table, 0.6) == []
    assert floors(decisions, 1.0) == {"a": 3, "b": 2}


@pytest.fixture
def verl_pool(tmp_path):
    d = tmp_path / "data"
    red = write_png(d / "red.png", (220, 20, 20)).read_bytes()
    rows = [{"data_source": source, "prompt": [{"role": "user", "content": f"<image>{q}"}],
             "images": [{"bytes": red, "path": "red.png"}],
             "reward_model": {"style": "rule", "ground_truth": answer},
             "extra_info": {"split": "train", "index": i}}
            for i, (source, q, answer) in enumerate([
                ("geo", "Is it red?", "yes"), ("geo", "Area?", "12"),
                ("chart", "Which bar?", "B"), ("chart", "Colour?", "red")])]
    path = d / "verl.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return path


def _groups(pool, key):
    got = pool.groups.filter(pl.col("group_key") == key)
    return dict(zip(got["source_row"], got["group_value"]))


def test_verl_pool_groups_by_data_source_and_answer_kind(verl_pool, tmp_path):
    pool = read_pool(DataSpec(path=str(verl_pool)), tmp_path / "cache", "extra_info.split")
    assert _groups(pool, "data_source") == {0: "geo", 1: "geo", 2: "chart", 3: "chart"}
    assert _groups(pool, "answer_kind") == {0: "yes/no", 1: "number", 2: "choice",
                                            3: "short text"}
    assert _groups(pool, "extra_info.split") == {i: "train" for i in range(4)}
    with pytest.raises(PoolReadError, match=r"--group-by subject: no row of .* has a column "
                       r"'subject'"):
        read_pool(DataSpec(path=str(verl_pool)), tmp_path / "cache", "subject")


def summary_of(argv: list[str], settings) -> str:
    """What `rap select|retune ...` prints, run in this process (the flow's Prefect logs must
    not hold on to a test's captured output, so no capsys around a flow run)."""
    from rap.flows import cli
    return cli.format_summary(cli.select(cli.parse_params(argv), settings), settings)


def refused(argv: list[str]) -> list[str]:
    """The lines `rap ...` writes to stderr when it exits with status 2."""
    import contextlib
    import io

    from rap.flows import cli
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(argv) == 2
    return err.getvalue().strip().splitlines()


@pytest.mark.usefixtures("prefect_harness")
def test_select_groups_a_verl_pool(verl_pool, tiny_model_dir, settings):
    base = ["select", "--data", str(verl_pool), "--model", str(tiny_model_dir), "--m", "2",
            "--max-new-tokens", "4", "--no-track", "--no-export"]
    assert "groups by data_source" in summary_of(base + ["--group-by", "data_source"],
                                                 settings)
    assert refused(base + ["--group-by", "subject"]) == [
        f"rap: error: --group-by subject: no row of {verl_pool} has a column "
        "'subject' with a text or number value (a dotted name reads inside a "
        "struct, e.g. extra_info.split; derived: answer_kind)"]
    assert "groups by answer_kind" in summary_of(
        ["retune", "--group-by", "answer_kind", "--no-track", "--no-export"], settings)
    err = refused(["retune", "--group-by", "subject"])
    assert len(err) == 1 and "group column 'subject' was not stored for pool" in err[0]
    from rap.rap_core.settings import Settings
    from rap.rap_core.store import open_store
    with open_store(Settings.from_env().duckdb_path, read_only=True) as store:
        runs = store.con.sql("SELECT run_id, params FROM selection_runs ORDER BY created_at"
                             ).fetchall()
        by_run = {run: json.loads(p)["thresholds"]["group_by"] for run, p in runs}
        assert list(by_run.values()) == ["data_source", "answer_kind"]
        got = store.con.sql("SELECT \"group\", pool_rows FROM coverage WHERE run_id = $r "
                            "ORDER BY \"group\"", params={"r": runs[0][0]}).fetchall()
        assert got == [("chart", 2), ("geo", 2)]
    # a retune not told either way tracks as its base run did (--no-track here)
    inherited = summary_of(["retune", "--no-export"], settings)
    assert "MLflow run  (not tracked)" in inherited, inherited


@pytest.mark.usefixtures("prefect_harness")
def test_composition_everywhere_and_a_floor_retune(settings, tmp_path):
    """The builtin pool's question types through a scripted select (yes/no: the text answers
    them), then `rap retune --coverage-floor 1` with no model call."""
    import mlflow

    import fakes
    from rap.rap_core.engines import base as engine_mod
    from rap.rap_core.io.pool_files import easy_vqa_rows
    from rap.rap_core.store import open_store
    n = 30
    samples = read_pool(DataSpec(limit=n), tmp_path / "c").samples
    kinds = [r["question_type"] for r in easy_vqa_rows(n)]
    from rap.rap_core.io.spec import question_type
    # yes/no: D = 0.5, 0 or 0 (the text helps); colour and shape: D = 1, always right
    yes_no = [fakes.outcome(2, 1), fakes.outcome(1, 1), fakes.outcome(2, 2)]
    outcomes = [yes_no[i % 3] if question_type(a) == "yes/no" else fakes.outcome(2, 0)
                for i, a in enumerate(samples["answer"])]
    model = fakes.script_pool(DataSpec(limit=n), tmp_path, outcomes)
    flags = ["--limit", str(n), "--model", model, "--m", "2", "--max-new-tokens", "8"]
    out = summary_of(["select", *flags, "--no-export"], settings)
    assert "groups by question_type" in out and "under-represented: yes/no" in out, out
    with open_store(settings.duckdb_path, read_only=True) as store:
        run_id, mlflow_id = store.con.sql("SELECT run_id, mlflow_run_id FROM selection_runs"
                                          ).fetchall()[0]
        coverage = store.query("queries/coverage_of_run", run_id=run_id)
        chosen = store.con.sql("SELECT group_name, count(*) FROM decisions WHERE run_id = $r "
                               "AND state = 'selected' GROUP BY ALL", params={"r": run_id})
        chosen = dict(chosen.fetchall())
    pool = {k: kinds.count(k) for k in set(kinds)}
    assert dict(zip(coverage["group"], coverage["pool_rows"])) == pool
    assert dict(zip(coverage["group"], coverage["selected_rows"])) == {
        k: chosen.get(k, 0) for k in pool}
    yes_no = coverage.row(by_predicate=pl.col("group") == "yes/no", named=True)
    assert yes_no["pool_share"] == pytest.approx(pool["yes/no"] / n)
    assert yes_no["ratio"] < 0.6
    # MLflow: the metrics and coverage.csv; the report page: the chart and the flag
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    metrics = client.get_run(mlflow_id).data.metrics
    assert metrics["coverage.yes/no.pool_share"] == pytest.approx(yes_no["pool_share"])
    assert metrics["coverage.yes/no.ratio"] == pytest.approx(yes_no["ratio"])
    assert "selection/coverage.csv" in [a.path for a in client.list_artifacts(mlflow_id,
                                                                              "selection")]
    html = (settings.reports_dir / f"{run_id}.html").read_text()
    assert "Composition by question_type" in html and "under-represented: yes/no" in html
    assert "group yes/no" in html or "group color" in html  # the group on the cards
    # the floor: no model call, same size, yes/no at its floor or short of it
    engine_mod.load_engine.cache_clear()
    loads = len(fakes.LOADS)
    out = summary_of(["retune", "--coverage-floor", "1", "--no-export"], settings)
    assert len(fakes.LOADS) == loads and "after COVERAGE" in out and "coverage floor 1:" in out
    with open_store(settings.duckdb_path, read_only=True) as store:
        retuned = store.con.sql("SELECT run_id FROM selection_runs WHERE mode = 'retune'"
                                ).fetchall()[0][0]
        table = store.query("queries/coverage_of_run", run_id=retuned)
        added = store.con.sql("SELECT group_name, acc_mm FROM decisions WHERE run_id = $r AND "
                              "reason = 'coverage_added'", params={"r": retuned}).fetchall()
        steps = store.con.sql("SELECT step FROM funnel_steps WHERE run_id = $r ORDER BY "
                              "position", params={"r": retuned}).fetchall()
    assert table["selected_rows"].sum() == sum(chosen.values())
    floored = with_floors(table, 1.0)
    for r in floored.iter_rows(named=True):  # at the floor, or short with nothing left
        assert r["selected_rows"] >= r["floor_rows"] or r["group"] == "yes/no"
    assert added and all(g == "yes/no" and acc > 0 for g, acc in added)
    yes_no = floored.row(by_predicate=pl.col("group") == "yes/no", named=True)
    assert yes_no["selected_rows"] == yes_no["floor_rows"] > 0
    assert [s for (s,) in steps][-2:] == ["after_drm", "after_coverage"]


def test_hostile_group_names_stay_text_on_the_page_and_in_mlflow():
    from rap.rap_core.report.svg import composition
    from rap.rap_core.tracking import coverage_metrics
    rows = [{"group": g, "pool_rows": 1, "pool_share": 0.25, "selected_rows": 1,
             "selected_share": 0.5 if i else None, "ratio": 2.0 if i else None}
            for i, g in enumerate(["<script>alert(1)</script>", "../../etc", "yes/no", "a\tb"])]
    html = composition(rows, "<b>key</b>")
    assert "<script>" not in html and "&lt;script&gt;" in html and "<b>key" not in html
    names = set(coverage_metrics(pl.DataFrame(rows)))
    assert names == {"coverage._script_alert_1__/script_.pool_share",
                     "coverage..._.._etc.pool_share", "coverage..._.._etc.selected_share",
                     "coverage..._.._etc.ratio", "coverage.yes/no.pool_share",
                     "coverage.yes/no.selected_share", "coverage.yes/no.ratio",
                     "coverage.a_b.pool_share", "coverage.a_b.selected_share",
                     "coverage.a_b.ratio"}


def test_each_rebalancer_logs_what_it_did_and_then_the_final_state():
    """A row DRM swaps out as too easy can come back under the floor (coverage_added): DRM's
    line says what DRM did, the floor's what the floor did, and a last line the end state."""
    from rap.tasks.estimate import rebalanced
    from rap.rap_core.estimators import Context
    from rap.rap_core.estimators.select import filter_rows
    rows = [row(0, 1.0, 0.0), row(1, 1.0, 0.0), row(2, 0.6, 0.4), row(3, 0.4, 0.2)]
    inputs = _grouped(rows, ["n", "n", "y", "y"])
    th = Thresholds(coverage_floor=1.0)
    filtered = filter_rows(inputs, plan("rap"), th)
    out, lines = rebalanced(filtered, plan("rap"), th, Context())
    final = dict(out.group_by("reason").len().iter_rows())
    assert final["coverage_added"] == 1 and final["drm_replaced_easy"] == 1
    assert lines[0].startswith("drm: drm_replaced_easy 2 ") and \
        "drm_hard_replacement 2 " in lines[0]
    assert lines[1].startswith("coverage: coverage_added 1 ") and \
        "coverage_replaced 1 " in lines[1]
    assert lines[2].startswith("after all of them: drm_replaced_easy 1 ") and \
        "drm_hard_replacement 1 " in lines[2] and "coverage_added 1 " in lines[2]
