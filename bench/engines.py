"""Benchmark 8: the rollout engines. The same multimodal prompts, model and sampling settings
through the transformers engine (batched generate in this process) and through an
OpenAI-compatible server (a real `transformers serve` process on the same CPU, tests/servers.py)
at several concurrencies: samples/s and generated tokens/s. Then the re-tokenisation a server
engine relies on when the server returns no token ids: how often the local tokenizer's ids for
a response's text differ from the ids the model generated, and what that does to ACE's psi.

    .venv/bin/python bench/engines.py [--n 48] [--m 5] [--concurrency 1 4 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from common import easy_vqa_samples, machine, model_path, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--model", default="builtin:easy-vqa-vlm")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--retokenise-n", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rap-bench-"))
    from rap.rap_core.engines.base import PromptItem, load_engine
    from rap.rap_core.params import EngineConfig, RolloutSettings
    path = model_path(args.model, work)
    local = load_engine(path, "cpu", "float32", None)
    samples = easy_vqa_samples(max(args.n, args.retokenise_n), work / "images")
    items = [PromptItem(r["sample_id"], r["question"], tuple(r["image_paths"]))
             for r in samples.iter_rows(named=True)]
    rollout = RolloutSettings(m=args.m)
    print(f"machine: {machine()}")
    print(f"{args.n} multimodal prompts, M={args.m}, max_new_tokens {rollout.max_new_tokens}, "
          f"temperature {rollout.temperature}, model {path}")

    def measure(engine, name: str, batch: int) -> dict:
        engine.generate(items[:4], True, rollout)  # warm-up
        start = time.perf_counter()
        out = []
        for i in range(0, args.n, batch):
            out += engine.generate(items[i:min(i + batch, args.n)], True, rollout)
        seconds = time.perf_counter() - start
        tokens = sum(len(r.token_ids) for responses in out for r in responses)
        return {"engine": name, "seconds": seconds, "samples/s": args.n / seconds,
                "tokens/s": tokens / seconds, "tokens": tokens}

    rows = [measure(local, "transformers, batch 8", 8)]
    os.environ.setdefault("RAP_SERVER_THREADS", str(os.cpu_count()))
    from servers import transformers_serve
    from rap.rap_core.engines.openai_api import OpenAIEngine
    with transformers_serve(Path(path), work / "server") as server:
        for concurrency in args.concurrency:
            engine = OpenAIEngine(EngineConfig("openai", server.url, None, concurrency, 600.0),
                                  lambda: local, path, None)
            rows.append(measure(engine, f"transformers serve, {concurrency} in flight",
                                engine.samples_per_call))
    print(table(rows))
    base = rows[0]["samples/s"]
    for row in rows[1:]:
        print(f"{row['engine']}: {row['samples/s'] / base:.2f}x the transformers engine")
    print(f"\nre-tokenisation, {args.retokenise_n} prompts x M={args.m}:")
    retokenisation("demo model", local, items[:args.retokenise_n], rollout)
    # a random-weight model of the same family samples any token sequence: the worst case
    random_path = model_path("builtin:tiny-qwen2-vl", work)
    retokenisation("random weights", load_engine(random_path, "cpu", "float32", None),
                   items[:args.retokenise_n], rollout)


def retokenisation(name: str, local, items, rollout) -> None:
    """Generated ids against the local tokenizer's ids for the decoded text."""
    import numpy as np

    from rap.rap_core.engines.base import PromptItem
    tokenizer = local.tokenizer
    out = []
    for i in range(0, len(items), 8):
        out += local.generate(items[i:i + 8], True, rollout)
    pairs, differ, examples = 0, [], []
    for item, responses in zip(items, out):
        for r in responses:
            pairs += 1
            ids = tokenizer.encode(r.text, add_special_tokens=False)
            if r.token_ids and r.token_ids[-1] == tokenizer.eos_token_id:
                ids.append(tokenizer.eos_token_id)
            if tuple(ids) != r.token_ids:
                differ.append((item, r.token_ids, tuple(ids)))
                if len(examples) < 3:
                    examples.append(r.text)
    print(f"{name}: {len(differ)} of {pairs} responses "
          f"({100 * len(differ) / max(pairs, 1):.2f}%) get other ids from the local tokenizer "
          "than the model generated")
    for text in examples:
        print(f"  e.g. {text!r}")
    shifts = []
    for item, generated, retokenised in differ[:64]:
        sums = local.attention_column_log_sums(
            [PromptItem(item.sample_id, item.question, item.image_paths, generated),
             PromptItem(item.sample_id, item.question, item.image_paths, retokenised)], "mean")
        a, b = (psi_log(s) for s in sums)
        if a is not None and b is not None:
            shifts.append(abs(a - b))
    if shifts:
        print(f"  ACE ln(psi) over the re-tokenised ids instead: median change "
              f"{np.median(shifts):.3g}, max {max(shifts):.3g} ({len(shifts)} responses)")


def psi_log(sums) -> float | None:
    """sql/macros/psi_log.sql at the default thresholds."""
    import math

    from rap.rap_core.params import Thresholds
    th = Thresholds()
    n = len(sums)
    runs = [(n - j) * math.log(th.sigma) + sums[j] for j in range(n) if n - j >= th.ace_min_run]
    return max(runs) if runs else None


if __name__ == "__main__":
    main()
