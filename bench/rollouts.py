"""Benchmark 2: rollouts. M responses per prompt in one batched generate call against M
separate calls (target >= 2x); samples/s against the number of prompts per call; length
bucketing against none and against batch 1 on prompts of mixed length; float32 against
bfloat16.

    .venv/bin/python bench/rollouts.py [--n 64] [--m 5] [--model builtin:easy-vqa-vlm]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import easy_vqa_samples, machine, model_path, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--model", default="builtin:easy-vqa-vlm")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rap-bench-"))
    from rap.rap_core.engines.base import PromptItem, load_engine
    from rap.rap_core.params import RolloutSettings
    path = model_path(args.model, work)
    engine = load_engine(path, "cpu", "float32", None)
    samples = easy_vqa_samples(args.n, work / "images")
    items = [PromptItem(r["sample_id"], r["question"], tuple(r["image_paths"]))
             for r in samples.iter_rows(named=True)]
    together, alone = RolloutSettings(m=args.m), RolloutSettings(m=1)
    engine.generate(items[:8], True, together)  # warm-up

    def rate(batch: int, rollout: RolloutSettings, repeat: int = 1) -> float:
        start = time.perf_counter()
        for _ in range(repeat):
            for i in range(0, len(items), batch):
                engine.generate(items[i:i + batch], True, rollout)
        return time.perf_counter() - start

    print(f"machine: {machine()}")
    print(f"{args.n} multimodal prompts, model {path}, max_new_tokens "
          f"{together.max_new_tokens}")
    one_call, m_calls = rate(8, together), rate(8, alone, repeat=args.m)
    print(table([{"rollouts": f"M={args.m} in one call", "seconds": one_call},
                 {"rollouts": f"{args.m} calls of M=1", "seconds": m_calls}]))
    print(f"one batched call vs M calls: {m_calls / one_call:.2f}x faster (target >= 2x)")
    rows = []
    for batch in args.batches:
        seconds = rate(batch, together)
        rows.append({"prompts per call": batch, "seconds": seconds,
                     "samples/s": args.n / seconds, "rollouts/s": args.n * args.m / seconds})
    print(table(rows))
    bucketing(engine, items, together, args.n)
    dtypes(path, items, together, args.n)


def mixed_lengths(items, seed: int = 0):
    """The same prompts behind a preamble of 0..150 words: a pool of mixed lengths, as real
    pools are (easy-VQA questions are all about the same length)."""
    import numpy as np

    from rap.rap_core.engines.base import PromptItem
    rng = np.random.default_rng(seed)
    words = "the figure below shows a shape of one colour on a plain background".split()
    return [PromptItem(it.sample_id, " ".join(rng.choice(words, int(rng.integers(0, 150))))
                       + " " + it.question, it.image_paths) for it in items]


def bucketing(engine, items, rollout, n: int) -> None:
    from rap.rap_core.engines.inference import run_bucketed
    mixed = mixed_lengths(items)

    def seconds(batch: int, bucket: bool) -> float:
        start = time.perf_counter()
        run_bucketed(mixed, True, batch, lambda b: engine.generate(b, True, rollout),
                     bucket=bucket)
        return time.perf_counter() - start
    rows = [{"mixed-length prompts": "batch 1", "seconds": seconds(1, False)},
            {"mixed-length prompts": "batch 8, pool order", "seconds": seconds(8, False)},
            {"mixed-length prompts": "batch 8, length-bucketed", "seconds": seconds(8, True)}]
    for row in rows:
        row["samples/s"] = n / row["seconds"]
    print(table(rows))
    print(f"bucketed vs pool order: {rows[1]['seconds'] / rows[2]['seconds']:.2f}x; "
          f"bucketed batch 8 vs batch 1: {rows[0]['seconds'] / rows[2]['seconds']:.2f}x")


def dtypes(path: str, items, rollout, n: int) -> None:
    from rap.rap_core.engines.base import load_engine
    from rap.rap_core.models import resolve_dtype
    rows = []
    for dtype in ("float32", "bfloat16"):
        engine = load_engine(path, "cpu", dtype, None)
        engine.generate(items[:8], True, rollout)  # warm-up
        start = time.perf_counter()
        for i in range(0, len(items), 8):
            engine.generate(items[i:i + 8], True, rollout)
        seconds = time.perf_counter() - start
        rows.append({"dtype": dtype, "seconds": seconds, "samples/s": n / seconds})
    print(table(rows))
    print(f"bfloat16 vs float32: {rows[0]['seconds'] / rows[1]['seconds']:.2f}x "
          f"(--dtype auto picks {resolve_dtype('cpu', 'auto')} on this CPU)")


if __name__ == "__main__":
    main()
