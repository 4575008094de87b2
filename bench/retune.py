"""Benchmark 4: everything after inference. (a) Re-selection over stored facts for N
synthetic samples with 5 + 5 rollouts each (default 1,000,000; target < 3 s, no model); (b) a
rerun of a selection whose facts are all stored (default run, 1,000 samples; target 0
inferred and < 10% of the first run's wall time).

    .venv/bin/python bench/retune.py [--n 1000000] [--rerun-n 1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, model_path, table

SYNTHETIC = [  # DuckDB statements that fill a store with N samples' facts
    """INSERT INTO samples SELECT 's' || i, 'q' || i, 'a', ['x.png'], ['h' || i], NULL,
       current_timestamp FROM range($n) t(i)""",
    """INSERT INTO pool_rows SELECT 'P', i, 's' || i, 'ok', NULL, NULL, NULL, NULL
       FROM range($n) t(i)""",
    """INSERT INTO rollouts SELECT 's' || i, 'M', 'S', c, k, '', [], 'a',
       hash(i, c, k) % 100 < CASE WHEN c = 'mm' THEN 60 ELSE 40 END
       FROM range($n) t(i), (VALUES ('mm'), ('text')) v(c), range(5) r(k)""",
    """INSERT INTO attention_stats SELECT 's' || i, 'M', 'A', 0, 12,
       list_transform(range(12), lambda j: -1.0 * ((hash(i, j) % 1000) / 10.0 + 12 - j))
       FROM range($n) t(i)""",
]


def synthetic_retune(n: int, work: Path) -> dict:
    from rap.rap_core.estimators import plan
    from rap.rap_core.estimators.select import select_rows
    from rap.rap_core.estimators.stored import selection_inputs
    from rap.rap_core.keys import FactKeys
    from rap.rap_core.params import Thresholds
    from rap.rap_core.store import open_store
    seconds: dict = {}
    path = work / "synthetic.duckdb"
    with open_store(path) as store:
        start = time.perf_counter()
        for statement in SYNTHETIC:
            store.con.execute(statement, {"n": n})
        seconds["fill (not part of retune)"] = time.perf_counter() - start
    th = Thresholds()
    with open_store(path, read_only=True) as store:
        start = time.perf_counter()
        keys = FactKeys(pool_id="P", model_key="M", settings_key="S", ace_key="A")
        inputs = selection_inputs(store, plan("rap"), keys, th)
        seconds["scores from stored facts (SQL)"] = time.perf_counter() - start
    start = time.perf_counter()
    decisions = select_rows(inputs, plan("rap"), th)
    seconds["CDE + ACE + DRM (polars)"] = time.perf_counter() - start
    seconds["retune total"] = (seconds["scores from stored facts (SQL)"]
                               + seconds["CDE + ACE + DRM (polars)"])
    seconds["selected"] = int((decisions["state"] == "selected").sum())
    return seconds


def cli_wall(args: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(args, env=env, text=True, capture_output=True, check=True)
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--rerun-n", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rap-bench-"))
    print(f"machine: {machine()}")
    got = synthetic_retune(args.n, work)
    print(f"(a) re-selection over {args.n:,} synthetic samples (5 + 5 rollouts, 12-token "
          "attention rows each):")
    print(table([{"step": k, "value": v} for k, v in got.items()]))
    print(f"    retune total {got['retune total']:.2f} s (target < 3 s: "
          f"{'met' if got['retune total'] < 3 else 'NOT met'}); no model is loaded")
    # (b) the same command twice on a fresh data folder with the demo model already trained
    model_path("builtin:easy-vqa-vlm", work)
    data = work / "rerun"
    (data / "models").mkdir(parents=True)
    for model in (Path("rap_data") / "models").glob("*"):
        os.symlink(model.resolve(), data / "models" / model.name)
    env = dict(os.environ, RAP_DATA_DIR=str(data))
    rap = str(Path(sys.executable).with_name("rap"))
    cmd = [rap, "select", "--limit", str(args.rerun_n), "--no-track"]
    first, _ = cli_wall(cmd, env)
    again, out = cli_wall(cmd, env)
    inferred = out.split("samples inferred ")[1].split()[0].rstrip(",")
    floor, _ = cli_wall([sys.executable, "-c", FLOOR], env)
    served, served_out = rerun_with_server(rap, cmd, env, data)
    print(f"(b) `rap select --limit {args.rerun_n} --no-track` (demo model trained, fresh "
          "store):")
    print(table([{"run": "first run", "seconds": first},
                 {"run": "rerun", "seconds": again},
                 {"run": "rerun, `rap server start` already running", "seconds": served},
                 {"run": "(a flow that does nothing, fresh process)", "seconds": floor}]))
    print(f"    rerun: {inferred} samples inferred, {again / first:.1%} of the first run's "
          f"wall time (target < 10%: {'met' if again / first < 0.10 else 'NOT met'}); "
          f"with a running server {served / first:.1%}; a flow that does nothing costs "
          f"{floor:.1f} s in a fresh process (imports and Prefect's temporary server)")
    assert "samples inferred 0" in served_out


# a fresh process running an empty flow: the fixed cost of any CLI run on a temporary server
FLOOR = """import sys; sys.path.insert(0, '.')
from rap.rap_core.settings import Settings, configure_process_env
configure_process_env(Settings.from_env().data_dir)
import rap.flows.rap
from prefect import flow
flow(lambda: None, name='noop')()"""


def rerun_with_server(rap: str, cmd: list[str], env: dict, data: Path) -> tuple[float, str]:
    """The rerun against `rap server start` (started first, not timed)."""
    import signal
    import socket
    import urllib.request
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([rap, "server", "start", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("rap server start did not answer in 180 s")
                time.sleep(0.5)
        return cli_wall(cmd, dict(env, PREFECT_API_URL=f"http://127.0.0.1:{port}/api"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)

if __name__ == "__main__":
    main()
