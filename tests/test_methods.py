"""Methods and estimators as plug-ins: pass_band and random through the same interface as RAP,
each inferring only the facts it needs, and an estimator added by this module alone."""

import json

import polars as pl
import pytest

import fakes
from conftest import write_png
from rap.rap_core.estimators import METHODS, Context, Filter, Method, plan, register
from rap.rap_core.estimators.base import FILTERS
from rap.rap_core.estimators.select import select_rows
from rap.rap_core.params import DataSpec, ModelSpec, RapParams, RolloutSettings, Thresholds
from rap.rap_core.store import open_store

M = 5


def inputs(accs):
    """Hand-made selection inputs: one image sample per multimodal accuracy."""
    return pl.DataFrame([{
        "source_row": i, "sample_id": f"s{i}", "row_status": "ok", "error_code": None,
        "error_message": None, "n_images": 1, "n_mm": M, "n_text": None,
        "inference_error_stage": None, "inference_error_code": None,
        "inference_error_message": None, "has_attention": False, "acc_mm": acc}
        for i, acc in enumerate(accs)], schema_overrides={
        "error_code": pl.String, "error_message": pl.String, "n_text": pl.Int64,
        "inference_error_stage": pl.String, "inference_error_code": pl.String,
        "inference_error_message": pl.String, "acc_mm": pl.Float64})


def test_pass_band_keeps_the_open_band_and_its_bounds_are_configurable():
    out = select_rows(inputs([0.0, 0.2, 0.6, 1.0, None]), plan("pass_band"), Thresholds())
    assert out["reason"].to_list() == ["pass_band_outside", "passed_pass_band",
                                       "passed_pass_band", "pass_band_outside",
                                       "pass_band_outside"]  # no rollouts: cannot pass
    assert out["passed"].to_list()[1] == ["pass_band"] and out["passed"].to_list()[0] == []
    narrow = select_rows(inputs([0.2, 0.6]), plan("pass_band"),
                         Thresholds(pass_band_low=0.4, pass_band_high=0.8))
    assert narrow["state"].to_list() == ["dropped", "selected"]


def test_random_is_seeded_and_sized_like_another_run():
    frame = inputs([0.5] * 10)
    picks = [select_rows(frame, plan("random"), Thresholds(random_n=3, random_seed=seed))
             for seed in (1, 1, 2)]
    chosen = [set(p.filter(pl.col("state") == "selected")["source_row"]) for p in picks]
    assert len(chosen[0]) == 3 and chosen[0] == chosen[1] != chosen[2]
    asked = []
    sized = select_rows(frame, plan("random"), Thresholds(random_like="R1"),
                        Context(selected_count=lambda run: asked.append(run) or 4))
    assert asked == ["R1"] and (sized["state"] == "selected").sum() == 4
    assert set(sized["reason"]) == {"random_pick", "random_not_picked"}


def test_random_stratified_keeps_each_groups_share():
    from rap.rap_core.estimators.random_subset import quotas
    frame = inputs([0.5] * 20).with_columns(
        group_name=pl.Series(["a"] * 14 + ["b"] * 4 + ["c"] * 2))
    picks = [select_rows(frame, plan("random"), Thresholds(random_n=10, random_stratify=True,
                                                          random_seed=seed)) for seed in (1, 2)]
    sizes = [dict(p.filter(pl.col("state") == "selected").group_by("group_name").len()
                  .iter_rows()) for p in picks]
    assert sizes == [{"a": 7, "b": 2, "c": 1}] * 2
    assert set(picks[0].filter(pl.col("state") == "selected")["source_row"]) != \
        set(picks[1].filter(pl.col("state") == "selected")["source_row"])
    assert quotas({"a": 1, "b": 1, "c": 1}, 2) == {"a": 1, "b": 1, "c": 0}  # ties by name
    assert quotas({"a": 5, "b": 3}, 4) == {"a": 3, "b": 1}  # remainders .5/.5: larger group
    assert quotas({"a": 3}, 10) == {"a": 3} and quotas({}, 3) == {}


@pytest.fixture
def pool(tmp_path):
    folder = tmp_path / "pool"
    lines = []
    for i in range(6):
        write_png(folder / f"{i}.png", (40 * i, 20, 200 - 30 * i))
        lines.append(json.dumps({"problem": f"<image>Which colour is {i}?", "answer": "red",
                                 "images": [f"{i}.png"], "data_source": "ab"[i % 2]}))
    lines.append(json.dumps({"problem": "What is 2 + 2?", "answer": "4", "images": []}))
    (folder / "pool.jsonl").write_text("\n".join(lines) + "\n")
    return DataSpec(path=str(folder / "pool.jsonl"))


OUTCOMES = [fakes.outcome(5, 0), fakes.outcome(3, 0), fakes.outcome(0, 0),
            fakes.outcome(5, 5), fakes.outcome(2, 2, hot=True), fakes.outcome(4, 1),
            fakes.outcome(0, 0)]


def run(**kw):
    from rap.flows.rap import run_flow
    return run_flow(RapParams(rollout=RolloutSettings(m=M, max_new_tokens=8), track=False,
                              **kw))


def facts(settings):
    with open_store(settings.duckdb_path, read_only=True) as store:
        conditions = store.con.sql("SELECT DISTINCT condition FROM rollouts").fetchall()
        attention = store.con.sql("SELECT count(*) FROM attention_stats").fetchall()[0][0]
    return {c for (c,) in conditions}, attention


@pytest.mark.usefixtures("prefect_harness")
def test_each_method_infers_only_the_facts_it_needs(pool, tmp_path, settings, monkeypatch):
    model = ModelSpec(path=fakes.script_pool(pool, tmp_path, OUTCOMES))
    band = run(data=pool, model=model, method="pass_band")
    assert facts(settings) == ({"mm"}, 0)  # no text-only rollouts, no attention pass
    assert band["method"] == "pass_band" and band["samples_inferred"] == 6
    assert band["funnel"]["after_pass_band"] == band["funnel"]["selected"] == 3  # 3, 2, 4 of 5
    rap = run(data=pool, model=model)
    assert facts(settings) == ({"mm", "text"}, 6)  # the rest of RAP's facts, added
    assert rap["samples_inferred"] == 6 and rap["funnel"]["after_drm"] >= 1
    control = run(data=pool, model=model, method="random", mode="retune",
                  base_run=rap["run_id"])
    assert control["funnel"]["selected"] == rap["funnel"]["selected"]
    assert control["samples_inferred"] == 0
    with open_store(settings.duckdb_path, read_only=True) as store:
        steps = store.con.sql("SELECT run_id, step, samples FROM funnel_steps "
                              "ORDER BY run_id, position").pl()
        stored = store.con.sql("SELECT name, value FROM run_thresholds WHERE run_id = $r "
                               "AND name = 'pass_band_high'", params={"r": band["run_id"]})
        assert stored.fetchall() == [("pass_band_high", "1.0")]  # in the run's params
    by_run = {r: g["step"].to_list() for (r,), g in steps.group_by("run_id")}
    assert by_run[band["run_id"]] == ["pool_rows", "after_pass_band"]
    assert by_run[rap["run_id"]] == ["pool_rows", "after_cde", "after_ace", "after_drm"]
    assert by_run[control["run_id"]] == ["pool_rows", "after_random"]
    from rap.flows import cli
    monkeypatch.setattr(cli, "configure_process_env", lambda data_dir: None)
    compare_band_with_rap(settings, band["run_id"], rap["run_id"])


def compare_band_with_rap(settings, band, rap):
    """`rap compare`: the overlap and the crosstab agree with the decisions themselves."""
    from rap.flows import cli
    from rap.rap_core.compare import compare_runs
    with open_store(settings.duckdb_path, read_only=True) as store:
        found = compare_runs(store, band, rap)
        chosen = {run: set(store.con.sql(
            "SELECT source_row FROM decisions WHERE run_id = $r AND state = 'selected'",
            params={"r": run}).pl()["source_row"]) for run in (band, rap)}
    both = chosen[band] & chosen[rap]
    o = found["overlap"]
    assert (o["n_a"], o["n_b"], o["n_both"]) == (len(chosen[band]), len(chosen[rap]), len(both))
    assert o["jaccard"] == pytest.approx(len(both) / len(chosen[band] | chosen[rap]))
    assert found["crosstab"]["n"].sum() == 7  # every row of the pool, once
    groups = found["groups"]
    assert sorted(groups["group"]) == ["(none)", "a", "b"]  # the text-only row has none
    assert groups["selected_a"].sum() == len(chosen[band])
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["compare", band, rap]) == 0
    assert f"Jaccard {o['jaccard']:.3f}" in out.getvalue()
    assert "selected:passed_pass_band" in out.getvalue()


@pytest.fixture
def short_answers():
    """An estimator that lives in this module alone: one rule and one view string."""
    source = ("SELECT sample_id, avg(length(response)) AS mean_len FROM rollouts "
              "WHERE model_key = $model_key AND settings_key = $settings_key "
              "AND condition = 'mm' GROUP BY sample_id")
    register(Filter(name="short", reason="short_answers_long", needs=("mm",), source=source,
                    keep=lambda th: pl.col("mean_len") < 13.0),
             Method("rap_short", ("cde", "short", "ace"), "drm"))
    yield
    METHODS.pop("rap_short")
    FILTERS.pop("short")


@pytest.mark.usefixtures("prefect_harness", "short_answers")
def test_an_estimator_added_by_one_module_shows_everywhere(pool, tmp_path, settings):
    from rap.flows.cli import format_summary
    # 'answer: red' is 11 characters, 'answer: wrong' 13: a mean under 13 needs one right
    model = ModelSpec(path=fakes.script_pool(pool, tmp_path, OUTCOMES))
    summary = run(data=pool, model=model, method="rap_short", all_rollouts=True,
                  thresholds=Thresholds(lambda_c=-1.0, drm_k=0))
    f = summary["funnel"]
    assert list(f)[4:7] == ["after_cde", "after_short", "after_ace"]
    assert f["after_cde"] == 6 and f["after_short"] == 5  # the one never right is dropped
    text = format_summary(summary, settings)
    assert "after SHORT" in text and "short_answers_long" in text
    with open_store(settings.duckdb_path, read_only=True) as store:
        dropped = store.con.sql("SELECT source_row, passed FROM decisions WHERE run_id = $r "
                                "AND reason = 'short_answers_long' ORDER BY source_row",
                                params={"r": summary["run_id"]}).fetchall()
        step = store.con.sql("SELECT samples FROM funnel_steps WHERE run_id = $r AND "
                             "step = 'after_short'", params={"r": summary["run_id"]}).fetchall()
    assert dropped == [(2, ["cde"])] and step == [(5,)]
