"""The error types more than one room raises or catches, in one place (no import cycles):
each is one clear line for the user; the command line turns them into `rap: error: ...`."""

from __future__ import annotations

from pathlib import Path


class EngineConfigError(RuntimeError):
    """The engine itself is misconfigured: fail the run, do not blame samples."""


class ModelLoadError(ValueError):
    """The model folder cannot be used by this project."""


class StoreError(RuntimeError):
    """The store cannot be opened or used as asked."""


class StoreDamaged(StoreError):
    """The store file is damaged (cut short, overwritten, unreadable blocks)."""

    def __init__(self, path: Path, detail: str):
        super().__init__(
            f"the store {path} is damaged: {detail}. Restore it from a backup, or move it "
            f"aside (mv {path} {path}.damaged) and run `rap select` again to recompute its "
            "facts")


class StoreBusy(StoreError):
    """Another run is writing to this data folder."""


class ThresholdError(ValueError):
    """Thresholds under which no row could pass (a score cannot reach them)."""


class QueryRefused(ValueError):
    """The statement is not one read-only SELECT, or reaches outside the store."""


class OutputError(ValueError):
    """An output cannot be written where, or as, asked."""


class PoolReadError(ValueError):
    """The pool as a whole cannot be read (missing file, unknown format, missing column)."""


class RunnerError(RuntimeError):
    """The Ray runner cannot be used (extra not installed, cluster unreachable)."""


class SweepError(ValueError):
    """A threshold grid that cannot be swept (one line: what and which flag)."""
