"""The GPU check (bench/gpu_check.sh runs it): on one GPU, with nothing downloaded, a random-
weight model of Qwen2.5-VL-7B's published shapes in bfloat16 through, in this order (the most
telling first, so a short budget keeps what matters most):

1. the `rap` flow end to end on --flow-n easy-VQA samples (all rollouts; the model is built
   on the device and saved to a folder first);
2. the transformers engine: samples/s and generated tokens/s at M = 5 and 256 new tokens
   (random weights never stop early: every response is 256 tokens, the worst case);
3. the ACE pass: peak GPU memory against a plain forward over the same batch;
4. the vLLM engine on the same folder, if vLLM imports here (else says why).

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

from common import easy_vqa_samples, machine, table

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
# part to the sizes asked for. 7b: one H200, bfloat16 (the flows' fixed part, Prefect's
# temporary server and the model's load, is a guess inside the measured total). small: 2 CPU
# cores, float32, measured at 16 samples / prompts and scaled up (the flow 163 s, the engine
# 298 + 304 s); vLLM does not import there, so its flow is taken as the transformers flow's.
ESTIMATE_S = {
    "7b": {"build": (30, 0), "save checkpoint": (60, 0), "flow (transformers)": (20, 130),
           "transformers engine": (10, 80), "ACE pass memory": (30, 0),
           "flow (vllm)": (60, 240)},
    "small": {"build": (5, 0), "save checkpoint": (3, 0), "flow (transformers)": (20, 1900),
              "transformers engine": (2, 1250), "ACE pass memory": (10, 0),
              "flow (vllm)": (20, 1900)},
}

FIGURES: dict = {}
RUN = {"started": time.perf_counter(), "budget_s": float("inf"), "out": None}


def estimate(name: str, args) -> float:
    fixed, scaled = ESTIMATE_S[args.shapes][name]
    if name.startswith("flow"):
        return fixed + scaled * (args.flow_n / 200) * (args.flow_max_new_tokens / 64) \
            * args.m / 5
    if name == "transformers engine":
        return fixed + scaled * (args.n / 32) * (args.max_new_tokens / 256) * args.m / 5
    return fixed + scaled


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
    parser.add_argument("--n", type=int, default=32, help="prompts for the engine figures")
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--flow-n", type=int, default=200)
    parser.add_argument("--flow-max-new-tokens", type=int, default=64)
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp one)")
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="the whole run's seconds: steps that would not fit are skipped")
    args = parser.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
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
            all_rollouts=True, batch_size=args.batch, track=False, export=False)
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
        rows = []
        for with_images in (True, False):
            # multimodal may use half of what is left, text-only the rest; a batch that would
            # not fit ends the condition early (its rates stay rates over what ran)
            share = left_s() / (2 if with_images else 1)
            synchronize(args.device)
            start = time.perf_counter()
            out, slowest = [], 0.0
            for i in range(0, len(prompts), args.batch):
                if i and time.perf_counter() - start + slowest > share:
                    break
                began = time.perf_counter()
                out += engine.generate(prompts[i:i + args.batch], with_images, rollout)
                synchronize(args.device)
                slowest = max(slowest, time.perf_counter() - began)
            seconds = time.perf_counter() - start
            tokens = sum(len(r.token_ids) for rs in out for r in rs)
            row = {"condition": "multimodal" if with_images else "text-only",
                   "samples": len(out), "seconds": seconds,
                   "samples/s": len(out) / seconds, "tokens/s": tokens / seconds}
            if len(out) < len(prompts):
                row["cut"] = f"{len(out)} of {len(prompts)} prompts: the next batch would not fit"
                print(f"{row['condition']}: {row['cut']}", flush=True)
            rows.append(row)
        print(table(rows))
        FIGURES["transformers engine"] = {"batch": args.batch, "m": args.m,
                                          "max_new_tokens": args.max_new_tokens, "rows": rows}

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


def synchronize(device: str) -> None:
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    sys.exit(main())
