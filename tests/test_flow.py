"""The `rap` flow end to end under a real (test) Prefect server, real DuckDB and MLflow.

One test runs the tiny real model on easy-VQA; the others are about the flow itself (reruns,
retunes, errors, exports, tracking), so their samples' outcomes are scripted (fakes.py) and
their funnels are known exactly."""

import json

import mlflow
import polars as pl
import pytest

import fakes
from conftest import write_png
from rap.rap_core.engines import base as engine_mod
from rap.rap_core.params import DataSpec, ModelSpec, RapParams, RolloutSettings, Thresholds
from rap.rap_core.io.readers import read_pool
from rap.rap_core.store import open_store

pytestmark = pytest.mark.usefixtures("prefect_harness")
SMALL = RolloutSettings(m=2, max_new_tokens=8)


def run(**kw):
    from rap.flows.rap import run_flow
    return run_flow(RapParams(**kw))


def count(settings, statement, **params):
    with open_store(settings.duckdb_path, read_only=True) as store:
        return store.con.execute(statement, params).fetchall()[0][0]


def assert_rows_accounted(settings, summary):
    f = summary["funnel"]
    states = count(settings, "SELECT count(DISTINCT state) FROM decisions WHERE run_id = $r",
                   r=summary["run_id"])
    assert states >= 1
    total = sum(r["n"] for r in summary["reasons"])
    assert total == f["pool_rows"]
    by_state = {s: sum(r["n"] for r in summary["reasons"] if r["state"] == s)
                for s in ("selected", "dropped", "error")}
    assert sum(by_state.values()) == f["pool_rows"]
    assert by_state["selected"] == f["after_drm"]
    assert by_state["error"] == f["errors"]


@pytest.fixture
def tiny(tiny_model_dir):
    return ModelSpec(path=str(tiny_model_dir))


# six easy-VQA rows at M = 2: D = 1, 0.5, 0, 1, 0.5, 0; the fourth over-trusts its attention.
# CDE keeps rows 0 and 3, ACE drops 3, DRM swaps row 0 (always right) for row 1 or 4.
SIX = [fakes.outcome(2, 0), fakes.outcome(1, 0), fakes.outcome(2, 2),
       fakes.outcome(2, 0, hot=True), fakes.outcome(1, 0), fakes.outcome(0, 0)]
SIX_FUNNEL = {"pool_rows": 6, "after_cde": 2, "after_ace": 1, "after_drm": 1}


def scripted_easy_vqa(tmp_path, outcomes) -> ModelSpec:
    """A FakeEngine scripted for the first len(outcomes) easy-VQA rows."""
    spec = DataSpec(limit=len(outcomes))
    return ModelSpec(path=fakes.script_pool(spec, tmp_path, outcomes))


def assert_funnel(summary, expected: dict) -> None:
    assert {k: summary["funnel"][k] for k in expected} == expected


def test_select_end_to_end_on_easy_vqa(settings, tiny):
    summary = run(data=DataSpec(limit=20), model=tiny, rollout=SMALL, shard_size=8)
    assert summary["samples_inferred"] == 20 and summary["samples_stored"] == 0
    assert summary["funnel"]["pool_rows"] == 20
    assert_rows_accounted(settings, summary)
    # random weights: no multimodal answer is right, so no text-only rollout can change a
    # decision and none is run
    assert count(settings, "SELECT count(*) FROM rollouts WHERE condition = 'mm'") == 20 * SMALL.m
    assert count(settings, "SELECT count(*) FROM rollouts WHERE condition = 'text'") == 0
    assert summary["inference_phases"]["text-only"]["skipped_samples"] == 20
    assert count(settings, "SELECT count(*) FROM attention_stats") == 20
    assert count(settings, "SELECT count(*) FROM ace_scores WHERE run_id = $r",
                 r=summary["run_id"]) == 20
    exported = pl.read_parquet(summary["export_path"])
    assert exported.height == summary["funnel"]["after_drm"]
    assert exported.columns[:3] == ["problem", "answer", "images"]
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    logged = client.get_run(summary["mlflow_run_id"])
    assert logged.data.params["thresholds.lambda_c"] == "0.5"
    assert logged.data.metrics["funnel.pool_rows"] == 20
    assert logged.data.metrics["inference.text_only.skipped_samples"] == 20
    assert logged.data.metrics["inference.multimodal.generated_tokens"] > 0
    assert logged.data.tags["pool_id"] == summary["pool_id"]
    names = {a.path for a in client.list_artifacts(summary["mlflow_run_id"], "selection")}
    assert {"selection/hist_d.png", "selection/hist_psi.png", "selection/hist_acc_mm.png",
            "selection/decisions.csv", "selection/selected_ids.csv"} <= names


def test_settled_samples_get_no_text_only_rollouts_and_decide_the_same(settings, tmp_path,
                                                                       monkeypatch, capsys):
    """SIX's last sample has no right multimodal answer: its text-only rollouts are skipped,
    the decisions equal those with all rollouts, a retune with lambda_c < 0 says it lacks
    facts, and `rap select --all-rollouts` then infers just those rollouts."""
    from rap.flows import cli
    monkeypatch.setattr(cli, "configure_process_env", lambda data_dir: None)
    six = scripted_easy_vqa(tmp_path, SIX)
    lean = run(data=DataSpec(limit=6), model=six, rollout=SMALL, track=False, export=False)
    assert_funnel(lean, SIX_FUNNEL)
    assert lean["inference_phases"]["text-only"]["skipped_samples"] == 1
    assert count(settings, "SELECT count(*) FROM rollouts WHERE condition = 'text'") == 5 * 2
    tokens = {p: f["generated_tokens"] for p, f in lean["inference_phases"].items()}
    assert tokens["multimodal"] == 6 * 2 * 6 and tokens["text-only"] == 5 * 2 * 6
    assert "text-only rollouts skipped for 1 samples" in cli.format_summary(lean, settings)
    negative = run(mode="retune", thresholds=Thresholds(lambda_c=-1.0), track=False,
                   export=False)
    errors = [r for r in negative["reasons"] if r["state"] == "error"]
    assert errors == [{"state": "error", "stage": "cde", "reason": "missing_facts",
                       "readmitted_from": None, "n": 1}]
    detail = count(settings, "SELECT detail FROM decisions WHERE run_id = $r AND state = "
                   "'error'", r=negative["run_id"])
    assert "--all-rollouts" in detail
    assert cli.main(["select", "--data", "builtin:easy-vqa", "--limit", "6", "--model",
                     six.path, "--m", "2", "--max-new-tokens", "8", "--all-rollouts",
                     "--no-track", "--no-export"]) == 0
    assert "samples inferred 1 " in capsys.readouterr().out
    full = run(mode="retune", track=False, export=False)  # the latest: all rollouts stored
    decided = ("SELECT sample_id, state, stage, reason FROM decisions WHERE run_id = $r "
               "ORDER BY sample_id")
    with open_store(settings.duckdb_path, read_only=True) as store:
        assert store.con.execute(decided, {"r": lean["run_id"]}).fetchall() == \
            store.con.execute(decided, {"r": full["run_id"]}).fetchall()
    again = run(mode="retune", thresholds=Thresholds(lambda_c=-1.0), track=False,
                export=False)
    assert not [r for r in again["reasons"] if r["state"] == "error"]


def test_a_select_plans_the_rollouts_its_thresholds_need(settings, tmp_path, monkeypatch):
    """At lambda_c < 0 CDE cannot drop a never-right sample without its text-only rollouts:
    a select runs them (no missing facts) and decides as one with --all-rollouts does."""
    six = scripted_easy_vqa(tmp_path, SIX)
    negative = Thresholds(lambda_c=-1.0)
    planned = run(data=DataSpec(limit=6), model=six, rollout=SMALL, thresholds=negative,
                  track=False, export=False)
    assert not [r for r in planned["reasons"] if r["reason"] == "missing_facts"]
    assert "skipped_samples" not in planned["inference_phases"]["text-only"]
    assert count(settings, "SELECT count(*) FROM rollouts WHERE condition = 'text'") == 6 * 2
    decided = ("SELECT sample_id, state, stage, reason FROM decisions WHERE run_id = $r "
               "ORDER BY sample_id")
    with open_store(settings.duckdb_path, read_only=True) as store:
        lean = store.con.execute(decided, {"r": planned["run_id"]}).fetchall()
    monkeypatch.setenv("RAP_DATA_DIR", str(tmp_path / "all_rollouts"))
    from rap.rap_core.settings import Settings
    full = run(data=DataSpec(limit=6), model=six, rollout=SMALL, thresholds=negative,
               all_rollouts=True, track=False, export=False)
    with open_store(Settings.from_env().duckdb_path, read_only=True) as store:
        assert store.con.execute(decided, {"r": full["run_id"]}).fetchall() == lean


def test_a_bad_input_fails_the_flow_run_with_its_one_line(settings, caplog):
    """As a deployment run meets it: the run's state says why, the log has no traceback."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import FailedRun
    with pytest.raises(FailedRun, match="^pool not found: /nonexistent.jsonl$"):
        run(data=DataSpec(path="/nonexistent.jsonl"), track=False)
    assert "rap: error: pool not found: /nonexistent.jsonl" in caplog.text
    assert "Traceback" not in caplog.text
    with get_client(sync_client=True) as client:
        failed = [r for r in client.read_flow_runs() if r.state and r.state.is_failed()]
    assert any(r.state.message == "pool not found: /nonexistent.jsonl" for r in failed)


def test_rerun_infers_nothing_and_never_loads_the_model(settings, tmp_path):
    six = scripted_easy_vqa(tmp_path, SIX)
    first = run(data=DataSpec(limit=6), model=six, rollout=SMALL, track=False)
    assert first["samples_inferred"] == 6
    assert_funnel(first, SIX_FUNNEL)
    engine_mod.load_engine.cache_clear()
    loads = len(fakes.LOADS)
    second = run(data=DataSpec(limit=6), model=six, rollout=SMALL, track=False)
    assert len(fakes.LOADS) == loads, "the model was loaded on a rerun"
    assert second["samples_inferred"] == 0 and second["samples_stored"] == 6
    assert second["funnel"] == {**first["funnel"], "run_id": second["run_id"]}
    # a new rollout setting is a new key: only then is inference needed again
    third = run(data=DataSpec(limit=6), model=six, rollout=SMALL.model_copy(update={"seed": 9}),
                track=False)
    assert len(fakes.LOADS) == loads + 1 and third["samples_inferred"] == 6


def test_retune_reselects_from_stored_facts_only(settings, tmp_path):
    # all rollouts: the retune below (lambda_c < 0) needs D of the never-right sample too
    first = run(data=DataSpec(limit=6), model=scripted_easy_vqa(tmp_path, SIX), rollout=SMALL,
                track=False, all_rollouts=True)
    assert_funnel(first, SIX_FUNNEL)
    engine_mod.load_engine.cache_clear()
    loads = len(fakes.LOADS)
    retuned = run(mode="retune", thresholds=Thresholds(lambda_c=-1.0, lambda_a=1e6))
    assert len(fakes.LOADS) == loads, "the model was loaded by a retune"
    assert retuned["samples_inferred"] == 0
    assert retuned["funnel"]["after_cde"] == 6 and retuned["funnel"]["after_drm"] == 6
    with open_store(settings.duckdb_path, read_only=True) as store:
        runs = store.query("queries/run_by_id", run_id=retuned["run_id"]).to_dicts()[0]
        assert runs["base_run"] == first["run_id"] and runs["lambda_c"] == -1.0
        per_run = store.con.sql("SELECT run_id, count(*) FROM decisions GROUP BY ALL").fetchall()
    assert dict(per_run) == {first["run_id"]: 6, retuned["run_id"]: 6}


def test_bad_rows_and_oversized_prompts_end_as_errors(settings, tmp_path):
    img = write_png(tmp_path / "pool" / "a.png")
    write_png(tmp_path / "pool" / "b.png", (0, 200, 0))
    rows = [{"problem": "<image>What color?", "answer": "red", "images": ["a.png"]},
            {"problem": "<image>Shape?", "answer": "square", "images": ["b.png"]},
            {"problem": "<image>What color?", "answer": "red", "images": ["gone.png"]},
            {"problem": "", "answer": "red", "images": ["a.png"]},
            {"problem": "<image><image>", "answer": "red", "images": ["a.png"]},
            {"problem": "<image>What color?", "answer": "red", "images": [str(img)]},
            {"problem": "Just text", "answer": "4", "images": []}]
    path = tmp_path / "pool" / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # the two image samples, and the text-only one; a context of 512 tokens for each
    model = ModelSpec(path=fakes.script_pool(
        DataSpec(path=str(path)), tmp_path, [fakes.outcome(2, 0, context=512)] * 3))
    summary = run(data=DataSpec(path=str(path)), model=model, rollout=SMALL, track=False)
    assert_rows_accounted(settings, summary)
    reasons = {(r["state"], r["reason"]): r["n"] for r in summary["reasons"]}
    assert reasons == {("error", "image_missing"): 1, ("error", "empty_question"): 1,
                       ("error", "placeholder_mismatch"): 1, ("dropped", "duplicate_row"): 1,
                       ("dropped", "cde_no_image"): 1, ("selected", "passed_cde_ace"): 2}
    long = run(data=DataSpec(path=str(path)), model=model, track=False,
               rollout=RolloutSettings(m=1, max_new_tokens=5000))
    assert_rows_accounted(settings, long)
    assert {(r["state"], r["stage"], r["reason"]): r["n"] for r in long["reasons"]}[
        ("error", "multimodal", "prompt_too_long")] == 2  # the first phase refuses them
    assert count(settings, "SELECT count(*) FROM errors WHERE error_code = 'prompt_too_long'") == 2


def test_artifacts_failing_to_write_do_not_fail_the_run(settings, tmp_path, monkeypatch):
    def down(*args, **kwargs):
        raise RuntimeError("API unreachable")
    for name in ("create_progress_artifact", "create_markdown_artifact"):
        monkeypatch.setattr(f"rap.flows.rap.{name}", down)
    summary = run(data=DataSpec(limit=6), model=scripted_easy_vqa(tmp_path, SIX),
                  rollout=SMALL, track=False)
    assert summary["samples_inferred"] == 6
    assert_funnel(summary, SIX_FUNNEL)
    assert count(settings, "SELECT count(*) FROM decisions") == 6


@pytest.fixture
def scripted(tmp_path):
    """A pool of 7 samples whose rollouts and attention are scripted by a FakeEngine."""
    script = [  # mm_correct, text_correct, over-trusted attention?, error
        (5, 0, False, None), (4, 0, False, None), (5, 0, True, None), (1, 0, False, None),
        (3, 3, False, None), (0, 0, False, "prompt_too_long"), (5, 5, False, None)]
    rows = []
    for i in range(len(script)):
        write_png(tmp_path / f"{i}.png", (30 * i, 10, 10))
        rows.append({"problem": f"<image>q{i}", "answer": f"a{i}", "images": [f"{i}.png"]})
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ids = read_pool(DataSpec(path=str(path)), tmp_path / "c").samples["sample_id"].to_list()
    plan = {sid: {"answer": f"a{i}", "mm_correct": mm, "text_correct": text, "error": err,
                  "col_log_sums": [-0.1 if hot else -20.0] * 6}
            for i, (sid, (mm, text, hot, err)) in enumerate(zip(ids, script))}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    return str(path), fakes.install(tmp_path / "plan.json"), ids


def test_cde_ace_drm_decisions_through_the_flow(settings, scripted):
    path, model_path, ids = scripted
    summary = run(data=DataSpec(path=path), model=ModelSpec(path=model_path), track=False)
    assert summary["funnel"]["after_cde"] == 3 and summary["funnel"]["after_ace"] == 2
    with open_store(settings.duckdb_path, read_only=True) as store:
        got = {r["source_row"]: (r["state"], r["reason"]) for r in store.query(
            "queries/decisions_of_run", run_id=summary["run_id"]).iter_rows(named=True)}
    assert got == {0: ("dropped", "drm_replaced_easy"), 1: ("selected", "passed_cde_ace"),
                   2: ("dropped", "ace_attention_bias"), 3: ("selected", "drm_hard_replacement"),
                   4: ("dropped", "cde_language_prior"), 5: ("error", "prompt_too_long"),
                   6: ("dropped", "cde_language_prior")}
    retuned = run(mode="retune", thresholds=Thresholds(lambda_a=100.0), track=False)
    assert retuned["funnel"]["after_ace"] == 3 and retuned["funnel"]["after_drm"] == 3


def test_cli_retune_without_a_previous_run_is_refused(settings, capsys, monkeypatch):
    # kept with the flow tests: Prefect's console handler must not bind to capsys's stream
    from rap.flows import cli
    monkeypatch.setattr(cli, "configure_process_env", lambda data_dir: None)
    with open_store(settings.duckdb_path):
        pass
    assert cli.main(["retune"]) == 2
    assert "no selection run to retune" in capsys.readouterr().err


def test_rap_export_writes_checks_and_logs_each_format(settings, tmp_path, monkeypatch):
    from rap.flows import cli
    monkeypatch.setattr(cli, "configure_process_env", lambda data_dir: None)
    summary = run(data=DataSpec(limit=6), model=scripted_easy_vqa(tmp_path, SIX), rollout=SMALL)
    assert_funnel(summary, SIX_FUNNEL)
    selected = summary["funnel"]["after_drm"]
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    mlflow_id = summary["mlflow_run_id"]
    logged = {a.path for a in client.list_artifacts(mlflow_id, "exports")}
    assert "exports/easyr1.parquet.manifest.json" in logged  # the flow's own export
    for fmt, name in [("verl", "sel.parquet"), ("openrlhf", "sel.jsonl"), ("hf", "sel")]:
        out = tmp_path / fmt / name
        assert cli.main(["export", "--format", fmt, "--out", str(out)]) == 0
        assert cli.main(["export", "--check", str(out), "--format", fmt]) == 0
        manifest = json.loads((out.parent / f"{name}.manifest.json").read_text())
        assert manifest["rows"] == selected and manifest["selection_run"] == summary["run_id"]
        logged = {a.path for a in client.list_artifacts(mlflow_id, "exports")}
        assert f"exports/{name}.manifest.json" in logged
        assert client.get_run(mlflow_id).data.tags[f"export.{fmt}"] == str(out.resolve())
    assert cli.main(["export", "--check", str(tmp_path / "verl" / "sel.parquet"),
                     "--format", "easyr1"]) == 1
    assert cli.main(["export", "--run", "nope", "--format", "verl"]) == 2


def test_retune_changes_only_what_is_given_and_records_what_it_used(settings, tmp_path,
                                                                     monkeypatch, capsys):
    """Thresholds not given are the base run's (CLI and flow parameters alike); the run's
    record and its MLflow parameters show the base run's pool, model and rollouts."""
    from rap.flows import cli
    from rap.flows.rap import run_flow
    from rap.rap_core.params import params_from_flat
    monkeypatch.setattr(cli, "configure_process_env", lambda data_dir: None)
    six = scripted_easy_vqa(tmp_path, SIX)
    base = run(data=DataSpec(limit=6), model=six, rollout=SMALL, track=False, export=False,
               thresholds=Thresholds(lambda_a=1e-5, drm_pool="cde_rejected", sigma=3.0))
    # tracked although the base run was not (a retune inherits --no-track unless told)
    assert cli.main(["retune", "--lambda-c", "0.3", "--no-export", "--track"]) == 0
    assert "lambda_c=0.3 sigma=3.0 lambda_a=1e-05" in capsys.readouterr().out
    by_flow = run_flow(params_from_flat({"mode": "retune", "run": base["run_id"],
                                         "sigma": 2.5, "lambda_c": None, "track": False}))
    with open_store(settings.duckdb_path, read_only=True) as store:
        runs = {r.run_id: r for r in (store.selection_run(i, "test") for i in
                                      (base["run_id"], by_flow["run_id"]))}
        latest_cli = store.con.sql("SELECT run_id FROM selection_runs WHERE mode = 'retune' "
                                   "ORDER BY created_at LIMIT 1").fetchall()[0][0]
        runs[latest_cli] = store.selection_run(latest_cli, "test")
    th_cli = runs[latest_cli].parameters["thresholds"]
    assert (th_cli["lambda_c"], th_cli["lambda_a"], th_cli["sigma"], th_cli["drm_pool"]) == (
        0.3, 1e-5, 3.0, "cde_rejected")
    th_flow = runs[by_flow["run_id"]].parameters["thresholds"]
    assert (th_flow["lambda_c"], th_flow["lambda_a"], th_flow["sigma"]) == (0.5, 1e-5, 2.5)
    for retune in (runs[latest_cli], runs[by_flow["run_id"]]):
        used = retune.parameters
        assert used["data"]["limit"] == 6 and used["model"]["path"] == six.path
        assert used["rollout"]["m"] == 2 and used["rollout"]["max_new_tokens"] == 8
    logged = mlflow.MlflowClient(settings.mlflow_tracking_uri).get_run(
        runs[latest_cli].mlflow_run_id).data
    assert logged.params["thresholds.lambda_a"] == "1e-05"
    assert logged.params["data.limit"] == "6" and logged.params["model.path"] == six.path
    assert logged.params["rollout.m"] == "2"


def test_mlflow_unreachable_costs_nothing_and_rap_track_logs_later(settings, tmp_path,
                                                                  monkeypatch, capsys):
    from rap.flows import cli
    monkeypatch.setattr(cli, "configure_process_env", lambda data_dir: None)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "file").write_text("")  # a file where MLflow needs a folder
    monkeypatch.setenv("RAP_MLFLOW_TRACKING_URI", f"sqlite:///{settings.data_dir}/file/m.db")
    summary = run(data=DataSpec(limit=6), model=scripted_easy_vqa(tmp_path, SIX), rollout=SMALL)
    assert_funnel(summary, SIX_FUNNEL)
    assert summary["tracking_failed"] and summary["mlflow_run_id"] is None
    assert count(settings, "SELECT count(*) FROM decisions") == 6
    assert count(settings, "SELECT count(*) FROM selection_runs WHERE export_path IS NOT NULL "
                 "AND mlflow_run_id IS NULL") == 1
    monkeypatch.delenv("RAP_MLFLOW_TRACKING_URI")
    assert cli.main(["track", "--run", summary["run_id"]]) == 0
    assert f"run {summary['run_id']} logged to MLflow as" in capsys.readouterr().out
    mlflow_id = count(settings, "SELECT mlflow_run_id FROM selection_runs")
    logged = mlflow.MlflowClient(settings.mlflow_tracking_uri).get_run(mlflow_id)
    assert logged.data.tags["run_id"] == summary["run_id"]
    assert logged.data.metrics["funnel.pool_rows"] == 6
    assert logged.data.metrics["funnel.after_drm"] == 1
    assert cli.main(["track"]) == 2  # already tracked: refused without --force
    assert "already in MLflow" in capsys.readouterr().err
