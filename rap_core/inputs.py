"""A run's inputs checked before anything starts (no Prefect, no model loaded): the pool is
there, the model is a checkpoint rap can load, the group column exists. Each failure is one
line (PoolReadError, ModelLoadError, StoreError) that the command line and the flow report
as they are."""

from __future__ import annotations

from pathlib import Path

from rap.rap_core.errors import ModelLoadError, PoolReadError
from rap.rap_core.io.spec import BUILTIN_DATA
from rap.rap_core.params import BUILTIN_MODEL, BUILTIN_RANDOM_MODEL, RapParams


def check_pool(path: str) -> None:
    """The pool file or folder exists (or is the builtin pool)."""
    if path.startswith("builtin:"):
        if path != BUILTIN_DATA:
            raise PoolReadError(f"unknown builtin pool {path!r} (rap has {BUILTIN_DATA})")
        return
    found = Path(path).expanduser()
    if not found.exists():
        raise PoolReadError(f"pool not found: {found}")


def check_model(path: str) -> None:
    """The model is a builtin one, an engine routed by name, or a supported checkpoint
    folder (its config.json read, nothing loaded)."""
    from rap.rap_core.engines import base as engine
    if path.startswith("builtin:"):
        if path not in (BUILTIN_MODEL, BUILTIN_RANDOM_MODEL):
            raise ModelLoadError(f"unknown builtin model {path!r} (rap has {BUILTIN_MODEL} "
                                 f"and {BUILTIN_RANDOM_MODEL})")
        return
    if engine.is_registered(path):
        return
    from rap.rap_core.engines.checkpoints import model_family
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(f"model folder not found: {folder} (--model is a local "
                             "transformers checkpoint folder or a builtin: model)")
    model_family(folder)


def check_thresholds(params: RapParams) -> None:
    """Thresholds under which no row could pass one of the method's filters (a score that
    cannot reach them) are refused, one line. A retune checks the filters whose thresholds it
    was given (the others are the base run's)."""
    from rap.rap_core.errors import ThresholdError
    from rap.rap_core.estimators import FILTERS, METHODS
    given = params.thresholds.model_fields_set
    for name in METHODS[params.method].filters:
        part = FILTERS[name]
        if params.mode == "retune" and not given & set(part.thresholds.model_fields):
            continue
        why = part.nothing_passes(params.thresholds)
        if why:
            raise ThresholdError(why)


def check_inputs(params: RapParams, duckdb_path: Path | None = None) -> None:
    """Everything a select or retune can be refused for before it starts; the group column
    too when given the store (the command line holds the run lock then)."""
    check_thresholds(params)
    if params.mode == "select":
        check_pool(params.data.path)
        check_model(params.model.path)
    if duckdb_path is not None:
        from rap.rap_core.estimators.stored import check_group_by
        check_group_by(params, duckdb_path)
