"""`prefect deployment run rap/select` for real: a Prefect server on a free loopback port with
its own database, the process work pool, the deployments of prefect.yaml and a worker, all
started through `rap server ...` exactly as the README says; stopped by PID afterwards."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import mlflow
import pytest

from rap.rap_core.store import open_store

pytestmark = pytest.mark.deployment
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group we started (the worker before the server), then kill."""
    if proc.poll() is not None:
        return
    for sig, wait_s in [(signal.SIGTERM, 30), (signal.SIGKILL, 10)]:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


class Started:
    """A command running; result() waits (10 min at most) and gives what subprocess.run would."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def result(self) -> subprocess.CompletedProcess:
        try:
            out, err = self.proc.communicate(timeout=600)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)


class Stack:
    def __init__(self, root: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.data = root / "rap_data"
        self.logs = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.env.update(RAP_DATA_DIR=str(self.data), PREFECT_HOME=str(root / "client-home"),
                        PREFECT_SERVER_ANALYTICS_ENABLED="false",
                        # the worker asks for scheduled runs every second, not every 10 s:
                        # each deployment run starts sooner, nothing else changes
                        PREFECT_WORKER_QUERY_SECONDS="1")
        self.procs: list[subprocess.Popen] = []

    def start(self, action: str) -> subprocess.Popen:
        log = open(self.logs / f"{action}.log", "w")
        proc = subprocess.Popen([str(BIN / "rap"), "server", action, "--port", str(self.port)],
                                env=self.env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def rap(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "rap"), *args], env=self.env, cwd=ROOT, text=True,
                              capture_output=True, timeout=300)

    def prefect(self, *args: str) -> subprocess.CompletedProcess:
        return self.prefect_started(*args).result()

    def prefect_started(self, *args: str) -> "Started":
        """`prefect ...` against this server, started; .result() waits for it."""
        return Started(subprocess.Popen([str(BIN / "prefect"), *args], text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env=dict(self.env, PREFECT_API_URL=self.url)))

    def api(self, path: str, body: dict) -> list[dict]:
        request = urllib.request.Request(f"{self.url}/{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())

    def of_run(self, path: str, flow_run_id: str, **extra) -> list[dict]:
        return self.api(path, {path.split("/")[0]: {"flow_run_id": {"any_": [flow_run_id]}},
                               **extra})

    def server_log(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}"
                         for p in sorted(self.logs.glob("*.log")))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from rap.flows.server import wait_for_server
    s = Stack(tmp_path_factory.mktemp("prefect-stack"))
    try:
        s.start("start")
        wait_for_server(s.url, timeout_s=240)
        deployed = s.rap("server", "deploy", "--port", str(s.port))
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert "rap/select" in deployed.stdout and "rap/retune" in deployed.stdout
        s.start("worker")
        yield s
    finally:
        for proc in reversed(s.procs):  # worker first, then the server
            _stop(proc)


def _run_deployment(stack: Stack, name: str, *params: str) -> str:
    args = [p for kv in params for p in ("--param", kv)]
    done = stack.prefect("deployment", "run", name, *args, "--watch")
    assert done.returncode == 0, done.stdout + done.stderr + stack.server_log()
    assert "Completed" in done.stdout
    return re.search(r"UUID: ([0-9a-f-]{36})", done.stdout).group(1)


def _count(stack: Stack, statement: str):
    with open_store(stack.data / "rap.duckdb", read_only=True) as store:
        return store.con.execute(statement).fetchall()[0][0]


def test_select_then_retune_on_a_worker(stack):
    # all_rollouts: the random model answers nothing right, which would skip text-only
    flow_run = _run_deployment(stack, "rap/select", "limit=6", "model=builtin:tiny-qwen2-vl",
                               "m=2", "max_new_tokens=8", "shard_size=4", "all_rollouts=true")
    assert _count(stack, "SELECT count(*) FROM selection_runs") == 1
    assert _count(stack, "SELECT count(*) FROM rollouts") == 6 * 2 * 2
    assert _count(stack, "SELECT count(*) FROM decisions") == 6
    run_id, mlflow_id, export = [_count(stack, f"SELECT {c} FROM selection_runs")
                                 for c in ("run_id", "mlflow_run_id", "export_path")]
    assert Path(export).is_file()

    client = mlflow.MlflowClient(f"sqlite:///{stack.data / 'mlflow.db'}")
    logged = client.get_run(mlflow_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.tags["run_id"] == run_id
    assert logged.data.params["rollout.m"] == "2"

    tasks = {t["name"] for t in stack.of_run("task_runs/filter", flow_run)}
    for name in ("ingest", "register-model", "text-only-inference 1/2",
                 "text-only-inference 2/2", "multimodal-inference 2/2",
                 "attention-extraction 1/2", "replacement", "track"):
        assert any(t == name or t.startswith(name + "-") for t in tasks), (name, tasks)
    artifacts = {a["type"]: a for a in stack.of_run("artifacts/filter", flow_run)}
    assert artifacts["progress"]["data"] == pytest.approx(100.0)
    report = artifacts["markdown"]["data"]
    assert run_id in report and mlflow_id in report and export in report
    assert "| after CDE |" in report
    logs = "\n".join(entry["message"] for entry in stack.of_run("logs/filter", flow_run))
    assert "text-only: 6/6 samples" in logs and "ingest: 6 rows" in logs
    assert f"run {run_id}: 6 rows ->" in logs

    retune = _run_deployment(stack, "rap/retune", "lambda_c=-1", "m=3")
    assert _count(stack, "SELECT count(*) FROM selection_runs") == 2
    assert _count(stack, "SELECT count(*) FROM rollouts") == 6 * 2 * 2
    assert _count(stack, "SELECT count(*) FROM selection_runs WHERE mode = 'retune' AND "
                  f"base_run = '{run_id}' AND samples_inferred = 0 AND lambda_c = -1") == 1
    names = {t["name"] for t in stack.of_run("task_runs/filter", retune)}
    assert names and not any(n.startswith(("register-model", "text-only", "multimodal",
                                           "attention", "plan-")) for n in names), names
    logs = "\n".join(entry["message"] for entry in stack.of_run("logs/filter", retune))
    assert "retune ignores m:" in logs


def test_bad_parameters_are_refused_at_submission(stack):
    before = len(stack.api("flow_runs/filter", {}))
    cases = [("m=0", "Validation failed for field 'm'"),
             ("lambda_c=\"abc\"", "Validation failed for field 'lambda_c'"),
             ("mode=\"fast\"", "Validation failed for field 'mode'"),
             ("bogus=1", "'bogus'")]
    # independent submissions, so at the same time (each is mostly the CLI's start-up)
    started = [stack.prefect_started("deployment", "run", "rap/select", "--param", param)
               for param, _ in cases]
    for (param, expected), done in zip(cases, [s.result() for s in started]):
        assert done.returncode != 0, param
        assert expected in " ".join((done.stdout + done.stderr).split()), (param, done.stdout)
    assert len(stack.api("flow_runs/filter", {})) == before


def test_server_commands_say_what_is_missing(tmp_path):
    env = dict(os.environ, RAP_DATA_DIR=str(tmp_path / "d"), PREFECT_API_URL="")
    done = subprocess.run([str(BIN / "rap"), "server", "deploy", "--port",
                           str(_free_port()), "--wait", "2"], env=env, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 2
    assert "no Prefect server answers" in done.stderr and "make server" in done.stderr
