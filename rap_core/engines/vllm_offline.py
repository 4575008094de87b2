"""Rollouts from vLLM's offline engine in this process (vLLM installed beside rap: not an
extra, since vLLM pins an older transformers than rap does).

One `LLM.generate` call per batch: each sample is one request with its images as
`multi_modal_data` and its own `SamplingParams(n=M, seed=...)`, so a sample's rollouts do not
depend on its batch. The prompt is the local processor's chat template over the same
messages as the transformers engine (rap_core.io.prompts). No attention weights come out of
vLLM: the ACE pass loads the transformers engine on the same checkpoint (after vLLM is shut
down, so both never hold the GPU at once).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Callable

from rap.rap_core.engines.base import Engine, PromptItem, Response, SampleError
from rap.rap_core.engines.sampling import rollout_seed
from rap.rap_core.errors import EngineConfigError
from rap.rap_core.io.images import load_rgb
from rap.rap_core.params import RolloutSettings

# share of the GPU vLLM may take for weights and KV cache
GPU_MEMORY = float(os.environ.get("RAP_VLLM_GPU_MEMORY", "0.85"))


class VllmEngine:
    def __init__(self, path: str, device: str, dtype: str, system_prompt: str | None,
                 local: Callable[[], Engine]):
        # vLLM places itself (CUDA, or its CPU build); device is the attention pass's
        try:
            from vllm import LLM
        except ImportError as exc:
            raise EngineConfigError(
                f"engine vllm needs vLLM importable beside rap ({type(exc).__name__}: {exc}); "
                "or serve the model with `vllm serve` and use --engine openai") from exc
        from rap.rap_core.engines.hf_loading import load_processor
        self.path, self.system_prompt = path, system_prompt
        self.processor = load_processor(Path(path))
        self._make = lambda: LLM(model=path, dtype=dtype, seed=0,
                                 gpu_memory_utilization=GPU_MEMORY,
                                 limit_mm_per_prompt={"image": 8})
        self.llm = self._make()
        self._local_loader, self._local = local, None
        self.samples_per_call = 256  # vLLM schedules the batch itself

    def requests(self, items: list[PromptItem], with_images: bool, rollout: RolloutSettings):
        """vLLM's inputs and sampling parameters, one request per item."""
        from vllm import SamplingParams
        condition = "mm" if with_images else "text"
        prompts, params = [], []
        for it in items:
            text = self.processor.apply_chat_template(
                it.messages(with_images, self.system_prompt), add_generation_prompt=True,
                tokenize=False)
            request = {"prompt": text}
            if with_images:
                request["multi_modal_data"] = {"image": [load_rgb(p) for p in it.image_paths]}
            prompts.append(request)
            greedy = rollout.temperature == 0
            params.append(SamplingParams(
                n=1 if greedy else rollout.m, temperature=rollout.temperature,
                top_p=rollout.top_p, max_tokens=rollout.max_new_tokens,
                seed=rollout_seed(rollout.seed, it.sample_id, condition, 0)))
        return prompts, params

    def generate(self, items, with_images: bool, rollout: RolloutSettings):
        prompts, params = self.requests(items, with_images, rollout)
        if self.llm is None:  # shut down for an attention pass; generating again
            self._local = None
            gc.collect()
            self.llm = self._make()
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        results = []
        for output in outputs:
            responses = [Response(o.text, tuple(o.token_ids)) for o in output.outputs]
            if not responses:
                results.append(SampleError("engine_rejected", "vLLM returned no output"))
                continue
            results.append((responses * rollout.m)[:rollout.m])
        return results

    def attention_column_log_sums(self, items: list[PromptItem], head_reduce: str):
        if self._local is None:
            self.shutdown()  # both never hold the GPU at once
            self._local = self._local_loader()
        return self._local.attention_column_log_sums(items, head_reduce)

    def shutdown(self) -> None:
        """Free vLLM's GPU memory before the transformers engine loads."""
        if getattr(self, "llm", None) is None:
            return
        self.llm = None
        gc.collect()
        try:
            import torch
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
