"""The GPU check (bench/gpu_check.sh runs it): on one GPU, with nothing downloaded, a random-
weight model of Qwen2.5-VL-7B's published shapes in bfloat16 through, in this order (the most
telling first, so a short budget keeps what matters most):

1. the `rap` flow end to end on --flow-n easy-VQA samples (all rollouts; the model is built
   on the device and saved to a folder first);
2. the transformers engine: generated tokens/s at M = 5 and 256 new tokens for each batch
   size of --batches (prompts per call, each M rows; auto: what --batch-size auto picks for
   --n prompts), multimodal and text-only, and its share of the memory-bound ceiling of a
   decode step of that many rows (weights and KV cache read once a step, at the bandwidth the
   vendor gives for the device's name, else a measured copy's); random weights never stop
   early: every response is 256 tokens, the worst case;
3. the same engine with a static (preallocated) KV cache, which generate compiles on CUDA,
   against the dynamic cache at --static-batch prompts (each measured on a second call);
4. the ACE pass: peak GPU memory against a plain forward over the same batch;
5. the vLLM engine on the same folder, if vLLM imports here (else says why).

Each step prints its figures and is timed; a failing step is reported and the next one runs.
--budget-s bounds the whole run: a step whose usual cost (ESTIMATE_S, scaled to the sizes
asked for) would not fit in what is left is skipped, and says so; the engine step also stops
between batches when the next would not fit, and marks its rows cut. The figures go to --out
(JSON) after every step, so a run cut off from outside still leaves what it measured.
`--shapes small` runs the same steps on a small random model (a CPU check of the script).

    python bench/gpu_check.py [--budget-s 480] [--shapes 7b] [--device cuda] [--flow-n 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from common import easy_vqa_samples, machine, synchronize, table

# Qwen2.5-VL-7B-Instruct's published shapes (its config.json)
QWEN25_VL_7B_TEXT = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                         num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                         max_position_embeddings=128000,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                          "mrope_section": [16, 24, 24]})
QWEN25_VL_7B_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                           out_hidden_size=3584, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, window_size=112,
                           fullatt_block_indexes=[7, 15, 23, 31])
SMALL_TEXT = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=152064,
                  max_position_embeddings=4096,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                   "mrope_section": [8, 12, 12]})
SMALL_VISION = dict(depth=2, hidden_size=128, intermediate_size=256, num_heads=4,
                    out_hidden_size=256, patch_size=14, spatial_merge_size=2,
                    temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1])
SHAPES = {"7b": (QWEN25_VL_7B_TEXT, QWEN25_VL_7B_VISION), "small": (SMALL_TEXT, SMALL_VISION)}

# A step's usual seconds at the default sizes, as (fixed, scaled): estimate() scales the second
# part to the sizes asked for (the engine's: 32 prompts with and without images, at batch 16,
# before the sampler of issue 35: an upper bound). 7b: one H200, bfloat16 (the flows' fixed part, Prefect's
# temporary server and the model's load, is a guess inside the measured total). small: 2 CPU
# cores, float32, measured at 16 samples / prompts and scaled up (the flow 163 s, the engine
# 298 + 304 s); vLLM does not import there, so its flow is taken as the transformers flow's.
ESTIMATE_S = {
    "7b": {"build": (30, 0), "save checkpoint": (60, 0), "flow (transformers)": (20, 130),
           "transformers engine": (10, 80), "static cache": (90, None),
           "ACE pass memory": (30, 0),
           "flow (vllm)": (60, 240)},
    "small": {"build": (5, 0), "save checkpoint": (3, 0), "flow (transformers)": (20, 1900),
              "transformers engine": (2, 1250), "static cache": (5, None),
              "ACE pass memory": (10, 0),
              "flow (vllm)": (20, 1900)},
}

FIGURES: dict = {}
RUN = {"started": time.perf_counter(), "budget_s": float("inf"), "out": None}


def estimate(name: str, args) -> float:
    fixed, scaled = ESTIMATE_S[args.shapes][name]
    if name.startswith("flow"):
        return fixed + scaled * (args.flow_n / 200) * (args.flow_max_new_tokens / 64) \
            * args.m / 5
    if name == "transformers engine":  # its first batch: it stops itself between the others
        first = args.n if args.batches[0] == "auto" else min(int(args.batches[0]), args.n)
        return fixed + scaled * (first / 32) * (args.max_new_tokens / 256) * args.m / 5
    if name == "static cache":  # four calls of --static-batch prompts, plus compiling
        return fixed + 4 * min(args.static_batch, args.n) * args.m * seconds_per_row(args)
    return fixed + scaled


def seconds_per_row(args) -> float:
    """A generated row's seconds at --max-new-tokens: the slowest the engine step measured,
    else its prior estimate (32 prompts, both conditions)."""
    measured = [r["seconds"] / r["rows"] for r in
                FIGURES.get("transformers engine", {}).get("rows", []) if "seconds" in r]
    if measured:
        return max(measured)
    scaled = ESTIMATE_S[args.shapes]["transformers engine"][1]
    return scaled / (2 * 32 * 5) * args.max_new_tokens / 256


def left_s() -> float:
    return RUN["budget_s"] - (time.perf_counter() - RUN["started"])


def write_figures() -> None:
    if RUN["out"]:
        Path(RUN["out"]).write_text(json.dumps(FIGURES, indent=1, default=str))


def step(name: str, args):
    """Run the decorated step now if its estimate fits in the budget left (else record it as
    skipped); report a failure and go on; write the figures after it either way."""
    def run(fn):
        print(f"\n== {name}", flush=True)
        left = left_s()
        need = estimate(name, args)
        if need > left:
            FIGURES[name] = {"skipped": f"would not fit: about {need:.0f} s, {max(left, 0):.0f}"
                             " s of --budget-s left"}
            print(f"skipped: {FIGURES[name]['skipped']}", flush=True)
            write_figures()
            return fn
        start = time.perf_counter()
        try:
            fn()
            FIGURES.setdefault(name, {})["seconds"] = round(time.perf_counter() - start, 1)
        except Exception as exc:  # reported; the next step still runs
            traceback.print_exc()
            FIGURES[name] = {"failed": f"{type(exc).__name__}: {exc}"}
            print(f"!! {name} failed: {type(exc).__name__}: {exc}", flush=True)
        write_figures()
        return fn
    return run


def build(shapes: str, device: str, dtype: str):
    """A random model of the shapes, initialised on the device (no 16 GB round trip through
    host memory), with rap's processor and the engine's attention."""
    import torch

    from rap.rap_core.demo.tiny_model import build_model, build_processor
    from rap.rap_core.engines.attention import NAME
    from rap.rap_core.engines.hf import HFEngine
    text, vision = SHAPES[shapes]
    processor = build_processor("qwen2_5_vl")
    processor.tokenizer.padding_side = "left"
    with torch.device(device):
        model = build_model(processor.tokenizer, 0, "qwen2_5_vl", text=text, vision=vision,
                            dtype=getattr(torch, dtype),
                            attn_implementation={"text_config": NAME, "vision_config": "sdpa"})
    return HFEngine.from_loaded(model, processor, device), processor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", choices=sorted(SHAPES), default="7b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default=None,
                        help="default: bfloat16 on a GPU, float32 on the CPU (where bfloat16 "
                             "matmuls are many times slower)")
    parser.add_argument("--n", type=int, default=256, help="prompts for the engine figures")
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch", default="auto", help="the flow's --batch-size")
    parser.add_argument("--batches", default="16,64,128,256,auto",
                        help="the engine step's prompts per call (each is M rows)")
    parser.add_argument("--static-batch", type=int, default=16,
                        help="prompts per call of the static cache step")
    parser.add_argument("--flow-n", type=int, default=200)
    parser.add_argument("--flow-max-new-tokens", type=int, default=64)
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp one)")
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="the whole run's seconds: steps that would not fit are skipped")
    args = parser.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    args.batches = args.batches.split(",")
    RUN.update(started=time.perf_counter(), budget_s=args.budget_s, out=args.out)
    FIGURES["budget_s"] = args.budget_s
    import torch
    import transformers
    transformers.logging.set_verbosity_error()
    work = Path(args.work or tempfile.mkdtemp(prefix="rap-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    FIGURES["machine"] = machine()
    FIGURES["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
    print(f"machine: {FIGURES['machine']}; transformers {transformers.__version__}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu --shapes small to check the script")
        return 2
    from rap.rap_core.engines.base import PromptItem
    from rap.rap_core.params import RolloutSettings
    state: dict = {}

    @step("build", args)
    def _():
        start = time.perf_counter()
        state["engine"], state["processor"] = build(args.shapes, args.device, args.dtype)
        params = sum(p.numel() for p in state["engine"].model.parameters())
        FIGURES["build"] = {"parameters_b": round(params / 1e9, 2), "dtype": args.dtype,
                            "build_s": round(time.perf_counter() - start, 1)}
        print(f"random Qwen2.5-VL ({args.shapes}): {params / 1e9:.2f} B parameters, "
              f"{args.dtype} on {args.device}")

    samples = easy_vqa_samples(max(args.n, args.flow_n), work / "images")
    prompts = [PromptItem(r["sample_id"], r["question"], tuple(r["image_paths"]))
               for r in samples.head(args.n).iter_rows(named=True)]
    rollout = RolloutSettings(m=args.m, max_new_tokens=args.max_new_tokens)

    @step("save checkpoint", args)
    def _():
        folder = work / "random-qwen2.5-vl"
        if not (folder / "config.json").exists():
            from rap.rap_core.engines.checkpoints import write_stock_processor_files
            state["engine"].model.save_pretrained(folder)
            state["processor"].save_pretrained(folder)
            write_stock_processor_files(folder)  # vLLM loads it with AutoProcessor
        state["folder"] = folder
        state["engine"] = None
        import gc
        gc.collect()
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def flow(engine_kind: str):
        os.environ["RAP_DATA_DIR"] = str(work / f"data-{engine_kind}")
        from rap.rap_core.settings import Settings, configure_process_env
        from rap.rap_core.store.preflight import prepare_data_dir
        prepare_data_dir(Settings.from_env())  # Prefect's home lies in the data folder
        configure_process_env(Settings.from_env().data_dir)
        from rap.flows.rap import run_flow
        from rap.rap_core.params import DataSpec, ModelSpec, RapParams
        params = RapParams(
            data=DataSpec(limit=args.flow_n),
            model=ModelSpec(path=str(state["folder"]), device=args.device, dtype=args.dtype,
                            engine=engine_kind),
            rollout=RolloutSettings(m=args.m, max_new_tokens=args.flow_max_new_tokens),
            all_rollouts=True, batch_size=args.batch if args.batch == "auto" else int(args.batch),
            track=False, export=False)
        start = time.perf_counter()
        summary = run_flow(params)
        seconds = time.perf_counter() - start
        figures = {"samples": args.flow_n, "seconds": round(seconds, 1),
                   "funnel": summary["funnel"], "phases": summary["inference_phases"]}
        print(json.dumps(figures, indent=1, default=str))
        FIGURES[f"flow ({engine_kind})"] = figures

    @step("flow (transformers)", args)
    def _():
        flow("transformers")

    def loaded_engine():
        """The model as the flow loaded it (one copy on the device), or as built."""
        if state.get("engine") is None:
            from rap.rap_core.engines.base import load_engine
            state["engine"] = load_engine(str(state["folder"]), args.device, args.dtype, None)
        return state["engine"]

    @step("transformers engine", args)
    def _():
        engine = loaded_engine()
        engine.generate(prompts[:2], True, rollout.model_copy(update={"max_new_tokens": 4}))
        bandwidth, source = device_bandwidth(args.device)
        rows, figures = [], {"m": args.m, "max_new_tokens": args.max_new_tokens,
                             "bandwidth_gbps": round(bandwidth / 1e9), "bandwidth_from": source}
        for with_images in (True, False):
            # multimodal may use half of what is left, text-only the rest; a batch that would
            # not fit (at the slowest seconds per row so far) ends the condition early
            share = left_s() / (2 if with_images else 1)
            condition = "multimodal" if with_images else "text-only"
            start, per_row = time.perf_counter(), 0.0
            for batch in args.batches:
                size = min(len(prompts), engine.batch_size_for(
                    prompts, with_images, args.m, args.max_new_tokens)
                    if batch == "auto" else int(batch))
                if per_row and time.perf_counter() - start + per_row * size * args.m > share:
                    rows.append({"condition": condition, "batch": batch,
                                 "cut": "the next batch would not fit"})
                    print(f"{condition}: batch {batch} cut: it would not fit", flush=True)
                    break
                synchronize(args.device)
                began = time.perf_counter()
                out = engine.generate(prompts[:size], with_images, rollout)
                synchronize(args.device)
                seconds = time.perf_counter() - began
                per_row = max(per_row, seconds / (size * args.m))
                tokens = sum(len(r.token_ids) for rs in out for r in rs)
                ceiling = memory_bound_tokens_s(engine.model, size * args.m,
                                                tokens / (size * args.m), bandwidth)
                rows.append({"condition": condition, "batch": batch, "prompts": size,
                             "rows": size * args.m, "seconds": seconds,
                             "tokens/s": tokens / seconds, "ceiling tokens/s": ceiling,
                             "share of ceiling": tokens / seconds / ceiling})
                print(table([rows[-1]]), flush=True)
        print(table([r for r in rows if "seconds" in r]))
        FIGURES["transformers engine"] = {**figures, "rows": rows}

    @step("static cache", args)
    def _():
        """The engine with a preallocated KV cache (on CUDA, generate compiles the decode
        step for it), against the dynamic cache at the same batch: is it worth a default?"""
        engine = loaded_engine()
        size = min(args.static_batch, len(prompts))
        found = {"prompts": size, "rows": size * args.m}
        for cache in ("dynamic", "static"):
            engine.cache_implementation = None if cache == "dynamic" else "static"
            try:
                began = time.perf_counter()
                engine.generate(prompts[:size], True, rollout)  # compiles, for static
                synchronize(args.device)
                found[f"{cache} first call s"] = round(time.perf_counter() - began, 1)
                began = time.perf_counter()
                out = engine.generate(prompts[:size], True, rollout)
                synchronize(args.device)
                seconds = time.perf_counter() - began
            finally:
                engine.cache_implementation = None
            found[f"{cache} tokens/s"] = sum(len(r.token_ids) for rs in out
                                             for r in rs) / seconds
        found["static / dynamic"] = found["static tokens/s"] / found["dynamic tokens/s"]
        print(json.dumps(found, indent=1))
        FIGURES["static cache"] = found

    @step("ACE pass memory", args)
    def _():
        from attention_memory import batch_items, measure, variants
        engine = loaded_engine()
        forced = batch_items(engine, 8, args.max_new_tokens, work / "images")
        runs = variants(engine, forced)  # the same passes as bench/attention_memory.py
        figures = {name: round(measure(engine, args.device, runs[variant], repeats=1)[0], 1)
                   for name, variant in (("plain forward", "plain forward, last logits only"),
                                         ("ACE pass", "ACE pass (this engine)"))}
        if figures["plain forward"] > 0:  # on a CPU, RSS peaks are coarse (bench/common.py)
            figures["ratio"] = round(figures["ACE pass"] / figures["plain forward"], 3)
        print(f"peak MB over 8 prompts + {args.max_new_tokens}-token responses: {figures}")
        FIGURES["ACE pass memory"] = figures

    @step("flow (vllm)", args)
    def _():
        try:
            import vllm
        except Exception as exc:  # ImportError, or a vLLM build that does not load here
            FIGURES["flow (vllm)"] = {"skipped": f"vLLM does not import: {exc}"}
            print(f"skipped: vLLM does not import here ({type(exc).__name__}: {exc})")
            return
        print(f"vLLM {vllm.__version__}")
        from rap.rap_core.engines import base as engine_mod
        state["engine"] = None  # the device memory goes to vLLM
        engine_mod.load_engine.cache_clear()
        import gc
        gc.collect()
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
        flow("vllm")

    FIGURES["seconds"] = round(time.perf_counter() - RUN["started"], 1)
    write_figures()
    print("\n== figures\n" + json.dumps(FIGURES, indent=1, default=str))
    return 0


# peak memory bandwidth by device name (the vendors' figures); else measured with a large copy
BANDWIDTH_BPS = {"H200": 4.8e12, "H100 SXM": 3.35e12, "H100 80GB HBM3": 3.35e12,
                 "H100 NVL": 3.9e12, "H100 PCIe": 2.0e12, "A100-SXM4-80GB": 2.04e12,
                 "A100 80GB PCIe": 1.94e12, "A100-SXM4-40GB": 1.56e12, "L40S": 0.864e12}


def device_bandwidth(device: str) -> tuple[float, str]:
    """(bytes/s, where the figure came from)."""
    import torch
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        for key, bps in BANDWIDTH_BPS.items():
            if key in name:
                return bps, f"{name}: the vendor's figure"
    from engine import bandwidth
    return bandwidth(device), "measured: a 1 GiB copy"


def memory_bound_tokens_s(model, rows: int, new_tokens: float, bandwidth: float) -> float:
    """Tokens/s if every decode step only had to read the text decoder's and the head's
    weights once, and each row's KV cache (at its mean length over the response), at the
    device's bandwidth: the memory-bound ceiling of a decode step of that many rows."""
    from rap.rap_core.engines.batching import Shapes
    shapes = Shapes.of(model)
    decoder = model.get_decoder()
    embedding = decoder.get_input_embeddings().weight.numel()
    weights = (sum(p.numel() for p in decoder.parameters()) - embedding
               + model.get_output_embeddings().weight.numel()) * shapes.dtype_bytes
    kv_per_token = 2 * shapes.layers * shapes.kv_heads * shapes.head_dim * shapes.dtype_bytes
    prompt = 100  # easy-VQA's prompts with their image, about
    kv = rows * (prompt + new_tokens / 2) * kv_per_token
    return rows * bandwidth / (weights + kv)


if __name__ == "__main__":
    sys.exit(main())
