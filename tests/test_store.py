"""The DuckDB store: migrations and upserts are idempotent; read-only means read-only."""

import duckdb
import polars as pl
import pytest

from rap.rap_core.store import SQL_DIR, StoreError, open_store

FRAMES = {
    "samples": pl.DataFrame({"sample_id": ["a", "b"], "question": ["q1", "q2"],
                             "answer": ["x", "y"], "image_paths": [["/i.png"], []],
                             "image_sha256": [["h"], []]}),
    "pool_rows": pl.DataFrame({"pool_id": ["p", "p"], "source_row": [0, 1],
                               "sample_id": ["a", None], "row_status": ["ok", "error"],
                               "error_code": [None, "empty_answer"],
                               "error_message": [None, "answer is empty"]}),
    "rollouts": pl.DataFrame({"sample_id": ["a", "a"], "model_key": ["m", "m"],
                              "settings_key": ["s", "s"], "condition": ["mm", "text"],
                              "rollout_index": [0, 0], "response": ["answer: x", "no"],
                              "token_ids": [[1, 2], [3]], "extracted_answer": ["x", None],
                              "correct": [True, False]}),
    "attention_stats": pl.DataFrame({"sample_id": ["a"], "model_key": ["m"], "ace_key": ["k"],
                                     "rollout_index": [0], "response_len": [3],
                                     "col_log_sums": [[-3.0, -2.0, -0.5]]}),
    "inference_errors": pl.DataFrame({"sample_id": ["b"], "model_key": ["m"],
                                      "fact_key": ["s"], "stage": ["multimodal"],
                                      "error_code": ["prompt_too_long"],
                                      "error_message": ["too long"]}),
    "pools": pl.DataFrame({"pool_id": ["p"], "source": ["f.jsonl"], "n_rows": [2],
                           "n_samples": [1]}),
    "models": pl.DataFrame({"model_key": ["m"], "model_path": ["/m"],
                            "weights_fingerprint": ["w"], "dtype": ["float32"],
                            "template_version": ["t"], "system_prompt": [None]},
                           schema_overrides={"system_prompt": pl.String}),
    "decisions": pl.DataFrame({"run_id": ["r", "r"], "source_row": [0, 1],
                               "sample_id": ["a", None], "state": ["selected", "error"],
                               "stage": ["ace", "ingest"],
                               "reason": ["passed_cde_ace", "empty_answer"],
                               "detail": [None, "answer is empty"],
                               "passed": [["cde", "ace"], []], "acc_mm": [1.0, None],
                               "acc_text": [0.0, None], "d": [1.0, None], "psi": [0.01, None],
                               "difficulty": [0.0, None]}),
}


def table_state(store, table):
    exclude = " EXCLUDE (first_seen)" if table == "samples" else ""
    return sorted(store.con.sql(f"SELECT *{exclude} FROM {table}").fetchall(), key=str)


@pytest.mark.parametrize("table", sorted(FRAMES))
def test_each_write_twice_changes_nothing(tmp_path, table):
    with open_store(tmp_path / "s.duckdb") as store:
        store.upsert(table, FRAMES[table])
        once = table_state(store, table)
        store.upsert(table, FRAMES[table])
        assert table_state(store, table) == once
        assert len(once) == FRAMES[table].height


def test_migrate_twice_keeps_data(tmp_path):
    path = tmp_path / "s.duckdb"
    with open_store(path) as store:
        store.upsert("samples", FRAMES["samples"])
    with open_store(path) as store:
        assert store.con.sql("SELECT count(*) FROM samples").fetchall()[0][0] == 2


def test_schema_version_mismatch_is_refused(tmp_path):
    path = tmp_path / "s.duckdb"
    with open_store(path) as store:
        store.con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    for read_only in (False, True):
        with pytest.raises(StoreError, match="schema version 999"):
            with open_store(path, read_only=read_only):
                pass


V2_LAYOUT = [  # schema 3 back to schema 2: one column per stage, no method
    "ALTER TABLE decisions ADD COLUMN passed_cde BOOLEAN",
    "ALTER TABLE decisions ADD COLUMN passed_ace BOOLEAN",
    "UPDATE decisions SET passed_cde = list_contains(passed, 'cde'), "
    "passed_ace = list_contains(passed, 'ace')",
    "ALTER TABLE decisions DROP COLUMN passed",
    "ALTER TABLE selection_runs DROP COLUMN method",
    "ALTER TABLE selection_runs DROP COLUMN stages",
    "ALTER TABLE selection_runs DROP COLUMN rebalancer",
    # schema 4's engine columns
    "ALTER TABLE models DROP COLUMN engine", "ALTER TABLE models DROP COLUMN served_model",
    "ALTER TABLE rollout_settings DROP COLUMN engine",
    # schema 5's groups
    "ALTER TABLE decisions DROP COLUMN group_name", "DROP TABLE pool_groups",
]


def test_a_schema_1_store_is_upgraded_in_place(tmp_path):
    from rap.rap_core.store import db as store_mod
    path = tmp_path / "s.duckdb"
    with open_store(path) as store:  # written, then taken back to schema 1's columns
        store.upsert("samples", FRAMES["samples"])
        store.upsert("decisions", FRAMES["decisions"])
        for statement in V2_LAYOUT:
            store.con.execute(statement)
        for table, column in [("samples", "system"), ("pool_rows", "source_id"),
                              ("pool_rows", "data_source")]:
            store.con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        store.execute("writes/set_meta", key="schema_version", value="1")
    store_mod._MIGRATED.clear()
    with pytest.raises(StoreError, match="older than 5: run `rap select`"):
        with open_store(path, read_only=True):
            pass
    with open_store(path) as store:
        assert store.stored_version() == "5"
        assert store.con.sql("SELECT count(*), count(system) FROM samples").fetchall() == [(2, 0)]
        columns = {r[0] for r in store.con.sql("DESCRIBE pool_rows").fetchall()}
        assert {"source_id", "data_source"} <= columns
        passed = store.con.sql("SELECT passed FROM decisions ORDER BY source_row").fetchall()
        assert passed == [(["cde", "ace"],), ([],)]  # from passed_cde / passed_ace
        columns = {r[0] for r in store.con.sql("DESCRIBE selection_runs").fetchall()}
        assert {"method", "stages", "rebalancer"} <= columns
        assert {"engine", "served_model"} <= {
            r[0] for r in store.con.sql("DESCRIBE models").fetchall()}
        assert "engine" in {r[0] for r in store.con.sql("DESCRIBE rollout_settings").fetchall()}
        # decisions of runs from before groups are all group (none); the ingest error row
        # could never be selected and counts in no group
        assert store.con.sql('SELECT "group", pool_rows, ratio FROM coverage').fetchall() == [
            ("(none)", 1, 1.0)]
        assert store.con.sql("SELECT count(*) FROM pool_groups").fetchall() == [(0,)]
    with open_store(path, read_only=True) as store:
        assert store.stored_version() == "5"


def test_a_known_sample_keeps_its_first_record(tmp_path):
    with open_store(tmp_path / "s.duckdb") as store:
        store.upsert("samples", FRAMES["samples"])
        moved = FRAMES["samples"].with_columns(image_paths=pl.lit(["/elsewhere.png"]))
        store.upsert("samples", moved)
        paths = store.con.sql("SELECT image_paths FROM samples ORDER BY sample_id").fetchall()
    assert paths == [(["/i.png"],), ([],)]


def test_read_only_store_refuses_writes(tmp_path):
    path = tmp_path / "s.duckdb"
    with open_store(path):
        pass
    with open_store(path, read_only=True) as store:
        with pytest.raises(duckdb.Error):
            store.con.execute("DELETE FROM samples")


def test_read_only_needs_an_existing_store(tmp_path):
    with pytest.raises(StoreError, match="rap select"):
        with open_store(tmp_path / "none.duckdb", read_only=True):
            pass


def test_a_failed_transaction_leaves_nothing(tmp_path):
    with open_store(tmp_path / "s.duckdb") as store:
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.upsert("samples", FRAMES["samples"])
                raise RuntimeError("crash between writes")
        assert store.con.sql("SELECT count(*) FROM samples").fetchall()[0][0] == 0


def test_every_sql_file_is_one_statement_with_a_comment():
    for path in SQL_DIR.rglob("*.sql"):
        text = path.read_text()
        assert text.startswith("--"), path
        body = "\n".join(ln for ln in text.splitlines() if not ln.startswith("--"))
        assert body.strip().rstrip(";").count(";") == 0, path


def test_a_store_recreated_at_the_same_path_is_set_up_again(tmp_path):
    path = tmp_path / "s.duckdb"
    with open_store(path) as store:
        store.upsert("samples", FRAMES["samples"])
    path.unlink()
    with open_store(path) as store:
        assert store.con.sql("SELECT count(*) FROM samples").fetchall()[0][0] == 0
