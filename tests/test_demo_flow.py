"""The demo model as the embedded default: the shipped weights are the current recipe's and
have learned their task, builtin:easy-vqa-vlm resolves to them (or to a model retrained in the
data folder), the default run selects a real subset, and `rap validate` measures the planted
priors end to end. The training path itself runs here on a small recipe."""

import hashlib
import json
import shutil
from dataclasses import asdict

import pytest

from rap.flows import cli
from rap.rap_core.demo import model as demo
from rap.rap_core.demo.recipe import SHIPPED_DIR, file_hashes, locate_demo_model, shipped_problem
from rap.rap_core.params import DataSpec, ModelSpec, RapParams
from rap.rap_core.store import open_store

# minutes of training cut to seconds: small model, few steps, few test questions
SMALL = demo.Recipe(vision_steps=60, steps=60, batch_size=16, hidden_size=64, layers=1,
                    vision_depth=1, vision_lr=1e-2, lr=3e-3)


def _listing(folder):
    return {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.iterdir())}


def test_the_shipped_demo_model_is_the_current_recipes():
    """Fails when the recipe changed and the shipped files were not regenerated."""
    problem = shipped_problem()
    assert problem is None, problem


def test_the_shipped_demo_model_has_learned_to_use_the_image(demo_model_dir):
    from rap.rap_core.engines.hf_loading import load_model_and_processor
    meta = demo.read_meta(demo_model_dir)
    assert meta["recipe"] == asdict(demo.Recipe()) and meta["version"] == demo.DEMO_MODEL_VERSION
    acc = meta["test_accuracy"]
    assert acc["with_image"] > 0.7 and acc["with_image"] > acc["text_only"] + 0.05
    assert meta["train"]["final_loss"] < 0.5 * meta["train"]["losses"][0]
    # measured again on the shipped files, on other test questions than the recorded ones
    model, processor = load_model_and_processor(demo_model_dir, "cpu", "float32")
    again = demo.evaluate_on_test_split(model, processor, n=200, seed=1)
    assert again["with_image"] > 0.7 and again["with_image"] > again["text_only"] + 0.05, again


def test_shipped_files_are_complete_small_and_checked(demo_model_dir, tmp_path):
    from rap.rap_core.engines.checkpoints import upgrade_rap_folder, write_stock_processor_files
    copy = tmp_path / demo_model_dir.name
    shutil.copytree(demo_model_dir, copy)
    assert write_stock_processor_files(copy) == []  # nothing for rap to add when loading
    (copy / "video_preprocessor_config.json").unlink()
    assert upgrade_rap_folder(copy) == [] and not (copy / "video_preprocessor_config.json").exists()
    shutil.copy2(demo_model_dir / "video_preprocessor_config.json", copy)
    assert sum(p.stat().st_size for p in copy.iterdir()) < 20e6
    assert shipped_problem(folder=copy) is None
    other = demo.Recipe(steps=651)
    assert "trained by another recipe" in shipped_problem(other, folder=copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert "model.safetensors" in shipped_problem(folder=copy)
    (copy / "extra.bin").write_bytes(b"x")
    assert "extra.bin" in shipped_problem(folder=copy)
    assert "missing" in shipped_problem(folder=tmp_path / "none")
    recorded = json.loads((demo_model_dir / demo.META_FILE).read_text())["shipped"]["files"]
    assert recorded == file_hashes(demo_model_dir) and "model.safetensors" in recorded


def test_builtin_resolves_to_the_shipped_folder_unless_one_was_retrained(settings):
    from rap.rap_core.errors import ModelLoadError
    from rap.rap_core.models import resolve_model
    lines: list[str] = []
    resolved = resolve_model(ModelSpec(), settings, lines.append)
    assert resolved.path == str(SHIPPED_DIR) and lines == []
    assert not settings.models_dir.exists()  # nothing trained, nothing copied
    # `rap demo-model --retrain` leaves a folder trained by the recipe in the data folder
    own = demo.demo_model_dir(settings.models_dir)
    shutil.copytree(SHIPPED_DIR, own)
    again = resolve_model(ModelSpec(), settings, lines.append)
    assert again.path == str(own) and again.model_key == resolved.model_key  # same weights
    assert "not the weights shipped with rap" in lines[-1] and str(own) in lines[-1]
    # shipped files of another recipe are refused, and resolving never trains
    with pytest.raises(ModelLoadError, match=r"another recipe.*python -m rap.rap_core.demo.model"
                                             r".*rap demo-model --retrain"):
        locate_demo_model(settings.models_dir, SMALL)


def test_training_by_a_recipe_the_shipped_files_do_not_match(settings):
    """What `rap demo-model` does when the shipped files are not the recipe's (and what a
    first use did before the weights were shipped): train by the recipe into the data folder
    with progress lines, learn, record it in MLflow, use it from then on."""
    lines: list[str] = []
    path, trained = demo.obtain_demo_model(settings, lines.append, recipe=SMALL, evaluate_on=32)
    assert path == demo.demo_model_dir(settings.models_dir, SMALL) and trained is not None
    assert "trained by another recipe" in lines[0]
    assert "python -m rap.rap_core.demo.model" in lines[0]
    assert any("(vision): step" in line for line in lines)
    assert any("(answers): step" in line and "s left" in line for line in lines)
    assert "with the image" in lines[-1] and "rap uses this folder from now on" in lines[-1]
    meta = demo.read_meta(path)
    assert meta["recipe"] == asdict(SMALL) and meta["train"]["steps"] == 60
    assert meta["train"]["final_loss"] < 0.5 * meta["train"]["losses"][0], meta["train"]
    vision = [float(line.split("loss ")[1].split(",")[0]) for line in lines
              if "(vision): step" in line]
    assert vision[-1] < 0.8 * vision[0], vision  # colour and shape, from chance
    import mlflow
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    runs = mlflow.search_runs(experiment_names=["rap-demo-model"], output_format="list")
    assert len(runs) == 1
    acc = meta["test_accuracy"]
    assert runs[0].data.metrics["test_accuracy_with_image"] == acc["with_image"]
    assert runs[0].data.metrics["test_accuracy_text_only"] == acc["text_only"]
    assert demo.obtain_demo_model(settings, lines.append, recipe=SMALL) == (path, None)


# the Prefect test server is requested after the model tests
def test_default_run_selects_a_real_subset(settings, demo_model_dir, prefect_harness):
    from rap.flows.rap import run_flow
    before = _listing(demo_model_dir)
    summary = run_flow(RapParams(data=DataSpec(limit=150), track=False))
    funnel = summary["funnel"]
    assert 0 < funnel["after_drm"] < funnel["pool_rows"] == 150
    assert 0 < funnel["after_cde"] < 150
    with open_store(settings.duckdb_path, read_only=True) as store:
        path = store.con.execute("SELECT model_path FROM models").fetchall()[0][0]
    assert path == str(demo_model_dir)
    assert _listing(demo_model_dir) == before  # read, never written


def test_demo_model_command_shows_the_shipped_model(settings, demo_model_dir, capsys,
                                                    monkeypatch):
    monkeypatch.setattr(cli, "configure_process_env", lambda data_dir: None)
    assert cli.main(["demo-model"]) == 0
    out = capsys.readouterr().out
    assert "(shipped with rap)" in out and "with the image" in out and str(demo_model_dir) in out


def test_validate_reports_auroc_and_the_breakdown(settings, demo_model_dir, prefect_harness):
    from rap.flows.validate import validate
    report = validate(settings, n=80, share=0.5, seed=3)
    assert 0.0 <= report["auroc"] <= 1.0 and report["planted"] > 10
    rows = {r["group"]: r for r in report["breakdown"]}
    assert sum(r["rows"] for r in rows.values()) == 80
    assert set(rows) <= {"yes/no", "color", "shape", "planted"} and "planted" in rows
    for r in rows.values():
        assert r["rows"] >= r["after_cde"] >= r["after_ace"]
    text = (settings.data_dir / "validation" / f"report-{report['run_id']}.md").read_text()
    assert "ROC AUC" in text and "| planted |" in text
