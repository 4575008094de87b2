"""The DuckDB store (db.py) and what guards it: the run lock, the checks before a command
starts (preflight), the read-only query connection and the comparison of two runs."""

from rap.rap_core.errors import StoreDamaged, StoreError
from rap.rap_core.store.db import (LOCK_WAIT_S, MIGRATIONS, SCHEMA_VERSION, SQL_DIR, Store,
                               check_whole, damage_detail, damage_in, open_store, sql)
from rap.rap_core.store.records import SelectionRun

__all__ = ["LOCK_WAIT_S", "MIGRATIONS", "SCHEMA_VERSION", "SQL_DIR", "SelectionRun", "Store", "StoreDamaged",
           "StoreError", "check_whole", "damage_detail", "damage_in", "open_store", "sql"]
