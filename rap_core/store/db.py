"""The DuckDB store: schema, views, and named statements from sql/.

Every statement lives in sql/<kind>/<name>.sql and is run with bound parameters. Writes are
upserts keyed by each table's primary key, so writing the same facts twice changes nothing.
DuckDB allows one writing process: open the store for writing only in the process that
owns it (the flow), briefly, and read-only everywhere else.
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl
from rap.rap_core.errors import StoreDamaged, StoreError
from rap.rap_core.store.records import SelectionRun

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
SCHEMA_VERSION = "5"
MIGRATIONS = {"1": ("2", "migrations/v1_to_v2"),  # from: (to, folder of statements)
              "2": ("3", "migrations/v2_to_v3"), "3": ("4", "migrations/v3_to_v4"),
              "4": ("5", "migrations/v4_to_v5")}
_MIGRATED: set[Path] = set()  # files this process has already brought up to date


# DuckDB's file: three 4 KiB headers, then blocks; block n starts at 12 KiB + n * block size.
_HEADER_BYTES = 3 * 4096
_DAMAGE_SIGNS = ("could not read enough bytes", "checksum", "corrupt", "not a valid duckdb",
                 "invalidated", "serialization error")


def damage_detail(exc: BaseException) -> str:
    """What a DuckDB error that means damage says, with what it most likely means."""
    text = str(exc).strip().splitlines()[0]
    if "could not read enough bytes" in text.lower():
        return f"it is shorter than its contents say, so it was cut short ({text})"
    return text


def damage_in(exc: BaseException) -> bool:
    """Whether a DuckDB error says the file itself cannot be read."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and any(sign in text for sign in _DAMAGE_SIGNS)


@functools.cache
def sql(name: str) -> str:
    """The text of sql/<name>.sql, e.g. sql('queries/missing_rollouts')."""
    return (SQL_DIR / f"{name}.sql").read_text()


def _statements(kind: str) -> list[str]:
    return [sql(f"{kind}/{p.stem}") for p in sorted((SQL_DIR / kind).glob("*.sql"))]


class Store:
    """One connection to the DuckDB file."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    def migrate(self) -> None:
        """Create tables (idempotent), upgrade an older file in place, then macros and views."""
        for statement in _statements("schema"):
            self.con.execute(statement)
        found = self.stored_version()
        if found is not None and found != SCHEMA_VERSION:
            self._upgrade(found)
        for statement in _statements("macros") + _statements("views"):
            self.con.execute(statement)
        if found is None:
            self.execute("writes/set_meta", key="schema_version", value=SCHEMA_VERSION)

    def _upgrade(self, found: str) -> None:
        """Step an older store up to SCHEMA_VERSION, each step in one transaction."""
        version = found
        while version != SCHEMA_VERSION:
            if version not in MIGRATIONS:
                self.check_version(version)
            target, name = MIGRATIONS[version]
            with self.transaction():
                for statement in _statements(name):
                    self.con.execute(statement)
                self.execute("writes/set_meta", key="schema_version", value=target)
            version = target

    def stored_version(self) -> str | None:
        """The schema version stamped in the file; None when it has none (a new file)."""
        try:
            found = self.con.execute(sql("queries/schema_version")).fetchall()
        except duckdb.CatalogException:
            return None
        return found[0][0] if found else None

    def check_version(self, found: str | None = None) -> None:
        """Refuse a store written by another schema version rather than misread it;
        `found` is the stamped version when the caller has just read it."""
        found = found or self.stored_version()
        if found is None:
            raise StoreError("not a rap store (no schema version)")
        if found in MIGRATIONS:
            raise StoreError(f"store schema version {found} is older than {SCHEMA_VERSION}: "
                             "run `rap select` or `rap retune` once to upgrade it in place")
        if found != SCHEMA_VERSION:
            raise StoreError(f"store schema version {found} is not {SCHEMA_VERSION}; "
                             "this version of rap cannot use it")

    def missing_blocks(self, path: Path) -> str | None:
        """Whether the file lacks data blocks its tables point to (a file cut short does),
        read from the tables' storage metadata without reading the data itself."""
        size = Path(path).stat().st_size
        block_size, used = self.con.execute(sql("queries/block_usage")).fetchone()
        held = max(size - _HEADER_BYTES, 0) // block_size
        if used > held:  # indexes and metadata too; blocks DuckDB freed may lie beyond the end
            return (f"the file holds {held} blocks of {block_size:,} bytes but the store uses "
                    f"{used}; it was cut short (an interrupted copy, a full disk?)")
        for (table,) in self.con.execute(sql("queries/store_tables")).fetchall():
            last = self.con.execute(sql("queries/last_data_block"),
                                    {"table_name": table}).fetchone()[0]
            needed = _HEADER_BYTES + (last + 1) * block_size if last is not None else 0
            if needed > size:
                return (f"the file is {size:,} bytes but table {table} has data up to byte "
                        f"{needed:,}; it was cut short (an interrupted copy, a full disk?)")
        return None

    def selection_run(self, run_id: str | None, purpose: str) -> SelectionRun:
        """One selection run's record (the latest when run_id is None), or a StoreError
        saying what is missing for `purpose` ('retune', 'export', ...)."""
        found = self.query("queries/run_by_id", run_id=run_id).to_dicts()
        if not found:
            raise StoreError(f"no selection run {run_id!r} to {purpose}" if run_id
                             else f"no selection run to {purpose}: run `rap select` first")
        return SelectionRun.model_validate(found[0])

    def query(self, name: str, **params) -> pl.DataFrame:
        return self.con.sql(sql(name), params=params).pl()

    def execute(self, name: str, **params) -> None:
        self.con.execute(sql(name), params)

    def upsert(self, table: str, frame: pl.DataFrame) -> int:
        """Insert-or-replace frame's rows into table; returns the row count."""
        if frame.is_empty():
            return 0
        self.con.register("incoming", frame.to_arrow())
        try:
            self.con.execute(sql(f"writes/upsert_{table}"))
        finally:
            self.con.unregister("incoming")
        return frame.height

    @contextmanager
    def transaction(self):
        """All writes inside commit together or not at all."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self
        except BaseException:
            try:
                self.con.execute("ROLLBACK")
            except duckdb.Error:
                pass  # the error that aborted the transaction is the one to report
            raise
        self.con.execute("COMMIT")


# DuckDB lets one process hold the file at a time; runs hold it for one batch, so others wait.
LOCK_WAIT_S = {True: 15.0, False: 300.0}  # read-only, writer


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + LOCK_WAIT_S[read_only]
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if damage_in(exc):
                raise StoreDamaged(path, damage_detail(exc)) from exc
            if "lock" not in str(exc).lower():
                raise StoreError(f"cannot open {path}: {exc}") from exc
            if time.monotonic() >= deadline:
                from rap.rap_core.store.lock import describe, holder
                raise StoreError(
                    f"{path} is in use by another process ({describe(holder(path.parent))} "
                    f"holds the run lock) and stayed so for {LOCK_WAIT_S[read_only]:.0f} s; "
                    "runs release it between batches, so try again") from exc
            time.sleep(0.2)


@contextmanager
def _reporting_damage(path: Path):
    """A DuckDB error that says the file cannot be read becomes StoreDamaged."""
    try:
        yield
    except duckdb.Error as exc:
        if damage_in(exc):
            raise StoreDamaged(path, damage_detail(exc)) from exc
        raise


def check_whole(path: Path, write: bool) -> None:
    """Refuse, before a command starts, a store that is damaged or that this rap cannot use:
    one from a newer rap, or not a rap store; for reading, also an older one (a run upgrades
    it in place)."""
    con = _connect(path, read_only=True)
    try:
        with _reporting_damage(path):
            store = Store(con)
            found = store.stored_version()
            if not (write and found is None or write and found in MIGRATIONS):
                store.check_version(found)
            detail = store.missing_blocks(path)
    finally:
        con.close()
    if detail:
        raise StoreDamaged(path, detail)


@contextmanager
def open_store(path: Path, read_only: bool = False):
    """Open the store; writers migrate it first."""
    path = Path(path)
    if read_only and not path.exists():
        raise StoreError(f"no store at {path}: run `rap select` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _connect(path, read_only)
    try:
        with _reporting_damage(path):
            store = Store(con)
            # DDL once per process and file; a file recreated since (unstamped) is set up again
            found = store.stored_version() if path.resolve() in _MIGRATED else None
            if read_only or found is not None:
                store.check_version(found)
            else:
                store.migrate()
                _MIGRATED.add(path.resolve())
            yield store
    finally:
        con.close()
