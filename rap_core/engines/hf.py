"""The transformers engine: batched sampling and the final-layer attention pass."""

from __future__ import annotations

import copy
import ctypes
import functools
import os
import platform
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import LogitsProcessorList

from rap.rap_core.engines.attention import final_layer_weights
from rap.rap_core.engines.attention_stats import column_log_sums, reduce_heads
from rap.rap_core.engines.batching import (DEFAULT_BATCH, Shapes, attention_row_bytes,
                                           fitting_prompts, generation_row_bytes)
from rap.rap_core.engines.base import EngineConfigError, PromptItem, Response, SampleError
from rap.rap_core.engines.hf_loading import load_model_and_processor
from rap.rap_core.params import RolloutSettings
from rap.rap_core.io.images import load_rgb
from rap.rap_core.engines.sampling import CounterSampler, rollout_seed


def _load_images(paths: tuple[str, ...], max_pixels: int | None = None):
    return [load_rgb(p, max_pixels) for p in paths]


@functools.cache
def keep_large_blocks_on_heap() -> bool:
    """On a CPU under glibc, every block above 32 MB is mapped afresh and unmapped on free,
    so each decode step pays page faults for the (rows, vocabulary) logits and the tensors
    made from them (a fresh 48 MB tensor cost 16 ms here, 3 ms from the heap). Serving all
    blocks from the heap, and trimming it only above 1 GiB free, makes them reuse memory.
    Once per process; left alone where MALLOC_* variables are set (the user's choice, or a
    benchmark measuring peak memory). Returns whether it is in effect."""
    done = False
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc" and not any(
            k.startswith("MALLOC_") for k in os.environ):
        try:
            libc = ctypes.CDLL(None)
            m_trim_threshold, m_mmap_max = -1, -4
            done = bool(libc.mallopt(m_mmap_max, 0)) and bool(
                libc.mallopt(m_trim_threshold, 2**30))
        except (OSError, AttributeError):
            done = False
    return done


def _take_marked_tokens(model, *args, generation_config, **kwargs):
    """generate's own decoding loop, taking each step's most likely token: the sampler has
    marked the drawn one. (generate accepts M sequences per prompt only when sampling, and
    encodes each image once before it expands the batch.)"""
    greedy = copy.copy(generation_config)
    greedy.do_sample = False
    return type(model)._sample(model, *args, generation_config=greedy, **kwargs)


class HFEngine:
    """Qwen2-VL family through transformers; sdpa attention but for the final text layer."""

    def __init__(self, model_dir: str, device: str, dtype: str, system_prompt: str | None):
        model, processor = load_model_and_processor(Path(model_dir), device, dtype)
        self._setup(model, processor, device, system_prompt)

    @classmethod
    def from_loaded(cls, model, processor, device: str = "cpu",
                    system_prompt: str | None = None) -> "HFEngine":
        """An engine over a model already in memory (training, evaluation); generation
        only unless the text attention is eager. The processor must pad on the left."""
        engine = cls.__new__(cls)
        engine._setup(model, processor, device, system_prompt)
        return engine

    def _setup(self, model, processor, device: str, system_prompt: str | None) -> None:
        self.model, self.processor = model, processor
        self.device = device
        if str(device) == "cpu":
            keep_large_blocks_on_heap()
        # "static": a preallocated KV cache (on CUDA generate then compiles the decode step);
        # kept off by default until it is measured faster where users run it (README)
        self.cache_implementation: str | None = None
        self.stats: Counter = Counter()  # logged by the inference tasks when not empty
        self.system_prompt = system_prompt
        self.tokenizer = self.processor.tokenizer
        size = getattr(self.processor.image_processor, "size", None) or {}
        # the processor resizes into at most `longest_edge` pixels; images far above that are
        # shrunk first (to 4x, so its own resize of ordinary images stays exactly as it was)
        longest = getattr(size, "longest_edge", None) or (
            size.get("longest_edge") if isinstance(size, dict) else None)
        self.max_pixels = 4 * longest if longest else None
        self.image_token_id = self.model.config.image_token_id
        self.context = self.model.config.get_text_config().max_position_embeddings
        cfg = self.model.config
        self.vision_tokens = [t for t in (cfg.image_token_id, cfg.video_token_id,
                                          getattr(cfg, "vision_start_token_id", None),
                                          getattr(cfg, "vision_end_token_id", None)) if t is not None]

    def _prompt_texts(self, items: list[PromptItem], with_images: bool) -> list[str]:
        return [self.processor.apply_chat_template(
            it.messages(with_images, self.system_prompt), add_generation_prompt=True,
            tokenize=False) for it in items]

    def _encode(self, items: list[PromptItem], with_images: bool):
        prompts = self._prompt_texts(items, with_images)
        images = ([im for it in items for im in _load_images(it.image_paths, self.max_pixels)]
                  if with_images else None)
        inputs = self.processor(text=prompts, images=images or None, padding=True,
                                return_tensors="pt")
        if images:
            self._assert_images_carried(inputs, items)
        return inputs.to(self.device)

    def _assert_images_carried(self, inputs, items: list[PromptItem]) -> None:
        """A processor that silently drops images would make CDE meaningless."""
        n_tokens = (inputs["input_ids"] == self.image_token_id).sum(1)
        need = torch.tensor([len(it.image_paths) for it in items])
        if "pixel_values" not in inputs or bool((n_tokens <= need).any()):
            raise EngineConfigError("multimodal inputs carry no pixel values / image tokens: "
                                    "the checkpoint's processor is not an image processor")

    def batch_size_for(self, items: list[PromptItem], with_images: bool, rows_per_item: int,
                       new_tokens: int) -> int:
        """`--batch-size auto`: on CUDA the most items whose rows fit in the device's free
        memory at the longest of these prompts (rap_core.engines.batching); new_tokens 0
        means the attention pass (prompt + response, one row each); elsewhere the default."""
        if not str(self.device).startswith("cuda"):
            return DEFAULT_BATCH
        shapes = Shapes.of(self.model)
        longest = max(n + len(it.response_ids)
                      for n, it in zip(self._prompt_token_counts(items, with_images), items))
        row = (attention_row_bytes(shapes, longest) if new_tokens == 0 else
               generation_row_bytes(shapes, longest, new_tokens))
        free, _ = torch.cuda.mem_get_info(torch.device(self.device))
        return fitting_prompts(free, row, rows_per_item, len(items))

    def _prompt_token_counts(self, items: list[PromptItem], with_images: bool) -> list[int]:
        """Each prompt's tokens without processing its images: the template's text, and
        per image the tokens the image processor makes of its size (read from the header)."""
        texts = self._prompt_texts(items, with_images)
        counts = [len(ids) for ids in self.tokenizer(texts)["input_ids"]]
        if not with_images:
            return counts
        # each image's one placeholder token becomes its tokens
        return [n + sum(self._image_tokens(p) - 1 for p in it.image_paths)
                for n, it in zip(counts, items)]

    def _image_tokens(self, path: str) -> int:
        image_processor = self.processor.image_processor
        try:
            with Image.open(path) as img:
                width, height = img.size
            patches = image_processor.get_number_of_image_patches(height, width, {})
        except Exception:  # unreadable: that sample fails on its own later
            return 0
        return patches // getattr(image_processor, "merge_size", 2) ** 2

    def _prompt_lengths(self, inputs) -> list[int]:
        return inputs["attention_mask"].sum(1).tolist()

    def generate(self, items, with_images: bool, rollout: RolloutSettings):
        inputs = self._encode(items, with_images)
        lengths = self._prompt_lengths(inputs)
        too_long = [n + rollout.max_new_tokens > self.context for n in lengths]
        if any(too_long):
            return self._split_too_long(items, too_long, lengths, with_images, rollout)
        decoding = self._decoding(items, with_images, rollout)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **decoding)
        for sampler in decoding.get("logits_processor", []):
            tail = sampler.check()
            if tail:
                self.stats["tokens kept from outside the nucleus"] += tail
        new = out[:, inputs["input_ids"].shape[1]:].cpu()
        responses = [self._response(row) for row in new]
        per_item = len(responses) // len(items)
        return [responses[i * per_item:(i + 1) * per_item] * (rollout.m // per_item)
                for i in range(len(items))]

    def _decoding(self, items, with_images: bool, rollout: RolloutSettings) -> dict:
        """Greedy (one response, repeated) at temperature 0, else per-rollout seeded
        sampling: the sampler picks each token and generate's loop takes it greedily
        (its own softmax and multinomial over the vocabulary would cost more than ours)."""
        common = dict(max_new_tokens=rollout.max_new_tokens)
        if self.cache_implementation:
            common["cache_implementation"] = self.cache_implementation
        if rollout.temperature == 0:
            return {**common, "do_sample": False, "num_return_sequences": 1,
                    "suppress_tokens": self.vision_tokens}
        condition = "mm" if with_images else "text"
        seeds = [rollout_seed(rollout.seed, it.sample_id, condition, r)
                 for it in items for r in range(rollout.m)]
        sampler = CounterSampler(seeds, rollout.temperature, rollout.top_p, self.device,
                                 self.vision_tokens)
        return {**common, "do_sample": True, "num_return_sequences": rollout.m,
                "temperature": 1.0, "top_p": 1.0, "top_k": 0,
                "logits_processor": LogitsProcessorList([sampler]),
                "custom_generate": _take_marked_tokens}

    def _split_too_long(self, items, too_long, lengths, with_images, rollout):
        ok = [it for it, bad in zip(items, too_long) if not bad]
        done = iter(self.generate(ok, with_images, rollout) if ok else [])
        return [SampleError("prompt_too_long", f"prompt of {n} tokens + max_new_tokens "
                            f"{rollout.max_new_tokens} exceeds the context of {self.context}")
                if bad else next(done) for bad, n in zip(too_long, lengths)]

    def _response(self, row: torch.Tensor) -> Response:
        ids = row.tolist()
        eos = self.tokenizer.eos_token_id
        if eos in ids:
            ids = ids[:ids.index(eos) + 1]
        ids = [t for t in ids if t != self.tokenizer.pad_token_id]
        return Response(self.tokenizer.decode(ids, skip_special_tokens=True), tuple(ids))

    def attention_column_log_sums(self, items, head_reduce: str):
        for it in items:
            if self.image_token_id in it.response_ids or not it.response_ids:
                raise SampleError("bad_response", "response to teacher-force is empty or "
                                  "contains image tokens")
        inputs = self._encode(items, with_images=True)
        spans = self._append_responses(inputs, items)
        maps = self._final_layer_attention(inputs)
        return [column_log_sums(reduce_heads(maps[b], head_reduce)[s:e, s:e]).astype(np.float64)
                for b, (s, e) in enumerate(spans)]

    def _append_responses(self, inputs, items) -> list[tuple[int, int]]:
        """Turn left-padded prompts into left-padded prompt + response sequences, in place;
        returns each response's (start, end) column span."""
        lengths = self._prompt_lengths(inputs)
        width = max(n + len(it.response_ids) for n, it in zip(lengths, items))
        columns = ["input_ids", "attention_mask"] + (
            ["mm_token_type_ids"] if "mm_token_type_ids" in inputs else [])
        fresh = {k: torch.zeros((len(items), width), dtype=inputs[k].dtype) for k in columns}
        fresh["input_ids"].fill_(self.tokenizer.pad_token_id)
        spans = []
        for b, (n, it) in enumerate(zip(lengths, items)):
            start = width - n - len(it.response_ids)
            response = torch.tensor(it.response_ids)
            for k in columns:
                fresh[k][b, start:start + n] = inputs[k][b, -n:].cpu()
            fresh["input_ids"][b, start + n:] = response
            fresh["attention_mask"][b, start + n:] = 1
            spans.append((start + n, width))
        for k in columns:
            inputs[k] = fresh[k].to(self.device)
        return spans

    def _final_layer_attention(self, inputs) -> torch.Tensor:
        """Only the last decoder layer's weights are kept (a hook), never all layers; only
        the last position's logits are computed (ACE needs none, and all of them would be a
        (batch, T, vocabulary) tensor)."""
        kept = {}
        layer = self.model.get_decoder().layers[-1].self_attn
        hook = layer.register_forward_hook(lambda mod, args, out: kept.update(w=out[1]))
        try:
            with torch.inference_mode(), final_layer_weights():
                self.model(**inputs, use_cache=False, logits_to_keep=1)
        finally:
            hook.remove()
        if kept.get("w") is None:
            raise EngineConfigError("final layer returned no attention weights (load the "
                                    "model with rap_core.engines.attention's implementation)")
        return kept["w"].cpu()
