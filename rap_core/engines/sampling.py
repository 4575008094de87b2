"""Batch-invariant sampling: every rollout draws from its own seeded generator.

With one shared RNG a sample's rollouts would depend on which samples share its batch, so a
resumed run, another batch size or another shard split would give different facts. Here
rollout r of sample x under condition c always uses seed (seed, x, c, r).
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from rap.rap_core.keys import short_hash


def rollout_seed(seed: int, sample_id: str, condition: str, index: int) -> int:
    return int(short_hash(seed, sample_id, condition, index), 16) % (2**63 - 1)


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail outside the smallest set whose mass reaches top_p (keeps >= 1 token)."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(-1, descending=True)
    outside = sorted_probs.cumsum(-1) - sorted_probs >= top_p
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


class PerRowSampler(LogitsProcessor):
    """Samples each row's next token with that row's generator; returns logits where only
    the drawn token is finite, so greedy decoding takes it."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device):
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor):
        probs = top_p_filter(torch.softmax(scores.float() / self.temperature, -1), self.top_p)
        chosen = torch.stack([torch.multinomial(probs[b], 1, generator=g)
                              for b, g in enumerate(self.generators)])
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(-1, chosen, 0.0)
