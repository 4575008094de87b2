"""Benchmark 3: the ACE attention pass against a plain forward pass on the same batch, and
against output_attentions=True on all layers: peak memory above the loaded model, and time.
Random-weight Qwen2-VL models with a real vocabulary (151,936) and 2..16 decoder layers, a
batch of easy-VQA prompts each followed by a response of the default length (64 tokens).
Targets: ACE <= 1.3x the plain pass's peak memory, and flat in the number of layers.

    .venv/bin/python bench/attention_memory.py [--layers 2,4,8,16] [--batch 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import PeakMemory, cpu_exact_malloc, easy_vqa_samples, machine, random_engine, table

MEDIUM_TEXT = dict(hidden_size=512, intermediate_size=1376, num_attention_heads=8,
                   num_key_value_heads=2, vocab_size=151936,
                   rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                    "mrope_section": [16, 8, 8]})  # sums to head_dim / 2


def batch_items(engine, n: int, response_len: int, images_dir: Path):
    import numpy as np

    from rap.rap_core.engines.base import PromptItem
    tokenizer = engine.tokenizer
    plain_ids = [i for i in range(len(tokenizer)) if i not in tokenizer.all_special_ids
                 and i not in engine.vision_tokens]
    rng = np.random.default_rng(0)
    return [PromptItem(r["sample_id"], r["question"], tuple(r["image_paths"]),
                       tuple(int(t) for t in rng.choice(plain_ids, response_len)))
            for r in easy_vqa_samples(n, images_dir).iter_rows(named=True)]


def measure(engine, device: str, run, repeats: int = 3) -> tuple[float, float]:
    """(peak MB above the start, median seconds) of run(), after one warm-up call."""
    run()
    peaks, seconds = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        with PeakMemory(device) as peak:
            run()
        seconds.append(time.perf_counter() - start)
        peaks.append(peak.mb)
    return max(peaks), statistics.median(seconds)


def variants(engine, items):
    import torch

    from rap.rap_core.engines.attention import NAME
    model = engine.model

    def forward(implementation: str, **kwargs):
        model.set_attn_implementation({"text_config": implementation})
        inputs = engine._encode(items, with_images=True)
        engine._append_responses(inputs, items)
        with torch.inference_mode():
            out = model(**inputs, use_cache=False, **kwargs)
        return out

    def ace():
        model.set_attn_implementation({"text_config": NAME})
        return engine.attention_column_log_sums(items, "mean")

    def old_engine():  # every layer eager, the final layer's map kept by a hook, all logits
        kept = {}
        layer = model.get_decoder().layers[-1].self_attn
        hook = layer.register_forward_hook(lambda mod, args, out: kept.update(w=out[1]))
        try:
            return forward("eager")
        finally:
            hook.remove()

    return {"plain forward (sdpa)": lambda: forward("sdpa"),
            "plain forward, last logits only": lambda: forward("sdpa", logits_to_keep=1),
            "ACE pass (this engine)": ace,
            "eager every layer + hook (before)": old_engine,
            "output_attentions=True, all layers": lambda: forward(
                "eager", output_attentions=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", default="2,4,8,16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--response-len", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    if args.device == "cpu":
        cpu_exact_malloc()
    images = Path(tempfile.mkdtemp(prefix="rap-bench-"))
    rows, ratios, lean = [], {}, {}
    import transformers
    transformers.logging.set_verbosity_error()  # the sdpa vision tower warns on output_attentions
    for layers in [int(x) for x in args.layers.split(",")]:
        engine = random_engine({**MEDIUM_TEXT, "num_hidden_layers": layers},
                               dtype=args.dtype, device=args.device)
        items = batch_items(engine, args.batch, args.response_len, images)
        seq = engine._encode(items, True)["input_ids"].shape[1] + args.response_len
        results = {name: measure(engine, args.device, run)
                   for name, run in variants(engine, items).items()}
        plain_mb = results["plain forward (sdpa)"][0]
        for name, (mb, s) in results.items():
            rows.append({"layers": layers, "pass": name, "peak MB": mb,
                         "x plain": mb / plain_mb, "seconds": s})
        ratios[layers] = results["ACE pass (this engine)"][0] / plain_mb
        lean[layers] = (results["ACE pass (this engine)"][0]
                        / results["plain forward, last logits only"][0])
        del engine
    print(f"machine: {machine()}")
    print(f"random Qwen2-VL, text {MEDIUM_TEXT}, batch {args.batch} prompts + "
          f"{args.response_len}-token responses (sequence {seq}), {args.dtype}, {args.device}; "
          "peak memory above the loaded model")
    print(table(rows))
    worst = max(ratios.values())
    ace = [r["peak MB"] for r in rows if r["pass"].startswith("ACE")]
    print("ACE peak / plain peak by layers: "
          + ", ".join(f"{k}: {v:.2f}" for k, v in ratios.items())
          + f"  (target <= 1.3: {'met' if worst <= 1.3 else 'NOT met'})")
    print("ACE peak / peak of a plain pass that also skips the logits: "
          + ", ".join(f"{k}: {v:.2f}" for k, v in lean.items()))
    print(f"ACE peak MB from {min(ratios)} to {max(ratios)} layers: {ace[0]:.0f} -> "
          f"{ace[-1]:.0f} (x{ace[-1] / ace[0]:.2f}; flat means ~x1)")


if __name__ == "__main__":
    main()
