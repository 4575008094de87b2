"""Benchmark 11: the transformers engine's generation against transformers' own sampler and
against the machine's limit. Random-weight Qwen2-VL models (responses never stop early, the
worst case), built in memory:

  demo   the demo model's shapes with Qwen's real vocabulary (151,936 tokens)
  small  the GPU check's small shapes (bench/gpu_check.py)
  2b     Qwen2-VL-2B's published shapes (bfloat16 by default)

For each batch size (prompts per call; each prompt is M rows) and condition (multimodal,
text-only): generated tokens/s of rap's engine over the same --n prompts, the same model and
inputs through `generate`'s own sampler (do_sample with temperature and top_p: one shared
RNG), and the machine's limit for a decode step of that many rows, measured here: the
matmuls of the model's weight shapes at those rows (best of a few), and the weights' bytes
over a large copy's bandwidth. Ratios are printed.

--profile adds a decode step's time by part (the model, of which the final layer's attention;
the sampler; other logits processors; generate's loop and token selection) at one batch size,
and torch.profiler's top operators.

    .venv/bin/python bench/engine.py [--shapes demo] [--batches 1,2,4,8,16] [--n 16] [--m 5]
        [--max-new-tokens 24] [--top-p 0.99] [--device cpu] [--dtype float32] [--profile]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import (QWEN2_VL_2B_TEXT, QWEN2_VL_2B_VISION, easy_vqa_samples, machine,
                    synchronize, table)

HERE = Path(__file__).resolve().parent


def shapes(name: str) -> tuple[dict, dict, str, dict]:
    """(text config, vision config, default dtype, image processor sizes) of a shape."""
    if name == "demo":
        config = json.loads((HERE.parent / "rap_core/demo/easy-vqa-demo-v1/config.json")
                            .read_text())
        keep = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "rope_parameters")
        text = {k: config["text_config"][k] for k in keep}
        vision = {k: v for k, v in config["vision_config"].items()
                  if k not in ("model_type", "initializer_range")}
        image = json.loads((HERE.parent / "rap_core/demo/easy-vqa-demo-v1/"
                                   "preprocessor_config.json").read_text())
        pixels = image["size"]["shortest_edge"]
        return {**text, "vocab_size": 151936}, vision, "float32", dict(
            min_pixels=pixels, max_pixels=image["size"]["longest_edge"],
            patch_size=image["patch_size"])
    if name == "small":
        from gpu_check import SMALL_TEXT
        return {**SMALL_TEXT, "vocab_size": 151936}, {}, "float32", {}
    return QWEN2_VL_2B_TEXT, QWEN2_VL_2B_VISION, "bfloat16", {}


def hf_sampler_generate(engine, batch, with_images: bool, rollout):
    """The same call through generate's own sampling (what a plain transformers user runs)."""
    import torch
    inputs = engine._encode(batch, with_images)
    with torch.inference_mode():
        out = engine.model.generate(
            **inputs, max_new_tokens=rollout.max_new_tokens, do_sample=True,
            temperature=rollout.temperature, top_p=rollout.top_p, top_k=0,
            num_return_sequences=rollout.m, suppress_tokens=engine.vision_tokens)
    return int((out[:, inputs["input_ids"].shape[1]:] != engine.tokenizer.pad_token_id).sum())


def rap_generate(engine, batch, with_images: bool, rollout):
    out = engine.generate(batch, with_images, rollout)
    return sum(len(r.token_ids) for rs in out for r in rs)


def tokens_per_s(call, engine, prompts, batch: int, with_images: bool, rollout,
                 device: str) -> float:
    call(engine, prompts[:batch], with_images, rollout.model_copy(update={"max_new_tokens": 2}))
    synchronize(device)
    start, tokens = time.perf_counter(), 0
    for i in range(0, len(prompts), batch):
        tokens += call(engine, prompts[i:i + batch], with_images, rollout)
    synchronize(device)
    return tokens / (time.perf_counter() - start)


def bandwidth(device: str, mib: int = 1024) -> float:
    """Bytes/s of a large device copy (read + write)."""
    import torch
    src = torch.empty(mib * 2**20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(4):
        synchronize(device)
        start = time.perf_counter()
        dst.copy_(src)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() / best


def decode_limit(model, rows: int, device: str, copy_bps: float) -> dict:
    """Seconds a decode step of `rows` rows needs at least on this machine: the text
    decoder's and the head's matmuls at those rows, measured on the model's own weights
    (one layer, times the layers), and the same weights' bytes over the copy bandwidth."""
    import torch
    decoder = model.get_decoder()
    layer = decoder.layers[0]
    linears = [m for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    head = model.get_output_embeddings()
    dtype = head.weight.dtype

    def matmuls(mods) -> float:
        xs = [torch.randn(rows, m.in_features, dtype=dtype, device=device) for m in mods]
        best = float("inf")
        for _ in range(5):
            synchronize(device)
            start = time.perf_counter()
            with torch.inference_mode():
                for m, x in zip(mods, xs):
                    torch.nn.functional.linear(x, m.weight)
            synchronize(device)
            best = min(best, time.perf_counter() - start)
        return best

    matmul_s = matmuls(linears) * len(decoder.layers) + matmuls([head])
    weight_bytes = (sum(m.weight.numel() for m in linears) * len(decoder.layers)
                    + head.weight.numel()) * head.weight.element_size()
    memory_s = weight_bytes / copy_bps
    return {"matmul_s": matmul_s, "memory_s": memory_s, "weight_gb": weight_bytes / 1e9,
            "tokens_s": rows / max(matmul_s, memory_s)}


def profile_step(engine, prompts, with_images: bool, rollout, device: str) -> dict:
    """One generate call of these prompts with timers on its parts; decode steps only (the
    first forward, the prefill, is left out). Returns ms per decode step by part."""
    import torch
    from transformers import LogitsProcessorList

    from rap.rap_core.engines import sampling
    sampler_cls = getattr(sampling, "CounterSampler", None) or getattr(sampling, "PerRowSampler")
    spans: dict[str, list[float]] = {"model": [], "final layer attention": [], "sampler": [],
                                     "logits processors": []}
    opened: dict[str, float] = {}

    def enter(name):
        synchronize(device)
        opened[name] = time.perf_counter()

    def leave(name):
        synchronize(device)
        spans[name].append(time.perf_counter() - opened.pop(name))

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            enter(name)
            try:
                return fn(*args, **kwargs)
            finally:
                leave(name)
        return wrapper

    attention = engine.model.get_decoder().layers[-1].self_attn
    hooks = [engine.model.register_forward_pre_hook(lambda *a: enter("model")),
             engine.model.register_forward_hook(lambda *a: leave("model")),
             attention.register_forward_pre_hook(lambda *a: enter("final layer attention")),
             attention.register_forward_hook(lambda *a: leave("final layer attention"))]
    saved = sampler_cls.__call__, LogitsProcessorList.__call__
    sampler_cls.__call__ = timed("sampler", sampler_cls.__call__)
    LogitsProcessorList.__call__ = timed("logits processors", LogitsProcessorList.__call__)
    try:
        synchronize(device)
        start = time.perf_counter()
        with torch.profiler.profile() as prof:
            engine.generate(prompts, with_images, rollout)
        synchronize(device)
        total = time.perf_counter() - start
    finally:
        for hook in hooks:
            hook.remove()
        sampler_cls.__call__, LogitsProcessorList.__call__ = saved
    steps = len(spans["model"]) - 1
    prefill = spans["model"][0]
    per = {name: sum(v[1:] if name in ("model", "final layer attention") else v) / steps
           for name, v in spans.items()}
    decode = (total - prefill) / steps
    parts = {"model (other layers, head)": per["model"] - per["final layer attention"],
             "final layer attention": per["final layer attention"],
             "sampler": per["sampler"],
             "other logits processors": per["logits processors"] - per["sampler"],
             "generate's loop, token selection": decode - per["model"]
             - per["logits processors"]}
    top = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10)
    return {"rows": len(prompts) * rollout.m, "steps": steps, "decode_step_ms": decode * 1e3,
            "prefill_ms": prefill * 1e3,
            "parts_ms": {k: round(v * 1e3, 2) for k, v in parts.items()},
            "parts_share": {k: round(v / decode, 3) for k, v in parts.items()}, "top_ops": top}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", choices=["demo", "small", "2b"], default="demo")
    parser.add_argument("--batches", default="1,2,4,8,16",
                        help="prompts per generate call (each prompt is M rows)")
    parser.add_argument("--n", type=int, default=16, help="prompts per measurement")
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--top-p", type=float, default=0.99)
    parser.add_argument("--conditions", default="multimodal,text-only")
    parser.add_argument("--no-hf", action="store_true", help="skip generate's own sampler")
    parser.add_argument("--layers", type=int, default=None,
                        help="text layers and vision blocks (default: the shape's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="default: the shape's")
    parser.add_argument("--cache", choices=["dynamic", "static"], default="dynamic",
                        help="rap's KV cache (static: preallocated; on CUDA generate compiles "
                        "the decode step with it)")
    parser.add_argument("--profile", action="store_true",
                        help="also a decode step by part, at the largest batch")
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    import torch
    import transformers

    from common import random_engine
    from rap.rap_core.engines.base import PromptItem
    from rap.rap_core.params import RolloutSettings
    transformers.logging.set_verbosity_error()
    text, vision, dtype, image = shapes(args.shapes)
    if args.layers:
        text = {**text, "num_hidden_layers": args.layers}
        vision = {**vision, "depth": args.layers}
    args.dtype = args.dtype or dtype
    engine = random_engine(text, vision, args.dtype, args.device, processor=image)
    if args.cache == "static":
        engine.cache_implementation = "static"
    params = sum(p.numel() for p in engine.model.parameters())
    samples = easy_vqa_samples(args.n, Path(tempfile.mkdtemp(prefix="rap-bench-")))
    prompts = [PromptItem(r["sample_id"], r["question"], tuple(r["image_paths"]))
               for r in samples.iter_rows(named=True)]
    rollout = RolloutSettings(m=args.m, max_new_tokens=args.max_new_tokens, top_p=args.top_p)
    batches = [int(b) for b in args.batches.split(",")]
    conditions = args.conditions.split(",")
    print(f"machine: {machine()}; transformers {transformers.__version__}")
    print(f"random Qwen2-VL ({args.shapes}, {params / 1e6:.1f} M parameters, vocabulary "
          f"{text['vocab_size']}, {args.dtype}), {args.n} prompts, M={args.m}, "
          f"{args.max_new_tokens} new tokens, temperature {rollout.temperature}, "
          f"top_p {rollout.top_p}, {args.cache} cache, threads {torch.get_num_threads()}")
    copy_bps = bandwidth(args.device)
    print(f"copy bandwidth {copy_bps / 1e9:.1f} GB/s")
    figures: dict = {"machine": machine(), "shapes": args.shapes, "dtype": args.dtype,
                     "parameters_m": round(params / 1e6, 1), "copy_gbps": copy_bps / 1e9,
                     "rows": []}
    for batch in batches:
        limit = decode_limit(engine.model, batch * args.m, args.device, copy_bps)
        for condition in conditions:
            with_images = condition == "multimodal"
            row = {"batch": batch, "rows": batch * args.m, "condition": condition,
                   "rap tok/s": tokens_per_s(rap_generate, engine, prompts, batch,
                                             with_images, rollout, args.device)}
            if not args.no_hf:
                row["hf tok/s"] = tokens_per_s(hf_sampler_generate, engine, prompts, batch,
                                               with_images, rollout, args.device)
                row["rap s/tok / hf s/tok"] = row["hf tok/s"] / row["rap tok/s"]
            row["limit tok/s"] = limit["tokens_s"]
            row["share of limit"] = row["rap tok/s"] / limit["tokens_s"]
            figures["rows"].append({**row, "limit": limit})
            print(table([row]), flush=True)
    print("\n" + table([{k: v for k, v in r.items() if k != "limit"} for r in figures["rows"]]))
    for r in figures["rows"]:
        against = (f", {r['rap s/tok / hf s/tok']:.3f}x transformers' sampler's seconds per "
                   "token" if "hf tok/s" in r else "")
        print(f"{r['condition']}, batch {r['batch']}: rap {r['rap tok/s']:.1f} tokens/s"
              f"{against}, {r['share of limit']:.3f} of the machine's limit")
    if args.profile:
        batch = max(batches)
        for condition in conditions:
            found = profile_step(engine, prompts[:batch], condition == "multimodal", rollout,
                                 args.device)
            print(f"\ndecode step, {condition}, {found['rows']} rows: "
                  f"{found['decode_step_ms']:.1f} ms (prefill {found['prefill_ms']:.0f} ms, "
                  f"{found['steps']} steps)")
            for part, ms in found["parts_ms"].items():
                print(f"  {part:<34} {ms:9.2f} ms  {100 * found['parts_share'][part]:5.1f}%")
            print(found["top_ops"])
            figures[f"profile {condition}"] = {k: v for k, v in found.items() if k != "top_ops"}
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
