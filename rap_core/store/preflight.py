"""Checks a command makes before it starts Prefect or loads a model: is the data folder usable,
is the store whole, and is anyone else writing there. Each failure is one StoreError that names
the folder or file, what is wrong and what to do; none costs more than a few milliseconds.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from rap.rap_core.settings import Settings
from rap.rap_core.store import StoreError, check_whole

# folders under the data folder that a run writes into, when they exist
WRITTEN_FOLDERS = ("prefect", "images", "exports", "models")
WRITTEN_FILES = ("rap.duckdb", "rap.duckdb.wal", "rap.lock")
WHAT_TO_DO = "make it writable, or set RAP_DATA_DIR to a folder you can write"


def _reason(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))


def _probe(folder: Path) -> None:
    """Create and remove a file: the only test that holds for every cause (permissions,
    capabilities, a read-only mount, a full disk)."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".rap-write-check-"):
            pass
    except OSError as exc:
        raise StoreError(f"the data folder {folder} is not writable ({_reason(exc)}): rap keeps "
                         f"its store, run lock and Prefect's database there; {WHAT_TO_DO}"
                         ) from exc


def prepare_data_dir(settings: Settings) -> None:
    """The data folder exists (created if need be), and rap can write where runs write."""
    data = settings.data_dir
    if data.exists() and not data.is_dir():
        raise StoreError(f"the data folder {data} is a file, not a folder; set RAP_DATA_DIR to "
                         "a folder")
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the data folder {data} ({_reason(exc)}); "
                         f"{WHAT_TO_DO}") from exc
    _probe(data)
    for name in WRITTEN_FOLDERS:
        folder = data / name
        if folder.is_dir():
            _probe(folder)
    try:
        (data / "prefect").mkdir(exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {data / 'prefect'} ({_reason(exc)}); {WHAT_TO_DO}"
                         ) from exc
    for name in WRITTEN_FILES:
        _openable(data / name, write=True)


def _openable(path: Path, write: bool) -> None:
    if not path.exists():
        return
    try:
        os.close(os.open(path, os.O_RDWR if write else os.O_RDONLY))
    except OSError as exc:
        raise StoreError(f"cannot {'write' if write else 'read'} {path} ({_reason(exc)}); "
                         f"{WHAT_TO_DO}") from exc


def check_store(settings: Settings, write: bool) -> None:
    """The store, if there is one, is readable (writable for a run), whole (every data block
    its tables point to is in the file), and of a schema this rap can use (a run upgrades an
    older one itself)."""
    path = settings.duckdb_path
    if not path.exists():
        if not write:
            raise StoreError(f"no store at {path}: run `rap select` first")
        return
    if not path.is_file():
        raise StoreError(f"the store {path} is not a file; move it away")
    _openable(path, write)
    check_whole(path, write)
