"""`rap query`: one user-written SELECT over the store, which can read the store and nothing else.

The connection is read-only, with DuckDB's external access switched off and its configuration
locked (no COPY TO, read_text, read_csv, glob, ATTACH, INSTALL or LOAD), and the text must be
exactly one SELECT (SHOW, DESCRIBE and SUMMARIZE are SELECTs too). A result wanted as a file
is written by rap itself (`--out`), under the same rules as exports (rap_core/io/outputs.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl

from rap.rap_core.io.outputs import OutputError, claim, finish, manifest_record, writing
from rap.rap_core.errors import QueryRefused

LOCKDOWN = ("SET enable_external_access = false", "SET autoinstall_known_extensions = false",
            "SET autoload_known_extensions = false", "SET lock_configuration = true")
RESULT_SUFFIXES = (".csv", ".parquet", ".json", ".jsonl")


def statement_of(text: str) -> str:
    """The one SELECT in text, or QueryRefused saying why not."""
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise QueryRefused(f"cannot parse the statement: {exc}") from exc
    if len(statements) != 1:
        raise QueryRefused(f"rap query runs exactly one statement; got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryRefused(f"rap query is read-only: it runs one SELECT, not "
                           f"{kind.name.replace('_', ' ')}; to keep a result as a file, "
                           "use rap query \"SELECT ...\" --out result.csv|parquet|json")
    return statements[0].query


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """After this the connection reaches no file but its own database."""
    for setting in LOCKDOWN:
        con.execute(setting)


def relation(con: duckdb.DuckDBPyConnection, text: str) -> duckdb.DuckDBPyRelation:
    statement = statement_of(text)
    try:
        return con.sql(statement)
    except duckdb.PermissionException as exc:
        raise QueryRefused(f"rap query reads only the store ({_first_line(exc)}); to keep a "
                           "result as a file, use --out result.csv|parquet|json") from exc


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def preview(con: duckdb.DuckDBPyConnection, text: str, max_rows: int) -> tuple[pl.DataFrame, bool]:
    """At most max_rows rows of the result (and whether there were more): a careless
    `SELECT * FROM rollouts` must not fetch the whole table to print fifty rows."""
    frame = relation(con, text).limit(max_rows + 1).pl()
    return frame.head(max_rows), frame.height > max_rows


def _writer(path: Path, suffix: str, schema):
    if suffix == ".parquet":
        import pyarrow.parquet as pq
        return pq.ParquetWriter(path, schema)
    if suffix == ".csv":
        import pyarrow.csv as pcsv
        return pcsv.CSVWriter(path, schema)
    return _JsonWriter(path, array=suffix == ".json")


class _JsonWriter:
    """JSON lines, or one JSON array (.json), written batch by batch."""

    def __init__(self, path: Path, array: bool):
        self.file, self.array, self.first = open(path, "w", encoding="utf-8"), array, True
        if array:
            self.file.write("[")

    def write_batch(self, batch) -> None:
        for row in batch.to_pylist():
            line = json.dumps(row, ensure_ascii=False, default=str)
            if self.array:
                line = ("\n" if self.first else ",\n") + line
            else:
                line += "\n"
            self.file.write(line)
            self.first = False

    def close(self) -> None:
        if self.array:
            self.file.write("\n]\n")
        self.file.close()


def write_result(con: duckdb.DuckDBPyConnection, text: str, out: Path, data_dir: Path,
                 force: bool = False, kind: str = "query", what: str = "a query result",
                 **fields) -> dict:
    """The whole result as out (.csv, .parquet, .json or .jsonl), streamed in batches, with a
    manifest (kind, the rows, the statement and `fields`); returns the manifest."""
    out = Path(out).expanduser()
    if out.suffix.lower() not in RESULT_SUFFIXES:
        raise OutputError(f"--out {out}: write the result as {', '.join(RESULT_SUFFIXES)}")
    target = claim(out, kind, data_dir, force=force, what=what)
    reader = relation(con, text).to_arrow_reader(batch_size=65536)
    rows = 0
    with writing(target):
        tmp = target.temp_file(out)
        writer = _writer(tmp, out.suffix.lower(), reader.schema)
        try:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        finally:
            writer.close()
        files = [target.place(tmp, target.out)]
        return finish(target, manifest_record(target, files, rows=rows, sql=text, **fields))
