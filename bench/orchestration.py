"""Benchmark 1: orchestration overhead. The inference part of the `rap` flow (Prefect tasks,
DuckDB writes per shard, progress artifact) against a bare loop making the same engine calls
with the same shards and batches, on the same N easy-VQA samples. Target: flow >= 0.90 of the
bare loop's throughput.

    .venv/bin/python bench/orchestration.py [--n 500] [--model builtin:easy-vqa-vlm]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import data_folder, easy_vqa_samples, flow_bench, machine, table, timed


def bare_loop(engine, samples, params) -> dict:
    """The flow's engine calls, in the same shards and batches, and nothing else."""
    import polars as pl

    from rap.rap_core.engines.inference import infer_attention, infer_rollouts
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


def flow_once(run_flow, params, data_dir: Path) -> dict:
    """One flow run on a fresh store (so every sample is inferred)."""
    data_folder(data_dir)
    summary = run_flow(params)
    phases = summary["inference_phases"]
    engine_s = sum(p["engine_s"] for p in phases.values())
    return {"total": summary["inference_s"], "engine": engine_s,
            **{k: p["seconds"] for k, p in phases.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2,
                        help="flow runs, each between two bare loops (default 2)")
    parser.add_argument("--model", default="builtin:easy-vqa-vlm")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rap-bench-"))
    run_flow, path, engine = flow_bench(args.model, work)
    from rap.rap_core.params import DataSpec, ModelSpec, RapParams
    params = RapParams(data=DataSpec(limit=args.n), model=ModelSpec(path=path), track=False,
                       export=False)
    samples = easy_vqa_samples(args.n, work / "images")
    # bare, flow, bare, flow, bare: each flow run is compared with the mean of the bare runs
    # on either side, which cancels drift on a shared machine
    bares = [bare_loop(engine, samples, params)]
    flows, ratios = [], []
    for r in range(args.rounds):
        # another seed per round: the same work, but no task result cached by an earlier round
        seeded = params.model_copy(update={"rollout": params.rollout.model_copy(
            update={"seed": r + 1})})
        flows.append(flow_once(run_flow, seeded, work / f"flow{r}"))
        bares.append(bare_loop(engine, samples, params))
        around = (bares[-2]["total"] + bares[-1]["total"]) / 2
        ratios.append(around / flows[-1]["total"])
    print(f"machine: {machine()}")
    print(f"{args.n} easy-VQA samples, model {path}, M={params.rollout.m}, "
          f"max_new_tokens={params.rollout.max_new_tokens}, batch {params.batch_size}, "
          f"shard {params.shard_size}")
    rows = [{"run": f"bare {i + 1}", "seconds": b["total"], "samples/s": args.n / b["total"],
             "text-only": b["text_only"], "multimodal": b["multimodal"],
             "attention": b["attention"], "in engine": b["total"]} for i, b in enumerate(bares)]
    rows += [{"run": f"flow {i + 1}", "seconds": f["total"], "samples/s": args.n / f["total"],
              "text-only": f["text-only"], "multimodal": f["multimodal"],
              "attention": f["attention"], "in engine": f["engine"]} for i, f in enumerate(flows)]
    print(table(rows))
    bookkeeping = sum(f["total"] - f["engine"] for f in flows) / len(flows)
    print(f"flow time outside engine calls (planning, task runs, DuckDB writes, progress): "
          f"{bookkeeping:.2f} s per run")
    ratio = sum(ratios) / len(ratios)
    print("flow throughput / bare loop throughput per round: "
          + ", ".join(f"{r:.3f}" for r in ratios)
          + f"; mean {ratio:.3f}  (target >= 0.90: {'met' if ratio >= 0.90 else 'NOT met'})")


if __name__ == "__main__":
    main()
