"""Supervised training of a small Qwen2-VL-family model on (image, question, response) examples.

Prompts are built exactly as the engine builds them (same chat template, same image slots,
text-only prompts with the slots removed), so what is trained is what RAP later rolls out.
The loss covers the response tokens only. Same examples + same seed -> same weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from rap.rap_core.io.prompts import build_messages


@dataclass(frozen=True)
class Example:
    question: str
    response: str
    image: str | None  # image path; None trains the text-only condition


@dataclass
class TrainStats:
    steps: int
    examples_seen: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean loss per logged window

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")


class Encoder:
    """Token ids for examples, images through the processor once per path."""

    def __init__(self, processor, system_prompt: str | None = None):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.system_prompt = system_prompt
        self.image_token = processor.image_token
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        self.merge = processor.image_processor.merge_size ** 2
        self._images: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._prompts: dict[tuple[str, int], list[int]] = {}

    def image(self, path: str) -> tuple[torch.Tensor, torch.Tensor]:
        if path not in self._images:
            from rap.rap_core.io.images import load_rgb  # as the engine opens them
            out = self.processor.image_processor(images=[load_rgb(path)], return_tensors="pt")
            self._images[path] = (out["pixel_values"], out["image_grid_thw"])
        return self._images[path]

    def prompt_ids(self, question: str, image: str | None) -> list[int]:
        n_tokens = int(self.image(image)[1].prod()) // self.merge if image else 0
        key = (question, n_tokens)
        if key not in self._prompts:
            text = self.processor.apply_chat_template(
                build_messages(question, 1 if image else 0, image is not None, self.system_prompt),
                add_generation_prompt=True, tokenize=False)
            text = text.replace(self.image_token, self.image_token * n_tokens)
            self._prompts[key] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self._prompts[key]

    def response_ids(self, response: str) -> list[int]:
        return self.tokenizer(response, add_special_tokens=False)["input_ids"] + [
            self.tokenizer.eos_token_id]

    def batch(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        """Right-padded inputs with labels on the response tokens only."""
        prompts = [self.prompt_ids(e.question, e.image) for e in examples]
        responses = [self.response_ids(e.response) for e in examples]
        width = max(len(p) + len(r) for p, r in zip(prompts, responses))
        ids = torch.full((len(examples), width), self.tokenizer.pad_token_id)
        labels = torch.full((len(examples), width), -100)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        for b, (p, r) in enumerate(zip(prompts, responses)):
            ids[b, :len(p) + len(r)] = torch.tensor(p + r)
            labels[b, len(p):len(p) + len(r)] = torch.tensor(r)
            mask[b, :len(p) + len(r)] = 1
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels,
                 "mm_token_type_ids": (ids == self.image_token_id).long()}
        images = [self.image(e.image) for e in examples if e.image]
        if images:
            batch["pixel_values"] = torch.cat([p for p, _ in images])
            batch["image_grid_thw"] = torch.cat([g for _, g in images])
        return batch


def _lr_at(step: int, steps: int, lr: float) -> float:
    warmup = max(1, steps // 20)
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _epoch_order(rng: np.random.Generator, n: int, steps: int, batch_size: int) -> np.ndarray:
    """Indices for `steps` batches: one seeded permutation per epoch, concatenated."""
    return np.concatenate([rng.permutation(n) for _ in range(math.ceil(steps * batch_size / n))])


def _run_steps(optimiser, order: np.ndarray, *, steps: int, batch_size: int, lr: float,
               step_loss: Callable[[np.ndarray], torch.Tensor], log_every: int,
               progress: Callable[[int, int, float], None] | None,
               clip: list | None = None) -> TrainStats:
    """The optimisation loop both trainers share: schedule, step, loss windows, progress."""
    stats, window, started = TrainStats(steps, 0, 0.0), [], time.perf_counter()
    if progress:
        progress(0, steps, float("nan"))
    for step in range(steps):
        picked = order[step * batch_size:(step + 1) * batch_size]
        for group in optimiser.param_groups:
            group["lr"] = _lr_at(step, steps, lr)
        loss = step_loss(picked)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(clip, 1.0)
        optimiser.step()
        window.append(loss.item())
        stats.examples_seen += len(picked)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            stats.losses.append(float(np.mean(window)))
            window = []
            if progress:
                progress(step + 1, steps, stats.losses[-1])
    stats.seconds = time.perf_counter() - started
    return stats


def train(model, processor, examples: list[Example], *, steps: int, batch_size: int = 32,
          lr: float = 1e-3, seed: int = 0, log_every: int = 20,
          progress: Callable[[int, int, float], None] | None = None) -> TrainStats:
    """AdamW over `steps` batches drawn epoch by epoch in a seeded order."""
    if not examples:
        raise ValueError("no training examples")
    torch.manual_seed(seed)
    order = _epoch_order(np.random.default_rng(seed), len(examples), steps, batch_size)
    encoder = Encoder(processor)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98),
                                  weight_decay=0.01)
    model.train()
    stats = _run_steps(
        optimiser, order, steps=steps, batch_size=batch_size, lr=lr, log_every=log_every,
        progress=progress, clip=list(model.parameters()),
        step_loss=lambda picked: model(**encoder.batch([examples[i] for i in picked])).loss)
    model.eval()
    return stats


def pretrain_vision(model, processor, images: list[str], targets: dict[str, list[int]], *,
                    steps: int, batch_size: int = 32, lr: float = 1e-3, seed: int = 0,
                    log_every: int = 20,
                    progress: Callable[[int, int, float], None] | None = None) -> TrainStats:
    """Teach the vision tower the images' attributes through linear heads on its mean-pooled
    output (the heads are thrown away), as real VLMs start from a trained vision encoder.
    targets: per attribute, one class index per image, -1 where unknown."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    encoder, visual = Encoder(processor), model.model.visual
    width = model.config.get_text_config().hidden_size
    heads = torch.nn.ModuleDict({name: torch.nn.Linear(width, max(labels) + 1)
                                 for name, labels in targets.items()})
    labels = {name: torch.tensor(values) for name, values in targets.items()}
    optimiser = torch.optim.AdamW(list(visual.parameters()) + list(heads.parameters()), lr=lr,
                                  weight_decay=0.01)
    order = _epoch_order(rng, len(images), steps, batch_size)

    def step_loss(picked: np.ndarray) -> torch.Tensor:
        pixels = [encoder.image(images[i]) for i in picked]
        out = visual(torch.cat([p for p, _ in pixels]),
                     grid_thw=torch.cat([g for _, g in pixels])).pooler_output
        pooled = out.view(len(picked), -1, out.shape[-1]).mean(1)
        return sum(torch.nn.functional.cross_entropy(heads[name](pooled),
                                                     labels[name][picked], ignore_index=-1)
                   for name in heads)

    visual.train()
    stats = _run_steps(optimiser, order, steps=steps, batch_size=batch_size, lr=lr,
                       step_loss=step_loss, log_every=log_every, progress=progress)
    visual.eval()
    return stats
