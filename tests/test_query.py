"""`rap query` reads the store and nothing else: one SELECT, no file or database outside it,
no settings, no extensions; a result wanted as a file is written by rap under the export rules."""

import json

import polars as pl
import pytest

from rap.flows import cli
from rap.rap_core.store import open_store


@pytest.fixture(autouse=True)
def keep_env(monkeypatch):
    monkeypatch.setattr(cli, "configure_process_env", lambda data_dir: None)


@pytest.fixture
def store(settings):
    with open_store(settings.duckdb_path) as s:
        s.upsert("samples", pl.DataFrame([
            {"sample_id": f"s{i}", "question": f"q{i}", "answer": "a", "image_paths": [],
             "image_sha256": [], "system": None} for i in range(3)]))
    return settings


def query(*argv):
    return cli.main(["query", *argv])


@pytest.mark.parametrize("statement,words", [
    ("COPY (SELECT 1) TO '{tmp}/copied.csv'", ["read-only", "not COPY"]),
    ("SELECT * FROM read_text('/etc/passwd')", ["reads only the store", "disabled"]),
    ("SELECT * FROM read_csv('/etc/passwd')", ["reads only the store"]),
    ("SELECT * FROM glob('/root/**')", ["reads only the store"]),
    ("SELECT * FROM read_parquet('{tmp}/x.parquet')", ["reads only the store"]),
    ("ATTACH '{tmp}/other.duckdb' AS other", ["not ATTACH"]),
    ("CREATE TEMP TABLE t AS SELECT 1", ["not CREATE"]),
    ("INSTALL httpfs", ["read-only"]),
    ("LOAD httpfs", ["read-only"]),
    ("SET enable_external_access = true", ["not SET"]),
    ("DELETE FROM samples", ["read-only"]),
    ("SELECT 1; SELECT 2", ["exactly one statement; got 2"]),
    ("SELECT 1; DROP TABLE samples", ["exactly one statement"]),
    ("EXPORT DATABASE '{tmp}/dump'", ["read-only"]),
])
def test_every_escape_is_refused(store, tmp_path, capsys, statement, words):
    assert query(statement.format(tmp=tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("rap: error: ") and "Traceback" not in err
    for word in words:
        assert word in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rap_data"]  # nothing written
    assert query("SELECT count(*) AS n FROM samples") == 0  # the store is intact
    assert "3" in capsys.readouterr().out


def test_selects_show_describe_and_a_bounded_preview(store, capsys):
    for statement in ["SELECT sample_id FROM samples ORDER BY 1", "SHOW TABLES",
                      "DESCRIBE samples", "SELECT * FROM funnel"]:
        assert query(statement) == 0, capsys.readouterr().err
    assert query("SELECT range AS i FROM range(100000000)", "--max-rows", "5") == 0
    out = capsys.readouterr().out
    assert "first 5 rows" in out and "--out FILE for all" in out


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json", ".jsonl"])
def test_a_result_as_a_file(store, tmp_path, capsys, suffix):
    out = tmp_path / f"result{suffix}"
    assert query("SELECT sample_id, question FROM samples ORDER BY 1", "--out", str(out)) == 0
    assert "wrote 3 rows" in capsys.readouterr().out
    if suffix == ".json":
        rows = json.loads(out.read_text())
    elif suffix == ".jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    else:
        rows = getattr(pl, f"read_{suffix[1:]}")(out).to_dicts()
    assert [r["sample_id"] for r in rows] == ["s0", "s1", "s2"]
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["format"] == "query" and manifest["rows"] == 3 and "samples" in manifest["sql"]


def test_a_result_file_follows_the_export_rules(store, tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert query("SELECT 1 AS x", "--out", str(out)) == 0
    assert query("SELECT 2 AS x", "--out", str(out)) == 2
    assert "--force" in capsys.readouterr().err
    assert query("SELECT 2 AS x", "--out", str(out), "--force") == 0
    assert pl.read_csv(out)["x"].to_list() == [2]
    mine = tmp_path / "mine.csv"
    mine.write_text("precious\n")
    data = store.data_dir
    for target in [mine, data / "rap.lock", data / "rap.duckdb", data, tmp_path / "r.txt"]:
        assert query("SELECT 1", "--out", str(target), "--force") == 2
        assert "rap: error:" in capsys.readouterr().err
    assert mine.read_text() == "precious\n"
    with open_store(store.duckdb_path, read_only=True) as s:  # still a whole store
        assert s.con.execute("SELECT count(*) FROM samples").fetchone()[0] == 3
