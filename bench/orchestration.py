"""Benchmark 1: orchestration overhead. The inference part of the `rap` flow (Prefect tasks,
DuckDB writes per shard, progress artifact) against a bare loop making the same engine calls
with the same shards and batches, on the same N easy-VQA samples. Target: flow >= 0.90 of the
bare loop's throughput.

    .venv/bin/python bench/orchestration.py [--n 500] [--model builtin:easy-vqa-vlm]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import easy_vqa_samples, machine, model_path, table, timed


def bare_loop(engine, samples, params) -> dict:
    """The flow's engine calls, in the same shards and batches, and nothing else."""
    import polars as pl

    from rap_core.inference import infer_attention, infer_rollouts
    seconds: dict = {}
    shards = [samples.slice(i, params.shard_size)
              for i in range(0, samples.height, params.shard_size)]
    results = {}
    for stage in ("text_only", "multimodal"):
        with timed(seconds, stage):
            results[stage] = [infer_rollouts(engine, shard, stage, params.rollout,
                                             params.batch_size, "m", "s") for shard in shards]
    mm = pl.concat([r.facts for r in results["multimodal"]])
    chosen = (mm.sort("sample_id", pl.col("correct").not_(), "rollout_index")
              .group_by("sample_id", maintain_order=True).first()
              .join(samples.select("sample_id", "question", "image_paths", "system"),
                    on="sample_id"))
    order = samples.select("sample_id").with_row_index("order")
    chosen = chosen.join(order, on="sample_id").sort("order")
    with timed(seconds, "attention"):
        for i in range(0, chosen.height, params.shard_size):
            infer_attention(engine, chosen.slice(i, params.shard_size),
                            params.ace.head_reduce, params.batch_size, "m", "a")
    seconds["total"] = sum(seconds.values())
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--model", default="builtin:easy-vqa-vlm")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rap-bench-"))
    os.environ["RAP_DATA_DIR"] = str(work / "flow")
    from rap_core.settings import Settings, configure_process_env
    settings = Settings.from_env()
    configure_process_env(settings.data_dir)
    from flows.rap import run_flow
    from rap_core.engine import load_engine
    from rap_core.params import DataSpec, ModelSpec, RapParams
    path = model_path(Settings(data_dir=Path("rap_data").resolve(),
                               mlflow_tracking_uri="sqlite:///" + str(work / "m.db")),
                      args.model)
    params = RapParams(data=DataSpec(limit=args.n), model=ModelSpec(path=path), track=False,
                       export=False)
    engine = load_engine(path, "cpu", "float32", None)  # loaded once, outside both timings
    samples = easy_vqa_samples(args.n, work / "images")
    # bare, flow, bare: the mean of the two bare runs cancels warm-up in either direction
    first = bare_loop(engine, samples, params)
    summary = run_flow(params)
    second = bare_loop(engine, samples, params)
    bare = {k: (first[k] + second[k]) / 2 for k in first}
    flow_s = summary["inference_s"]
    print(f"machine: {machine()}")
    print(f"{args.n} easy-VQA samples, model {path}, M={params.rollout.m}, "
          f"max_new_tokens={params.rollout.max_new_tokens}, batch {params.batch_size}, "
          f"shard {params.shard_size}")
    print(table([{"path": "bare loop", "seconds": bare["total"],
                  "samples/s": args.n / bare["total"]},
                 {"path": "rap flow", "seconds": flow_s, "samples/s": args.n / flow_s}]))
    print("bare loop phases (mean of 2): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in bare.items()))
    ratio = bare["total"] / flow_s
    print(f"flow throughput / bare loop throughput = {ratio:.3f}  (target >= 0.90: "
          f"{'met' if ratio >= 0.90 else 'NOT met'})")


if __name__ == "__main__":
    main()
