"""Benchmark 9: the report page of a large run. A store of N synthetic samples (default
100,000, each with a real 224x224 image, 5 + 5 rollouts and attention statistics) is
selected as `rap retune` would, then `rap report` writes its page: size and write time, for
the default 8 cards per reason and for 50. Only the sampled cards carry thumbnails, so the
page's size follows the number of reasons, not of rows.

    .venv/bin/python bench/report_size.py [--n 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import machine, table
from retune import SYNTHETIC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rap-bench-"))
    import polars as pl
    from PIL import Image

    from rap.rap_core.estimators import plan
    from rap.rap_core.estimators.select import DECISION_COLUMNS, select_rows
    from rap.rap_core.estimators.stored import selection_inputs
    from rap.rap_core.keys import FactKeys
    from rap.rap_core.params import RapParams, Thresholds
    from rap.rap_core.report import write_report
    from rap.rap_core.settings import Settings
    from rap.rap_core.store import SelectionRun, open_store
    image = work / "image.png"
    Image.effect_mandelbrot((224, 224), (-2, -1.5, 1, 1.5), 100).convert("RGB").save(image)
    settings = Settings(data_dir=work / "data", mlflow_tracking_uri=f"sqlite:///{work}/m.db")
    settings.data_dir.mkdir(parents=True)
    start = time.perf_counter()
    with open_store(settings.duckdb_path) as store:
        for statement in SYNTHETIC:
            store.con.execute(statement.replace("['x.png']", f"['{image}']"), {"n": args.n})
        th = Thresholds()
        keys = FactKeys(pool_id="P", model_key="M", settings_key="S", ace_key="A")
        decisions = select_rows(selection_inputs(store, plan("rap"), keys, th), plan("rap"), th)
        run = SelectionRun(
            run_id="synthetic", mode="select", method="rap", stages=["cde", "ace"],
            rebalancer="drm", **keys.model_dump(), **th.model_dump(include={
                "lambda_c", "sigma", "lambda_a", "ace_min_run", "ace_direction", "ace_score",
                "drm_require_positive_d"}), drm_k=str(th.drm_k),
            params=RapParams().model_dump_json(), samples_inferred=0,
            samples_stored=args.n, n_rows=args.n,
            n_selected=int((decisions["state"] == "selected").sum()), created_at=datetime.now())
        store.upsert("selection_runs", run.frame())
        store.upsert("decisions", decisions.select(DECISION_COLUMNS).with_columns(
            run_id=pl.lit(run.run_id)))
    fill = time.perf_counter() - start
    rows = []
    for per_reason in (8, 50):
        manifest = write_report(settings, "synthetic", work / f"report-{per_reason}.html",
                                per_reason=per_reason)
        rows.append({"cards per reason": per_reason, "cards": manifest["cards"],
                     "page KB": manifest["bytes"] / 1024, "write s": manifest["seconds"]})
    print(f"machine: {machine()}")
    print(f"{args.n:,} synthetic rows (store filled and selected in {fill:.1f} s), "
          f"{run.n_selected:,} selected")
    print(table(rows))


if __name__ == "__main__":
    main()
