"""The report page of a run (rap_core/report), written by the flow and by `rap report`, and
checked in a real headless Chromium (tests/browser.py): cards per reason, images, the filter,
no console error; and MLflow's UI on a real `mlflow ui` process showing the run and its page."""

import json
import os
import re
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pytest

import fakes
from browser import Browser, chromium_path, not_blank
from conftest import write_png
from rap.rap_core.errors import OutputError
from rap.rap_core.params import DataSpec, ModelSpec, RapParams, RolloutSettings
from rap.rap_core.report import write_report
from rap.rap_core.store import StoreError
from servers import free_port, stop

pytestmark = pytest.mark.usefixtures("prefect_harness")
SMALL = RolloutSettings(m=2, max_new_tokens=8)
# eight rows: two selected by CDE + ACE, one over-trusted (ACE drops it), one DRM swap, the
# rest language priors
OUTCOMES = [fakes.outcome(2, 0), fakes.outcome(1, 0), fakes.outcome(2, 2),
            fakes.outcome(2, 0, hot=True), fakes.outcome(1, 0), fakes.outcome(0, 0),
            fakes.outcome(2, 0), fakes.outcome(2, 1)]


def run(**kw):
    from rap.flows.rap import run_flow
    return run_flow(RapParams(rollout=SMALL, **kw))


def pool_of_pngs(folder: Path, n: int) -> DataSpec:
    """A JSONL pool of n rows whose images are files of our own (so one can go missing)."""
    rows = []
    for i in range(n):
        image = write_png(folder / "img" / f"{i}.png", color=(30 * i % 255, 90, 200 - 20 * i))
        rows.append({"problem": f"what colour is picture {i}?", "answer": f"c{i}",
                     "images": [str(image)]})
    (folder / "pool.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return DataSpec(path=str(folder / "pool.jsonl"))


@pytest.fixture(scope="module")
def selected(prefect_harness, tmp_path_factory):
    """One scripted run for the module's tests (a flow run costs seconds): (summary, data,
    model), with RAP_DATA_DIR pointing at its data folder while the module runs."""
    folder = tmp_path_factory.mktemp("report")
    saved = os.environ.get("RAP_DATA_DIR")
    os.environ["RAP_DATA_DIR"] = str(folder / "rap_data")
    os.environ.pop("RAP_MLFLOW_TRACKING_URI", None)
    try:
        data = pool_of_pngs(folder, len(OUTCOMES))
        model = ModelSpec(path=fakes.script_pool(data, folder, OUTCOMES))
        yield run(data=data, model=model), data, model
    finally:
        if saved is None:
            os.environ.pop("RAP_DATA_DIR", None)
        else:
            os.environ["RAP_DATA_DIR"] = saved


@pytest.fixture
def settings(selected):
    """The module run's settings (not conftest's fresh data folder)."""
    from rap.rap_core.settings import Settings
    return Settings.from_env()


def cards_of(html: str) -> dict[str, int]:
    """Cards per section, read back from the page."""
    sections = re.findall(r'<section class="group" data-group="([^"]*)">(.*?)</section>', html,
                          flags=re.S)
    return {name: body.count('<article class="card"') for name, body in sections}


def test_every_run_writes_its_report_page_and_attaches_it(settings, selected):
    summary, _, _ = selected
    path = Path(summary["report_path"])
    assert path == settings.data_dir / "reports" / f"{summary['run_id']}.html"
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # like any other output, not 0600
    html = path.read_text()
    assert '<meta name="generator" content="rap report">' in html
    assert "http://" not in html and "https://" not in html  # fetches nothing
    per_group = {f"{r['state']} · {r['stage']} · {r['reason']}": r["n"]
                 for r in summary["reasons"] if not r.get("readmitted_from")}
    found = cards_of(html)
    assert sum(found.values()) == len(OUTCOMES)  # 8 per reason by default: every row here
    for name, n in per_group.items():
        assert found[name] == n
    assert html.count("data:image/jpeg;base64,") == len(OUTCOMES)
    assert "λc = 0.5" in html  # the threshold drawn on D's distribution
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    names = [a.path for a in client.list_artifacts(summary["mlflow_run_id"], "report")]
    assert names == [f"report/{summary['run_id']}.html"]
    experiment = client.get_experiment(client.get_run(summary["mlflow_run_id"]).info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # not GenAI
    # the Prefect run is named and tagged after what it made
    from prefect.client.orchestration import get_client
    with get_client(sync_client=True) as prefect:
        flow_run = next(r for r in prefect.read_flow_runs()
                        if f"run:{summary['run_id']}" in r.tags)
    assert flow_run.name == f"select rap 8->2 {summary['run_id']}"
    assert {"rap", "method:rap", "mode:select", "engine:transformers"} <= set(flow_run.tags)


def test_a_page_that_cannot_be_written_costs_the_run_nothing(data_dir, tmp_path, caplog):
    from rap.rap_core.settings import Settings
    settings = Settings.from_env()  # a data folder of its own
    data = pool_of_pngs(tmp_path, len(OUTCOMES))
    model = ModelSpec(path=fakes.script_pool(data, tmp_path, OUTCOMES))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.reports_dir.write_text("not a folder")  # the page's folder cannot be made
    summary = run(data=data, model=model, export=False)
    assert summary["report_path"] is None and summary["mlflow_run_id"]
    assert summary["funnel"]["pool_rows"] == len(OUTCOMES)
    assert f"`rap report --run {summary['run_id']}` writes it later" in caplog.text
    assert settings.reports_dir.read_text() == "not a folder"


def test_cards_are_sampled_per_reason_and_a_moved_image_shows_its_path(settings, selected,
                                                                       tmp_path, capsys):
    summary, data, _ = selected
    image = Path(data.path).parent / "img" / "0.png"
    moved = tmp_path / "0.png"
    image.rename(moved)
    try:
        check_sampled_cards(settings, summary, tmp_path, capsys, image)
    finally:
        moved.rename(image)


def check_sampled_cards(settings, summary, tmp_path, capsys, image):
    from rap.flows import cli
    out = tmp_path / "one.html"
    assert cli.main(["report", "--run", summary["run_id"], "--per-reason", "1",
                     "--out", str(out)]) == 0
    assert f"report of run {summary['run_id']}: {out}" in capsys.readouterr().out
    html = out.read_text()
    assert set(cards_of(html).values()) == {1}
    again = write_report(settings, summary["run_id"], tmp_path / "all.html", per_reason=8)
    page = Path(again["path"]).read_text()
    assert f"image not readable:<br>{image}" in page
    assert page.count("data:image/jpeg;base64,") == len(OUTCOMES) - 1
    # the same seed draws the same cards, another seed others
    assert write_report(settings, summary["run_id"], out, per_reason=1, force=True)["cards"] == \
        len(cards_of(html))
    assert out.read_text() == html


def test_bad_input_costs_nothing(settings, selected, tmp_path):
    with pytest.raises(StoreError, match="no selection run 'nope' to report"):
        write_report(settings, "nope")
    theirs = tmp_path / "theirs.html"
    theirs.write_text("mine")
    with pytest.raises(OutputError, match="not a rap report"):
        write_report(settings, out=theirs)
    assert theirs.read_text() == "mine"
    with pytest.raises(OutputError, match="inside rap's own"):
        write_report(settings, out=settings.duckdb_path)


def test_compare_writes_both_runs_side_by_side(settings, selected, tmp_path):
    summary, data, model = selected
    other = run(mode="retune", lambda_c=-1.0, track=False, export=False)
    out = tmp_path / "compare.html"
    from rap.flows import cli
    assert cli.main(["compare", summary["run_id"], other["run_id"], "--report", str(out)]) == 0
    groups = cards_of(out.read_text())
    assert set(groups) <= {f"selected by {summary['run_id']} (rap) only",
                           f"selected by {other['run_id']} (rap) only", "selected by both"}
    assert sum(groups.values()) > 0


# CI (.ci/run) installs chromium and sets RAP_REQUIRE_BROWSER: there a missing browser fails
BROWSER = pytest.mark.skipif(chromium_path() is None and not os.environ.get("RAP_REQUIRE_BROWSER"),
                             reason="chromium is not installed (.ci/run installs it)")


@BROWSER
def test_the_report_page_in_a_real_browser(settings, selected, tmp_path):
    summary, _, _ = selected
    browser = Browser(tmp_path)
    try:
        browser.open(Path(summary["report_path"]).as_uri())
        browser.wait_for("[...document.images].every(i => i.complete)")
        assert browser.errors() == []
        groups = browser.evaluate(
            "Object.fromEntries([...document.querySelectorAll('section.group')].map("
            "s => [s.dataset.group, s.querySelectorAll('.card').length]))")
        assert groups == cards_of(Path(summary["report_path"]).read_text())
        widths = browser.evaluate("[...document.images].map(i => i.naturalWidth)")
        assert len(widths) == len(OUTCOMES) and min(widths) > 0
        assert browser.evaluate("document.getElementById('count').textContent") == str(
            len(OUTCOMES))
        shown = browser.evaluate(
            "(() => { const f = document.getElementById('filter'); f.value = 'picture 3?';"
            " f.dispatchEvent(new Event('input')); return [...document.querySelectorAll("
            "'.card')].filter(c => !c.hidden).length; })()")
        assert shown == 1
        assert browser.evaluate("document.getElementById('count').textContent") == "1"
        browser.evaluate("(() => { const f = document.getElementById('filter'); f.value = '';"
                         " f.dispatchEvent(new Event('input')); })()")
        shot = browser.screenshot(tmp_path / "report.png", full_page=True)
        assert not_blank(shot)
        keep = os.environ.get("RAP_SCREENSHOTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            (Path(keep) / "report.png").write_bytes(shot.read_bytes())
        assert browser.errors() == []
    finally:
        browser.close()


def mlflow_ui_command() -> list[str] | None:
    exe = Path(sys.executable).with_name("mlflow")
    try:
        import mlflow.server  # noqa: F401  (the full package, not mlflow-skinny)
    except ImportError:
        return None
    return [str(exe)] if exe.exists() else None


@BROWSER
@pytest.mark.skipif(mlflow_ui_command() is None,
                    reason="the full mlflow package is not installed (make install does it)")
def test_mlflow_ui_shows_the_run_and_its_report(settings, selected, tmp_path):
    summary, _, _ = selected
    from rap.flows.server import start_mlflow_ui
    port = free_port()
    proc = start_mlflow_ui(settings, "127.0.0.1", port, background=True)
    browser = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
        logged = client.get_run(summary["mlflow_run_id"])
        base = (f"http://127.0.0.1:{port}/#/experiments/{logged.info.experiment_id}/runs/"
                f"{logged.info.run_id}")
        browser = Browser(tmp_path)
        browser.open(base)
        browser.wait_for(f"document.body.innerText.includes('select-{summary['run_id']}')")
        browser.open(base + "/artifacts")
        browser.wait_for("document.body.innerText.includes('report')")
        shot = browser.screenshot(tmp_path / "mlflow.png")
        assert not_blank(shot)
        keep = os.environ.get("RAP_SCREENSHOTS")
        if keep:
            (Path(keep) / "mlflow.png").write_bytes(shot.read_bytes())
    finally:
        if browser:
            browser.close()
        stop(proc)
