"""`rap export`: write a stored selection for a trainer, or check a trainer file.

    rap export --format verl --out selected.parquet        # the latest run
    rap export --run 20261127-214003-80b370 --format openrlhf --out sel/selected.jsonl
    rap export --check selected.parquet --format verl       # each violation with its row

An existing --out is refused unless --force, and even then only a previous rap export of the
same format is replaced (rap_core/io/outputs.py). The default place, rap_data/exports/<run>/, is
rap's own: the same run's export of the same format there is rewritten without --force.
"""

from __future__ import annotations

from pathlib import Path

from rap.rap_core.io.export import claim_export, write_export
from rap.rap_core.io.export_check import check_export
from rap.rap_core.settings import Settings
from rap.rap_core.store import open_store

DEFAULT_NAMES = {"easyr1": "easyr1.parquet", "verl": "verl.parquet",
                 "openrlhf": "openrlhf.jsonl", "hf": "hf"}


def export_run(settings: Settings, run_id: str | None, fmt: str, out: str | None,
               data_source: str | None = None, say=print, force: bool = False) -> dict:
    """Export one selection run; the manifest goes beside the file and to its MLflow run."""
    with open_store(settings.duckdb_path, read_only=True) as store:
        run = store.selection_run(run_id, "export")
        default = settings.exports_dir / run.run_id / DEFAULT_NAMES[fmt]
        target = Path(out).expanduser() if out else default
        claim_export(fmt, target, settings.data_dir, force=force,
                     replaceable=_same_run_at(default, target, run.run_id))  # before reading
        selected = store.query("queries/selected_rows", run_id=run.run_id)
    manifest = write_export(selected, fmt, target, run.run_id, run.pool_id,
                            settings.data_dir, data_source, force=force,
                            replaceable=_same_run_at(default, target, run.run_id))
    say(f"exported {manifest['rows']} samples of run {run.run_id} as {fmt}: "
        f"{manifest['path']}\n  manifest {manifest['manifest_path']}")
    if run.mlflow_run_id:
        from rap.rap_core.tracking import log_export
        try:
            log_export(settings, run.mlflow_run_id, manifest)
            say(f"  logged to MLflow run {run.mlflow_run_id}")
        except Exception as exc:  # the file is written; tracking is a record of it
            say(f"  MLflow logging failed ({exc}); the export itself is complete")
    return manifest


def _same_run_at(default: Path, target: Path, run_id: str):
    """At its default place, the same run's earlier export may be rewritten without --force."""
    if target.absolute() != default.absolute():
        return None
    return lambda previous: previous.get("selection_run") == run_id


def check_file(path: str, fmt: str, say=print) -> int:
    """Print every violation; 0 when the file follows fmt's rules, 1 otherwise."""
    violations = check_export(Path(path), fmt)
    for violation in violations:
        say(str(violation))
    if violations:
        rows = {v.row for v in violations if v.row is not None}
        say(f"{len(violations)} violation(s) of the {fmt} rules"
            + (f" in {len(rows)} row(s)" if rows else ""))
        return 1
    say(f"OK: {path} follows the {fmt} rules")
    return 0
