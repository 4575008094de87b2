"""Benchmark 6: the figures of benchmarks 2 and 3 on a random-weight model with Qwen2-VL-2B's
shapes (2.2 B parameters, bfloat16 by default), on a handful of easy-VQA samples, so that
the demo model's ratios are not taken for a real model's. Random weights never stop early:
every response runs to max_new_tokens, the worst case.

    .venv/bin/python bench/large_model.py [--n 4] [--m 5] [--max-new-tokens 32]
        [--device cpu] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from attention_memory import batch_items, measure, variants
from common import (QWEN2_VL_2B_TEXT, QWEN2_VL_2B_VISION, cpu_exact_malloc, machine,
                    random_engine, table)


def timed_call(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--layers", type=int, default=None,
                        help="text layers and vision blocks (default: the 2B's 28 and 32; "
                        "1 checks the script in seconds)")
    args = parser.parse_args()
    if args.device == "cpu":
        cpu_exact_malloc()
    import transformers

    from rap.rap_core.engines.base import PromptItem
    from rap.rap_core.params import RolloutSettings
    transformers.logging.set_verbosity_error()
    start = time.perf_counter()
    text, vision = QWEN2_VL_2B_TEXT, QWEN2_VL_2B_VISION
    if args.layers:
        text = {**text, "num_hidden_layers": args.layers}
        vision = {**vision, "depth": args.layers}
    engine = random_engine(text, vision, args.dtype, args.device)
    build_s = time.perf_counter() - start
    params = sum(p.numel() for p in engine.model.parameters())
    forced = batch_items(engine, args.n, 64, Path(tempfile.mkdtemp(prefix="rap-bench-")))
    prompts = [PromptItem(it.sample_id, it.question, it.image_paths) for it in forced]
    together = RolloutSettings(m=args.m, max_new_tokens=args.max_new_tokens)
    alone = together.model_copy(update={"m": 1})
    engine.generate(prompts[:1], True, alone.model_copy(update={"max_new_tokens": 2}))  # warm-up

    rows = [{"what": f"multimodal, M={args.m} in one call", "seconds": timed_call(
                lambda: engine.generate(prompts, True, together))},
            {"what": f"multimodal, {args.m} calls of M=1", "seconds": timed_call(
                lambda: [engine.generate(prompts, True, alone.model_copy(update={"seed": s}))
                         for s in range(args.m)])},
            {"what": f"text-only, M={args.m} in one call", "seconds": timed_call(
                lambda: engine.generate(prompts, False, together))}]
    for row in rows:
        row["samples/s"] = args.n / row["seconds"]
    memory = {name: measure(engine, args.device, run, repeats=1)
              for name, run in variants(engine, forced).items()}
    plain_mb = memory["plain forward (sdpa)"][0]
    rows += [{"what": f"{name} (peak {mb:.0f} MB, x{mb / plain_mb:.2f} plain)", "seconds": s,
              "samples/s": args.n / s} for name, (mb, s) in memory.items()]
    print(f"machine: {machine()}")
    print(f"random Qwen2-VL-2B shapes{f' ({args.layers} layers)' if args.layers else ''}: "
          f"{params / 1e9:.2f} B parameters, {args.dtype} on "
          f"{args.device}, built in {build_s:.0f} s; {args.n} easy-VQA prompts per call, "
          f"max_new_tokens {args.max_new_tokens}; attention passes over 64-token responses")
    print(table(rows))
    print(f"M={args.m} in one call vs {args.m} calls: "
          f"{rows[1]['seconds'] / rows[0]['seconds']:.2f}x faster (target >= 2x)")
    ace = memory["ACE pass (this engine)"][0]
    print(f"ACE peak / plain peak: {ace / plain_mb:.2f} (target <= 1.3); vs a plain pass "
          f"without logits: {ace / memory['plain forward, last logits only'][0]:.2f}")


if __name__ == "__main__":
    main()
