"""The trained demo model as the embedded default: it has learned its task, the default run
selects a real subset, and `rap validate` measures the planted priors end to end."""

import pytest

from flows import cli
from rap_core import demo_model as demo
from rap_core.params import DataSpec, RapParams
from rap_core.store import open_store


@pytest.fixture
def default_model(settings, demo_model_dir):
    """The session's demo model where the default run looks for it (no retraining)."""
    target = demo.demo_model_dir(settings.models_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(demo_model_dir, target_is_directory=True)
    return target


def test_the_demo_model_has_learned_to_use_the_image(demo_training):
    settings, path, lines = demo_training
    meta = demo.read_meta(path)
    acc = meta["test_accuracy"]
    assert acc["with_image"] > 0.7 and acc["with_image"] > acc["text_only"] + 0.05
    assert meta["train"]["final_loss"] < 0.5 * meta["train"]["losses"][0]
    assert any("(vision): step" in line for line in lines)
    assert any("(answers): step" in line and "s left" in line for line in lines)
    assert "with the image" in lines[-1]
    import mlflow
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    runs = mlflow.search_runs(experiment_names=["rap-demo-model"], output_format="list")
    assert len(runs) == 1
    assert runs[0].data.metrics["test_accuracy_with_image"] == acc["with_image"]
    assert runs[0].data.metrics["test_accuracy_text_only"] == acc["text_only"]


# the Prefect test server is requested after the model: training first, on idle cores
def test_default_run_selects_a_real_subset(settings, default_model, prefect_harness):
    from flows.rap import run_flow
    summary = run_flow(RapParams(data=DataSpec(limit=150), track=False))
    funnel = summary["funnel"]
    assert 0 < funnel["after_drm"] < funnel["pool_rows"] == 150
    assert 0 < funnel["after_cde"] < 150
    with open_store(settings.duckdb_path, read_only=True) as store:
        path = store.con.execute("SELECT model_path FROM models").fetchall()[0][0]
    assert path == str(default_model)


def test_demo_model_command_shows_the_cached_model(settings, default_model, capsys, monkeypatch):
    monkeypatch.setattr(cli, "configure_process_env", lambda data_dir: None)
    assert cli.main(["demo-model"]) == 0
    out = capsys.readouterr().out
    assert "(cached)" in out and "with the image" in out and str(default_model) in out


def test_validate_reports_auroc_and_the_breakdown(settings, default_model, prefect_harness):
    from flows.validate import validate
    report = validate(settings, n=80, share=0.5, seed=3)
    assert 0.0 <= report["auroc"] <= 1.0 and report["planted"] > 10
    rows = {r["group"]: r for r in report["breakdown"]}
    assert sum(r["rows"] for r in rows.values()) == 80
    assert set(rows) <= {"yes/no", "color", "shape", "planted"} and "planted" in rows
    for r in rows.values():
        assert r["rows"] >= r["after_cde"] >= r["after_ace"]
    text = (settings.data_dir / "validation" / f"report-{report['run_id']}.md").read_text()
    assert "ROC AUC" in text and "| planted |" in text
