"""`rap server ...`: a Prefect server, work pool, worker and deployments for this project.

    rap server start     # Prefect server on 127.0.0.1:4200, its database in the data folder
    rap server deploy    # register the deployments of prefect.yaml (rap/select, rap/retune)
    rap server worker    # create the process work pool if missing, run a worker on it

Each command sets what the Prefect CLI would otherwise need by hand: the API URL,
the working directory the deployments pull to (the project root, written at deploy time),
and the worker's data folder and result storage, so runs land in the same store as the CLI's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from rap.rap_core.settings import Settings, process_env

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 4200
WORK_POOL = "rap-pool"  # the pool prefect.yaml's deployments name


class ServerError(RuntimeError):
    """The Prefect server cannot be reached or a Prefect command failed."""


def api_url(port: int | None) -> str:
    """--port wins; then an exported PREFECT_API_URL; then 127.0.0.1:4200."""
    if port is None and os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"].rstrip("/")
    return f"http://127.0.0.1:{port or DEFAULT_PORT}/api"


def prefect_env(settings: Settings, url: str | None) -> dict[str, str]:
    """Environment of every Prefect process of this project (server, deploy, worker, runs)."""
    env = dict(os.environ, **process_env(settings.data_dir))  # results beside the store
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    if url:
        env["PREFECT_API_URL"] = url
    else:
        env.pop("PREFECT_API_URL", None)
    return env


def _prefect() -> str:
    """The prefect executable of this environment (the worker's Python runs the flows)."""
    return str(Path(sys.executable).with_name("prefect"))


def wait_for_server(url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as reply:
                if json.loads(reply.read()) is True:
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise ServerError(f"no Prefect server answers at {url} after {timeout_s:.0f} s: "
                              "start one with `make server` (or `rap server start`)")
        time.sleep(1.0)


def start_server(settings: Settings, host: str, port: int, say) -> None:
    """Replace this process with `prefect server start` (its database in the data folder)."""
    env = prefect_env(settings, None)
    db = settings.data_dir / "prefect" / "server.db"
    env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{db}"
    env["PREFECT_UI_API_URL"] = f"http://{host}:{port}/api"
    say(f"Prefect server on http://{host}:{port} (database {db})")
    say(f"  in other shells: export PREFECT_API_URL=http://{host}:{port}/api")
    say("  then: make deploy, make worker, prefect deployment run rap/select --watch")
    os.execve(_prefect(), [_prefect(), "server", "start", "--host", host, "--port", str(port)],
              env)


def _run(args: list[str], env: dict, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([_prefect(), *args], env=env, cwd=PROJECT_ROOT, text=True,
                          capture_output=True)
    if check and done.returncode != 0:
        raise ServerError(f"`prefect {' '.join(args)}` failed ({done.returncode}):\n"
                          f"{done.stdout}{done.stderr}".rstrip())
    return done


def deploy(settings: Settings, port: int | None, say, wait_s: float = 120.0) -> None:
    """Register every deployment of prefect.yaml; runs start in the project root."""
    url, env = _server_with_pool(settings, port, say, wait_s)
    done = _run(["--no-prompt", "deploy", "--all"], env)
    for line in done.stdout.splitlines():
        if "successfully created" in line or "Deployment '" in line:
            say(line.strip("│ \t"))
    say(f"deployments registered on {url}: prefect deployment run rap/select --watch")


def _server_with_pool(settings: Settings, port: int | None, say,
                      wait_s: float) -> tuple[str, dict]:
    """Wait for the server, create the work pool if missing; (API URL, environment)."""
    url = api_url(port)
    wait_for_server(url, wait_s)
    env = prefect_env(settings, url)
    if _run(["work-pool", "inspect", WORK_POOL], env, check=False).returncode != 0:
        _run(["work-pool", "create", WORK_POOL, "--type", "process"], env)
        say(f"created process work pool {WORK_POOL}")
    return url, env


def start_worker(settings: Settings, port: int | None, say, wait_s: float = 120.0) -> None:
    """Create the work pool if missing, then replace this process with a worker on it."""
    url, env = _server_with_pool(settings, port, say, wait_s)
    say(f"worker on pool {WORK_POOL} at {url}; data folder {settings.data_dir}")
    os.chdir(PROJECT_ROOT)
    os.execve(_prefect(), [_prefect(), "worker", "start", "--pool", WORK_POOL, "--type",
                           "process", "--limit", "1"], env)


def mlflow_ui_command(settings: Settings, host: str, port: int) -> list[str]:
    """`mlflow ui` over the data folder's tracking store: one worker (each takes ~270 MB),
    MLflow's job runner off (selection runs need none)."""
    uri = settings.mlflow_tracking_uri
    if not uri.startswith("sqlite:"):
        raise ServerError(f"the tracking store is {uri}, not a file in the data folder: open "
                          "that server's UI directly")
    try:
        import mlflow.server  # noqa: F401  (the full package; mlflow-skinny has no UI)
    except ImportError as exc:
        raise ServerError("MLflow's UI needs the full mlflow package: pip install '.[ui]' "
                          "(make install does it)") from exc
    return [str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri", uri,
            "--host", host, "--port", str(port), "--workers", "1"]


def start_mlflow_ui(settings: Settings, host: str = "127.0.0.1", port: int = 5000,
                    say=None, background: bool = False):
    """MLflow's UI on host:port over this data folder's runs: replaces this process, or
    (background) returns the started process for the caller to stop."""
    command = mlflow_ui_command(settings, host, port)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    if background:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    if say:
        say(f"MLflow UI on http://{host}:{port} (tracking store {settings.mlflow_tracking_uri})")
        say(f"  experiment '{settings.mlflow_experiment}': one run per selection, with its "
            "report page under Artifacts > report")
    os.execve(command[0], command, env)
