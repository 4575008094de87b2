"""`rap sweep`: grids parsed and bounded, every point equal to what `rap retune` stores with
the same values, the run's own point equal to its funnel, nothing written, one-line errors."""

import json
import os
import subprocess
import sys

import polars as pl
import pytest

import fakes
from rap.rap_core.errors import SweepError
from rap.rap_core.sweep import make_grid, values_of


def test_values_are_lists_or_inclusive_ranges():
    assert values_of("lambda_c", "0:0.8:0.1") == [repr(round(0.1 * i, 12)) for i in range(9)]
    assert values_of("lambda_c", "0.3:0.3:0.1") == ["0.3"]
    assert values_of("lambda_a", "1e-6, 1e-5,0.1") == ["1e-6", "1e-5", "0.1"]
    assert values_of("drm_pool", "all_rejected,cde_rejected") == ["all_rejected", "cde_rejected"]
    for spec, says in [("1:0:0.1", "start <= stop"), ("0:1:0", "step > 0"),
                       ("a:b:c", "three numbers"), ("0.1,,0.2", "an empty value")]:
        with pytest.raises(SweepError, match=says):
            values_of("lambda_c", spec)


def test_the_grid_is_bounded_and_names_thresholds_only():
    grid = make_grid({"lambda_c": "0:0.8:0.1", "lambda_a": "1e-6,1e-5,1e-4,0.1"}, ["rap"])
    assert grid.size == 36 and len(list(grid.points())) == 36
    with pytest.raises(SweepError, match=r"the grid has 2,002 points \(1001 --lambda-c x 2 "
                                         r"--lambda-a\); at most 200 \(--max-points\)"):
        make_grid({"lambda_c": "0:1:0.001", "lambda_a": "1,2"}, ["rap"])
    assert make_grid({"lambda_c": "0:1:0.001"}, ["rap"], max_points=1001).size == 1001
    with pytest.raises(SweepError, match="--seed is not a threshold"):
        make_grid({"seed": "1,2"}, ["rap"])


def refused(argv):
    import contextlib
    import io

    from rap.flows import cli
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(argv) == 2
    return err.getvalue().strip().splitlines()


@pytest.mark.usefixtures("prefect_harness")
def test_every_point_is_what_retune_stores(settings, tmp_path):
    from rap.flows import cli
    from rap.flows.rap import run_flow
    from rap.rap_core.engines import base as engine_mod
    from rap.rap_core.estimators.stored import run_funnel
    from rap.rap_core.io.readers import read_pool
    from rap.rap_core.io.spec import question_type
    from rap.rap_core.params import DataSpec, ModelSpec, RapParams, RolloutSettings, Thresholds
    from rap.rap_core.store import open_store
    from rap.rap_core.sweep import is_current, sweep
    n = 24
    answers = read_pool(DataSpec(limit=n), tmp_path / "c").samples["answer"]
    pattern = [(2, 1), (1, 1), (2, 2), (1, 0), (2, 0)]  # D = 0.5, 0, 0, 0.5, 1 at M = 2
    outcomes = [fakes.outcome(*pattern[i % 5]) if question_type(a) == "yes/no"
                else fakes.outcome(2, 0, hot=i % 4 == 0) for i, a in enumerate(answers)]
    model = fakes.script_pool(DataSpec(limit=n), tmp_path, outcomes)
    base = run_flow(RapParams(data=DataSpec(limit=n), model=ModelSpec(path=model),
                              rollout=RolloutSettings(m=2, max_new_tokens=8), export=False,
                              track=False))
    engine_mod.load_engine.cache_clear()
    loads = len(fakes.LOADS)
    grid = make_grid({"lambda_c": "0.2,0.5", "lambda_a": "1e-6,0.1",
                      "coverage_floor": "0,1"}, ["rap", "pass_band"])
    with open_store(settings.duckdb_path, read_only=True) as store:
        found = sweep(store, None, grid)
        own = run_funnel(store, base["run_id"])
        runs_before = store.con.sql("SELECT count(*) FROM selection_runs").fetchall()
    assert len(fakes.LOADS) == loads and runs_before == [(1,)]  # no model, nothing written
    assert found.table.height == 16
    current = [r for r in found.table.iter_rows(named=True) if is_current(r, found.current)]
    assert len(current) == 1
    assert {k: current[0][k] for k in own if k.startswith("after_") or k == "selected"} == {
        k: v for k, v in own.items() if k.startswith("after_") or k == "selected"}
    # a few points as retunes: the stored funnel and coverage are the sweep's row
    rows = found.table.filter(pl.col("lambda_c") == 0.2).filter(
        pl.col("coverage_floor") == 1.0).filter(pl.col("lambda_a") == 0.1).to_dicts()
    rows += found.table.filter((pl.col("method") == "rap") & (pl.col("lambda_a") == 1e-6)
                               & (pl.col("coverage_floor") == 0.0)).to_dicts()[:1]
    for row in rows:
        th = Thresholds(lambda_c=row["lambda_c"], lambda_a=row["lambda_a"],
                        coverage_floor=row["coverage_floor"])
        retuned = run_flow(RapParams(mode="retune", base_run=base["run_id"],
                                     method=row["method"], thresholds=th, export=False,
                                     track=False))
        with open_store(settings.duckdb_path, read_only=True) as store:
            stored = run_funnel(store, retuned["run_id"])
            coverage = store.query("queries/coverage_of_run", run_id=retuned["run_id"])
        for key, value in stored.items():
            if key.startswith("after_") or key in ("pool_rows", "selected", "errors"):
                assert row[key] == value, (row, key)
        assert row["readmitted"] == sum(v for k, v in stored.items()
                                        if k.startswith("readmitted_from_"))
        low = coverage.drop_nulls("ratio").sort(["ratio", "group"]).row(0, named=True)
        assert row["lowest_group"] == low["group"]
        assert row["lowest_ratio"] == pytest.approx(low["ratio"])
        for r in coverage.iter_rows(named=True):
            assert row[f"share.{r['group']}"] == pytest.approx(r["selected_share"])
    # the command: one table, files under the output rules, one-line errors
    out = tmp_path / "sweep.csv"
    page = tmp_path / "sweep.html"
    assert cli.main(["sweep", "--run", base["run_id"], "--lambda-c", "0:0.8:0.4", "--out",
                     str(out), "--report", str(page)]) == 0
    assert pl.read_csv(out).height == 3
    # a grid that selects nothing anywhere: its null scores still print
    assert cli.main(["sweep", "--run", base["run_id"], "--lambda-c", "1.5,2"]) == 0
    assert json.loads((tmp_path / "sweep.csv.manifest.json").read_text())["format"] == "sweep"
    html = page.read_text()
    assert "rows after each stage against lambda_c" in html and "the run: 0.5" in html
    assert refused(["sweep", "--lambda-c", "0.1", "--out", str(out)])[0].startswith(
        "rap: error:")  # an earlier file is not replaced without --force
    assert refused(["sweep", "--foo", "1"]) == [
        "rap: error: No such option: --foo (Possible options: --force, --out) "
        "(`rap sweep --help` lists the options)"]
    assert refused(["sweep", "--lambda-c", "0:1:0.001", "--sigma", "1,2"]) == [
        "rap: error: the grid has 2,002 points (1001 --lambda-c x 2 --sigma); at most 200 "
        "(--max-points)"]
    assert refused(["sweep", "--run", "nope"]) == ["rap: error: no selection run 'nope' to sweep"]
    assert refused(["sweep", "--lambda-c", "x"]) == [
        "rap: error: --lambda-c 'x': Input should be a valid number, unable to parse string "
        "as a number"]
    # as a command of its own: no Prefect, no model stack, no MLflow imported
    code = ("import sys; import rap.flows.cli\n"
            "assert rap.flows.cli.main(['sweep', '--lambda-c', '0.5,0.6']) == 0\n"
            "print(sorted(m for m in ('prefect', 'torch', 'transformers', 'mlflow') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env=dict(os.environ, RAP_DATA_DIR=str(settings.data_dir)))
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "2 points" in done.stdout
