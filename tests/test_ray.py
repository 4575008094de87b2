"""`rap select --runner ray` on a local Ray with 2 CPU workers: the same facts and selection
as the local runner, a killed worker's shard retried, a shard that keeps failing recorded as
errors while the other shards are kept, and no Ray process left behind."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
from prefect import flow

from rap.rap_core.engines.base import EngineConfigError
from rap.rap_core.engines.inference import ERROR_SCHEMA, ROLLOUT_SCHEMA, ShardResult
from rap.rap_core.models import ResolvedModel
from rap.rap_core.params import RapParams
from rap.rap_core.store import open_store
from test_crash import RAP, _env, _facts, _kill

pytest.importorskip("prefect_ray")
pytestmark = pytest.mark.ray


def _ray_pids() -> set[int]:
    """Ray's own daemons (the GCS and the raylet) running on this machine."""
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"gcs_server" in cmdline or b"raylet" in cmdline:
            pids.add(int(pid))
    return pids


def test_ray_runner_selects_as_the_local_runner_and_survives_a_killed_worker(
        tiny_model_dir, tmp_path, prefect_api_url):
    before = _ray_pids()
    # two shards per phase: one for each Ray worker
    command = [RAP, "select", "--model", str(tiny_model_dir), "--limit", "8",
               "--shard-size", "4", "--batch-size", "4", "--m", "2", "--max-new-tokens", "8",
               "--lambda-c", "-1", "--no-track", "--all-rollouts"]
    # the local runner's run, for comparison, goes on meanwhile in its own data folder
    with open(tmp_path / "local.log", "w") as log:
        local_run = subprocess.Popen(command, env=_env(tmp_path / "local", prefect_api_url),
                                     stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
    try:
        marker = tmp_path / "killed"
        env = _env(tmp_path / "ray", prefect_api_url)
        faults = str(Path(__file__).parent / "faults")  # its sitecustomize kills one worker
        env = dict(env, RAP_TEST_KILL_WORKER_ONCE=str(marker),
                   PYTHONPATH=os.pathsep.join(filter(None, [faults, env.get("PYTHONPATH")])))
        ray = subprocess.run(command + ["--runner", "ray"], capture_output=True, text=True,
                             env=env)
        local_run.wait(600)
    finally:
        _kill(local_run)
    assert local_run.returncode == 0, (tmp_path / "local.log").read_text()[-3000:]
    assert ray.returncode == 0, ray.stdout[-3000:] + ray.stderr[-3000:]
    assert marker.exists()  # one shard task killed its worker; Ray ran the shard again
    assert "ray: 2 text-only-inference tasks, each with {'num_cpus': 1.0, 'num_gpus': 0.0}" \
        in ray.stdout + ray.stderr
    assert "samples inferred 8" in ray.stdout
    local, remote = _facts(tmp_path / "local"), _facts(tmp_path / "ray")
    assert len(local["rollouts"]) == 8 * 2 * 2 and local["decisions"]
    assert remote == local
    with open_store(tmp_path / "ray" / "rap.duckdb", read_only=True) as store:
        assert store.con.execute("SELECT count(*) FROM inference_errors").fetchone() == (0,)
    deadline = time.monotonic() + 30
    while _ray_pids() - before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _ray_pids() - before, "the run left Ray processes behind"


class _Future:
    def __init__(self, outcome):
        self.outcome = outcome

    def result(self):
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def test_a_shard_that_keeps_failing_becomes_errors_and_the_others_are_kept(
        prefect_harness, monkeypatch):
    import rap.flows.runners as runners
    from rap.tasks.inference import multimodal_inference
    shards = [pl.DataFrame({"sample_id": [f"s{i}", f"t{i}"]}) for i in range(3)]
    done = [ShardResult(pl.DataFrame([], schema=ROLLOUT_SCHEMA),
                        pl.DataFrame([], schema=ERROR_SCHEMA), engine_s=float(i))
            for i in range(3)]
    outcomes = [done[0], RuntimeError("worker died 4 times"), done[2]]
    monkeypatch.setattr(runners, "submit_shards", lambda *a, **k: [_Future(o) for o in outcomes])

    @flow
    def phase():
        runner = runners.RayRunner(task_runner=object(), spec=RapParams().runner)
        return list(runner.results("multimodal", multimodal_inference, shards, RapParams(),
                                   ResolvedModel("p", "f", "M"), None, fact_key="S"))
    results = phase()
    assert results[0] is done[0] and results[2] is done[2]
    errors = results[1].errors
    assert errors["sample_id"].to_list() == ["s1", "t1"]
    assert set(errors["error_code"]) == {"shard_failed"} and set(errors["fact_key"]) == {"S"}
    assert all("multimodal-inference 2/3 failed: RuntimeError: worker died 4 times" in m
               for m in errors["error_message"])
    outcomes[1] = EngineConfigError("processor drops images")
    with pytest.raises(EngineConfigError):
        phase()


def test_deployments_name_the_flow_by_module_path():
    """A deployment's flow loaded from a file is a module `rap` that Ray workers cannot
    import: a runner=ray run on a worker then failed every shard (seen for real)."""
    import yaml
    from prefect.flows import load_flow_from_entrypoint
    spec = yaml.safe_load((Path(__file__).resolve().parent.parent / "prefect.yaml").read_text())
    entrypoints = {d["entrypoint"] for d in spec["deployments"]}
    assert entrypoints == {"rap.flows.rap:rap"}
    assert load_flow_from_entrypoint("rap.flows.rap:rap").fn.__module__ == "rap.flows.rap"
