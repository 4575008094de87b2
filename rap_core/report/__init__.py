"""A selection run's report page (page.py: one self-contained HTML file from the store), and
where it is written: <data folder>/reports/<run>.html unless --out names another file, with
a manifest beside it, by the same rules as every rap output (rap_core/io/outputs.py)."""

from __future__ import annotations

import time
from pathlib import Path

from rap.rap_core.io.outputs import claim, finish, manifest_record, writing
from rap.rap_core.report.page import GENERATOR, compare_report, run_report
from rap.rap_core.settings import Settings
from rap.rap_core.store import open_store

__all__ = ["GENERATOR", "write_report", "write_compare_report", "write_sweep_report"]


def _write(html: str, out: Path, settings: Settings, force: bool, replaceable,
           **fields) -> dict:
    target = claim(out, "report", settings.data_dir, force=force, replaceable=replaceable,
                   what="report")
    with writing(target):
        tmp = target.temp_file(target.out)
        tmp.write_text(html, encoding="utf-8")
        files = [target.place(tmp, target.out)]
        return finish(target, manifest_record(target, files, **fields))


def write_report(settings: Settings, run_id: str | None = None, out: Path | None = None,
                 per_reason: int = 8, seed: int = 0, force: bool = False) -> dict:
    """Write a run's page (the latest run when run_id is None); returns its manifest with
    `seconds` and `bytes`. Its default place is rewritten for the same run without --force."""
    start = time.perf_counter()
    with open_store(settings.duckdb_path, read_only=True) as store:
        html, figures = run_report(store, run_id, per_reason, seed)
    run = figures["run_id"]
    path = Path(out).expanduser() if out else settings.reports_dir / f"{run}.html"
    manifest = _write(html, path, settings, force,
                      (lambda previous: previous.get("run_id") == run) if out is None else None,
                      run_id=run, per_reason=per_reason, seed=seed, cards=figures["cards"])
    return {**manifest, "seconds": round(time.perf_counter() - start, 3),
            "bytes": len(html.encode())}


def write_compare_report(settings: Settings, run_a: str, run_b: str, out: Path,
                         per_group: int = 8, seed: int = 0, force: bool = False) -> dict:
    """Write the page of two runs side by side to out; returns its manifest."""
    with open_store(settings.duckdb_path, read_only=True) as store:
        html, figures = compare_report(store, run_a, run_b, per_group, seed)
    return _write(html, Path(out).expanduser(), settings, force, None, runs=[run_a, run_b],
                  per_group=per_group, seed=seed, cards=figures["cards"])


def write_sweep_report(settings: Settings, found, out: str | Path, force: bool = False) -> dict:
    """Write a sweep's page (rap_core/report/sweep_page.py) to out; returns its manifest."""
    from rap.rap_core.report.sweep_page import sweep_page
    return _write(sweep_page(found), Path(out).expanduser(), settings, force, None,
                  run_id=found.run_id, points=found.table.height)
