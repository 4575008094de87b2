"""Benchmark 5: inference time of the `rap` flow against pool size (default 250, 500, 1,000,
2,000 easy-VQA samples, each on a fresh store): time per sample should stay flat (linear
total), and writing facts to DuckDB should be a small share of it.

    .venv/bin/python bench/scaling.py [--sizes 250 500 1000 2000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import data_folder, flow_bench, machine, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--model", default="builtin:easy-vqa-vlm")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rap-bench-"))
    run_flow, path, _ = flow_bench(args.model, work)
    from rap.rap_core.params import DataSpec, ModelSpec, RapParams, RolloutSettings
    rows = []
    for i, n in enumerate(args.sizes):
        data_folder(work / f"store{i}")
        # another seed per size: a smaller pool's shards are a larger one's first shards,
        # and Prefect would return their cached task results
        params = RapParams(data=DataSpec(limit=n), model=ModelSpec(path=path), track=False,
                           export=False, rollout=RolloutSettings(seed=i + 1))
        summary = run_flow(params)
        phases = summary["inference_phases"].values()
        seconds = summary["inference_s"]
        write_s = sum(p["write_s"] for p in phases)
        engine_s = sum(p["engine_s"] for p in phases)
        rows.append({"samples": n, "inference s": seconds, "ms/sample": 1000 * seconds / n,
                     "engine s": engine_s, "DuckDB write s": write_s,
                     "write share": write_s / seconds})
    print(f"machine: {machine()}")
    print(f"model {path}, M=5, max_new_tokens=64, batch 8, shard 256; a fresh store per size")
    print(table(rows))
    per_sample = [r["ms/sample"] for r in rows]
    print(f"time per sample, largest pool / smallest: {per_sample[-1] / per_sample[0]:.2f} "
          f"(linear means ~1); DuckDB writes at most "
          f"{max(r['write share'] for r in rows):.1%} of the inference time")


if __name__ == "__main__":
    main()
