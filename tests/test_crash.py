"""kill -9 a real `rap select` at several points of inference, resume it, and get exactly the
result of an uninterrupted run; a second writer is refused or queues; `rap query` waits out
a writer's batch. The runs use the session's Prefect server, as with `rap server start`: what
is checked lives in the data folder, and each temporary server would cost about 15 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rap.rap_core.store import open_store

pytestmark = pytest.mark.crash
RAP = str(Path(sys.executable).with_name("rap"))
# 4 shards per phase: a kill after the 2nd multimodal shard (or the 1st of the others) lands
# with shards still to go; every run pays a Prefect task and a transaction per shard
M, SHARD, ROWS = 2, 4, 16


def _env(data: Path, api_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return dict(env, RAP_DATA_DIR=str(data), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                PREFECT_API_URL=api_url)


def _command(model: Path) -> list[str]:
    return [RAP, "select", "--model", str(model), "--limit", str(ROWS), "--shard-size",
            str(SHARD), "--batch-size", "4", "--m", str(M), "--max-new-tokens", "8",
            "--no-track", "--all-rollouts"]  # every phase runs, even with a random model


def _start(model: Path, data: Path, api_url: str, out=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen(_command(model), env=_env(data, api_url), stdout=out,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for(proc: subprocess.Popen, marker: str, seen: list[str]) -> None:
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return
    raise AssertionError(f"{marker!r} never printed:\n{''.join(seen[-40:])}")


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and anything it started
    except ProcessLookupError:
        pass
    proc.wait(30)


def _facts(data: Path) -> dict:
    with open_store(data / "rap.duckdb", read_only=True) as store:
        def rows(sql):
            return store.con.execute(sql).fetchall()
        return {
            "rollouts": rows("SELECT sample_id, condition, rollout_index, response, correct "
                             "FROM rollouts ORDER BY ALL"),
            "attention": rows("SELECT sample_id, rollout_index, response_len, col_log_sums "
                              "FROM attention_stats ORDER BY ALL"),
            "decisions": rows("SELECT source_row, sample_id, state, stage, reason, d, psi "
                              "FROM decisions ORDER BY source_row"),
            "per_sample": rows("SELECT condition, count(*) FROM rollouts "
                               "GROUP BY sample_id, condition HAVING count(*) <> 2"),
        }


def _assert_whole_shards(data: Path) -> None:
    """After a kill: only whole shards, each sample with all M rollouts, no duplicates."""
    with open_store(data / "rap.duckdb", read_only=True) as store:
        partial = store.con.execute(f"SELECT count(*) FROM (SELECT sample_id, condition FROM "
                                    f"rollouts GROUP BY ALL HAVING count(*) <> {M})").fetchone()
        per_condition = store.con.execute("SELECT condition, count(DISTINCT sample_id) FROM "
                                          "rollouts GROUP BY condition").fetchall()
        attention = store.con.execute("SELECT count(*) FROM attention_stats").fetchone()[0]
    assert partial == (0,)
    for _, n in per_condition:
        assert n % SHARD == 0 or n == ROWS
    assert attention % SHARD == 0 or attention == ROWS


def test_kill_resume_equals_an_uninterrupted_run(tiny_model_dir, tmp_path,
                                                  prefect_api_url):
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    # the uninterrupted run has its own data folder: it runs while the other is killed
    # (each run spends most of its time on one core: imports, small batches)
    log = tmp_path / "reference.log"
    with open(log, "w") as out:
        first = _start(tiny_model_dir, reference, prefect_api_url, out)
    try:
        kills = ["multimodal: 8/", "text-only: 4/", "attention: 4/"]  # the phase order
        for marker in kills:
            proc, seen = _start(tiny_model_dir, crashed, prefect_api_url), []
            try:
                _wait_for(proc, marker, seen)
            finally:
                _kill(proc)
            _assert_whole_shards(crashed)
        first.wait(600)
    finally:
        _kill(first)
    assert first.returncode == 0, log.read_text()
    done = subprocess.run(_command(tiny_model_dir), env=_env(crashed, prefect_api_url),
                          text=True, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    inferred = int(done.stdout.split("samples inferred ")[1].split()[0].rstrip(","))
    stored = int(done.stdout.split("found stored ")[1].split()[0])
    assert inferred + stored == ROWS and 0 < stored  # resumed: only the rest was inferred
    again, first = _facts(crashed), _facts(reference)
    assert again["per_sample"] == [] and first["per_sample"] == []
    assert again == first


def test_a_second_run_is_refused_or_queues_and_queries_wait(tiny_model_dir, tmp_path,
                                                             prefect_api_url):
    import threading

    import duckdb

    from rap.rap_core.store.lock import RunLock
    data = tmp_path / "data"
    with RunLock(data):  # this test process plays the run that is writing
        refused = subprocess.run(_command(tiny_model_dir), env=_env(data, prefect_api_url),
                                 text=True, capture_output=True, timeout=300)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"pid {os.getpid()}" in refused.stderr and "--wait-for-lock" in refused.stderr
        queued = subprocess.Popen([*_command(tiny_model_dir), "--wait-for-lock", "300"],
                                  env=_env(data, prefect_api_url), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
        seen: list[str] = []
        try:
            _wait_for(queued, "waiting up to 300 s for", seen)
        except BaseException:
            _kill(queued)
            raise
    out, _ = queued.communicate(timeout=600)  # the lock is free: it runs to the end
    assert queued.returncode == 0 and "after DRM" in out, "".join(seen) + out
    # a reader waits while another process holds the DuckDB file for a batch
    writer = duckdb.connect(str(data / "rap.duckdb"))
    threading.Timer(8.0, writer.close).start()  # the query starts within that, then waits
    query = subprocess.run([RAP, "query", "SELECT count(*) AS n FROM samples"],
                           env=_env(data, prefect_api_url), text=True, capture_output=True,
                           timeout=120)
    assert query.returncode == 0, query.stderr
    assert str(ROWS) in query.stdout
