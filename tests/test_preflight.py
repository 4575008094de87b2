"""A broken data folder is diagnosed before Prefect starts: an unwritable folder, a damaged
store, a store from a newer rap, another run holding the lock. One line, exit 2, no traceback."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from rap.flows import cli
from rap.rap_core.store import open_store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def keep_env(monkeypatch):
    monkeypatch.setattr(cli, "configure_process_env", lambda data_dir: None)


@pytest.fixture
def no_flow(monkeypatch):
    """Any attempt to start the flow (and so Prefect) fails the test."""
    from rap.flows import rap as flow_module

    def refuse(params):
        raise AssertionError("the flow was started")
    monkeypatch.setattr(flow_module, "run_flow", refuse)


def unprivileged(argv):
    """argv as a process that file permissions apply to, also when the tests run as root."""
    if os.geteuid() != 0:
        return argv
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv (util-linux) to drop capabilities")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *argv]


def rap(data_dir, *argv):
    """`rap ...` in its own process; (exit code, stderr, seconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(RAP_DATA_DIR=str(data_dir), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    start = time.monotonic()
    done = subprocess.run(unprivileged([sys.executable, "-m", "rap.flows.cli", *argv]), cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr, time.monotonic() - start


def one_line(err: str, *words):
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("rap: error: "), err
    for word in words:
        assert word in err, err


def make_store(settings, rows=2000):
    with open_store(settings.duckdb_path) as s:
        s.upsert("samples", pl.DataFrame([
            {"sample_id": f"s{i}", "question": f"question {i} " * 20, "answer": "a",
             "image_paths": [], "image_sha256": [], "system": None} for i in range(rows)]))


def test_an_unwritable_data_folder_with_a_store(settings, tmp_path):
    make_store(settings)
    settings.data_dir.chmod(0o555)
    try:
        code, err, seconds = rap(settings.data_dir, "select", "--limit", "2")
        assert code == 2 and seconds < 60  # before: ~3 minutes, then 1,700 lines
        one_line(err, str(settings.data_dir), "not writable", "RAP_DATA_DIR")
        code, err, _ = rap(settings.data_dir, "query", "SELECT count(*) FROM samples")
        assert code == 0, err  # reading needs no write access
    finally:
        settings.data_dir.chmod(0o755)


def test_an_empty_unwritable_folder(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    try:
        for target, argv, words in [
                (folder, ["select"], ["not writable"]),
                (folder, ["query", "SELECT 1"], ["no store", "run `rap select` first"]),
                (folder / "inside", ["select"], ["cannot create the data folder"])]:
            code, err, _ = rap(target, *argv)
            assert code == 2
            one_line(err, str(target), *words)
    finally:
        folder.chmod(0o755)


def test_the_data_folder_is_a_file(tmp_path, monkeypatch, capsys, no_flow):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("RAP_DATA_DIR", str(tmp_path / "file"))
    assert cli.main(["select"]) == 2
    one_line(capsys.readouterr().err, "is a file, not a folder")


def cut_in_half(path: Path):
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)


@pytest.mark.parametrize("argv", [["select"], ["retune"], ["query", "SELECT 1"], ["runs"],
                                  ["export", "--format", "easyr1"], ["track"]])
def test_a_store_cut_in_half_is_damaged_for_every_command(settings, capsys, argv, no_flow):
    make_store(settings)
    cut_in_half(settings.duckdb_path)
    assert cli.main(argv) == 2
    one_line(capsys.readouterr().err, "is damaged", "cut short", str(settings.duckdb_path),
             "mv ")


def test_a_store_missing_only_its_last_block_is_damaged(settings, capsys):
    make_store(settings, rows=20000)
    with open(settings.duckdb_path, "r+b") as f:
        f.truncate(settings.duckdb_path.stat().st_size - 262144)
    assert cli.main(["runs"]) == 2  # reads none of the samples, still refused
    one_line(capsys.readouterr().err, "is damaged", "cut short")


def test_a_store_duckdb_shrank_itself_is_whole(settings, capsys):
    """After a delete and a checkpoint DuckDB cuts free blocks off the end of the file, so its
    header counts more blocks than the file holds: that is not damage."""
    from rap.rap_core.store.preflight import check_store
    for batch in range(4):
        with open_store(settings.duckdb_path) as s:
            s.upsert("samples", pl.DataFrame([
                {"sample_id": f"s{batch}-{i}", "question": "q" * 300, "answer": "a",
                 "image_paths": [], "image_sha256": [], "system": None} for i in range(3000)]))
    with open_store(settings.duckdb_path) as s:
        s.con.execute("DELETE FROM samples WHERE sample_id >= 's2'")
        s.con.execute("CHECKPOINT")
    check_store(settings, write=True)
    assert cli.main(["query", "SELECT count(*) FROM samples"]) == 0
    assert "6000" in capsys.readouterr().out


def test_unreadable_blocks_are_reported_as_damage(settings, capsys):
    make_store(settings, rows=20000)
    size = settings.duckdb_path.stat().st_size
    with open(settings.duckdb_path, "r+b") as f:  # the header stays whole; data does not
        f.seek(size * 3 // 10)
        f.write(b"\0" * (size * 4 // 10))
    code = cli.main(["query", "SELECT sum(length(question)) FROM samples"])
    err = capsys.readouterr().err
    assert code == 2
    one_line(err, "is damaged")


def test_a_store_from_a_newer_rap_is_refused_before_prefect(settings, capsys, no_flow):
    make_store(settings, rows=1)
    with open_store(settings.duckdb_path) as s:
        s.execute("writes/set_meta", key="schema_version", value="99")
    assert cli.main(["select"]) == 2
    one_line(capsys.readouterr().err, "schema version 99")


def test_a_second_run_is_refused_at_once_naming_the_holder(settings, capsys, no_flow):
    settings.data_dir.mkdir(parents=True)
    code = ("import sys, time\nfrom rap_core.store.lock import RunLock\n"
            f"with RunLock({str(settings.data_dir)!r}):\n"
            "    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        assert cli.main(["select"]) == 2
        assert time.monotonic() - start < 5
        one_line(capsys.readouterr().err, f"pid {holder.pid}", "another rap run",
                 "--wait-for-lock")
    finally:
        holder.kill()
        holder.wait()


def test_a_retune_with_no_run_to_retune_stops_before_prefect(tmp_path, monkeypatch, capsys,
                                                             no_flow):
    monkeypatch.setenv("RAP_DATA_DIR", str(tmp_path / "fresh"))
    assert cli.main(["retune"]) == 2
    one_line(capsys.readouterr().err, "no selection run to retune", "run `rap select` first")
    assert cli.main(["retune", "--run", "20990101-000000-abcdef"]) == 2
    one_line(capsys.readouterr().err, "no selection run '20990101-000000-abcdef' to retune")


@pytest.mark.parametrize("argv, words", [
    (["select", "--lambda-c", "2"], ["--lambda-c 2 lets no row pass CDE", "[-1, 1]"]),
    (["select", "--lambda-c", "1"], ["--lambda-c 1 lets no row pass CDE"]),
    (["retune", "--lambda-c", "1.5"], ["--lambda-c 1.5 lets no row pass CDE"]),
    (["select", "--method", "pass_band", "--pass-band-low", "0.8", "--pass-band-high", "0.5"],
     ["--pass-band-low 0.8 and --pass-band-high 0.5 let no row pass"]),
    (["retune", "--method", "pass_band", "--pass-band-low", "1"], ["let no row pass"])])
def test_thresholds_no_score_can_pass_are_refused_before_anything_starts(
        argv, words, tmp_path, monkeypatch, capsys, no_flow):
    monkeypatch.setenv("RAP_DATA_DIR", str(tmp_path / "data"))
    assert cli.main(argv) == 2
    one_line(capsys.readouterr().err, *words)


def test_thresholds_a_score_can_pass_are_kept(tmp_path, monkeypatch, no_flow):
    """λc below 1 (even below -1: keep every row) and a band with room in it start the run
    (no capsys: the flow's module, imported here, must not log into a closed capture)."""
    monkeypatch.setenv("RAP_DATA_DIR", str(tmp_path / "data"))
    for argv in (["select", "--lambda-c", "0.99"], ["select", "--lambda-c", "-2"],
                 ["select", "--method", "pass_band", "--pass-band-low", "0.2"]):
        with pytest.raises(AssertionError, match="the flow was started"):
            cli.main(argv)
