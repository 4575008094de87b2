"""Batch-invariant sampling at the cost of a few passes over the logits.

With one shared RNG a sample's rollouts would depend on which samples share its batch, so a
resumed run, another batch size or another shard split would give different facts. Here the
uniform that draws rollout r's t-th token is a hash of (rollout seed, t, attempt): rollout r of
sample x under condition c always draws from the same stream, with no generator per row and
no Python loop over rows.

A draw is an inverse-CDF lookup in two levels (sums of blocks of the vocabulary, then one
block), so no full cumulative sum is built. Nucleus (top_p) sampling needs no sort: a token
drawn from the whole distribution is kept when the mass of the tokens more likely than it is
below top_p, else drawn again with the next attempt's uniform. That is exact rejection
sampling of the nucleus (ties at its edge are all inside it); the rare row still rejected
after REJECTION_ROUNDS attempts is drawn from its nucleus found by a sort of that row alone.
Every reduction runs within a row, in fixed-size blocks, so a row's arithmetic does not
depend on the rows beside it.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from rap.rap_core.keys import short_hash

BLOCK = 1024
REJECTION_ROUNDS = 16
SYNC_FREE_DRAWS = 3
_MASK32 = 0xFFFFFFFF


def rollout_seed(seed: int, sample_id: str, condition: str, index: int) -> int:
    return int(short_hash(seed, sample_id, condition, index), 16) % (2**63 - 1)


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2^32 for x in [0, 2^32), in int64 without overflow (16-bit halves)."""
    low = (x & 0xFFFF) * c
    high = (((x >> 16) * c) & 0xFFFF) << 16
    return (low + high) & _MASK32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (xor-shift-multiply, 'lowbias32')."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def counter_uniforms(seeds: torch.Tensor, step: int, attempt: int = 0) -> torch.Tensor:
    """One float64 uniform in [0, 1) per seed (int64, >= 0) for (step, attempt): a pure
    function of its arguments, 53 random bits from two hashed words."""
    low, high = seeds & _MASK32, seeds >> 32
    counter = ((step & 0xFFFFFF) << 8) | (attempt & 0xFF)

    def word(salt: int) -> torch.Tensor:
        return _hash32(low ^ _hash32(high ^ _hash32(torch.full_like(seeds, counter ^ salt))))

    a, b = word(0x68E31DA4) >> 5, word(0x3C6EF372) >> 6
    return (a * 67108864 + b).double() / 9007199254740992.0


def _blocks(weights: torch.Tensor) -> torch.Tensor:
    """Per-row sums of consecutive BLOCK-wide slices (the last one may be shorter), float64."""
    full = weights.shape[-1] // BLOCK * BLOCK
    sums = [weights[:, :full].view(weights.shape[0], -1, BLOCK).sum(-1)] if full else []
    if full < weights.shape[-1]:
        sums.append(weights[:, full:].sum(-1, keepdim=True))
    return torch.cat(sums, -1).double()


def inverse_cdf(weights: torch.Tensor, block_sums: torch.Tensor,
                u: torch.Tensor) -> torch.Tensor:
    """The token whose cumulative weight interval holds u * total, per row (weights >= 0,
    unnormalised; every row has some weight)."""
    rows, vocab = weights.shape
    cum = block_sums.cumsum(-1)
    target = u * cum[:, -1]
    block = torch.searchsorted(cum, target[:, None], right=True).clamp_(max=cum.shape[1] - 1)
    before = torch.where(block > 0, cum.gather(1, (block - 1).clamp(min=0)), 0.0)
    index = block * BLOCK + torch.arange(BLOCK, device=weights.device)
    inside = weights.gather(1, index.clamp(max=vocab - 1)) * (index < vocab)
    offset = (target[:, None] - before).to(inside.dtype)
    pos = torch.searchsorted(inside.cumsum(-1), offset, right=True).clamp_(max=BLOCK - 1)
    # rounding can land past the block's last token with weight: take that token
    last = (torch.arange(BLOCK, device=weights.device) * (inside > 0)).argmax(-1, keepdim=True)
    return (block * BLOCK + torch.minimum(pos, last)).squeeze(1)


class Workspace:
    """Buffers of a (rows, vocabulary) shape, reused step after step (a call with fewer rows
    takes the first rows of one): on a CPU a fresh tensor of that size costs as much as a
    pass over it (its pages are mapped anew)."""

    def __init__(self):
        self.buffers: dict[str, torch.Tensor] = {}
        self.nonfinite: torch.Tensor | None = None  # device flags of host_sync=False
        self.tail_draws: torch.Tensor | int = 0

    def get(self, name: str, like: torch.Tensor, dtype=None) -> torch.Tensor:
        dtype = dtype or like.dtype
        rows, *rest = like.shape
        buf = self.buffers.get(name)
        if buf is None or buf.shape[0] < rows or list(buf.shape[1:]) != rest \
                or buf.dtype != dtype or buf.device != like.device:
            buf = self.buffers[name] = torch.empty(like.shape, dtype=dtype, device=like.device)
        return buf[:rows]


def _mass_above(weights: torch.Tensor, chosen: torch.Tensor, space: Workspace) -> torch.Tensor:
    """Per row, the weight of the tokens strictly more likely than the chosen one."""
    level = weights.gather(1, chosen[:, None])
    # sum over w > level of w = sum of (w - level)+ + level * count(w > level): two cheap
    # passes into reused buffers instead of a masked copy
    excess = torch.sub(weights, level, out=space.get("excess", weights)).clamp_(min=0)
    above = torch.sign(excess, out=space.get("above", weights))  # 1.0 where w > level
    return _blocks(excess).sum(-1) + level.squeeze(1).double() * _blocks(above).sum(-1)


def sample_rows(scores: torch.Tensor, seeds: torch.Tensor, step: int, temperature: float,
                top_p: float, space: Workspace | None = None,
                host_sync: bool = True) -> torch.Tensor:
    """One token per row from softmax(scores / temperature) restricted to its top_p nucleus,
    drawn with the row's counter-based uniforms. host_sync=False (a GPU) never waits for the
    device: NaN logits are flagged in space.nonfinite, and a row still outside the nucleus
    after SYNC_FREE_DRAWS draws keeps its last one, counted in space.tail_draws (a chance of
    at most (1 - top_p) ** SYNC_FREE_DRAWS per token)."""
    space = space or Workspace()
    scores = scores.float()
    weights = torch.sub(scores, scores.amax(-1, keepdim=True), out=space.get("weights", scores))
    if temperature != 1.0:
        weights.div_(temperature)
    weights.exp_()
    sums = _blocks(weights)
    finite = torch.isfinite(sums).all()
    if not host_sync:
        space.nonfinite = space.nonfinite | ~finite if space.nonfinite is not None else ~finite
    elif not bool(finite):
        raise RuntimeError("sampling: the logits hold NaN or infinite values")
    chosen = inverse_cdf(weights, sums, counter_uniforms(seeds, step))
    if top_p >= 1.0:
        return chosen
    total = sums.sum(-1)
    if not host_sync:
        return _nucleus_without_sync(weights, sums, total, chosen, seeds, step, top_p, space)
    # a token above (1 - top_p) of the mass is inside the nucleus whatever the rest is
    pending = (weights.gather(1, chosen[:, None]).squeeze(1).double()
               <= (1.0 - top_p) * total).nonzero().squeeze(1)
    for attempt in range(REJECTION_ROUNDS):
        if pending.numel() == 0:
            return chosen
        rows = weights if pending.numel() == weights.shape[0] else torch.index_select(
            weights, 0, pending, out=space.get("subset", weights[:pending.numel()]))
        inside = _mass_above(rows, chosen[pending], space) < top_p * total[pending]
        pending = pending[~inside]
        if pending.numel():
            chosen[pending] = inverse_cdf(weights, sums, counter_uniforms(
                seeds, step, attempt + 1))[pending]
    if pending.numel():
        nucleus = top_p_filter(weights[pending] / total[pending, None].float(), top_p)
        chosen[pending] = inverse_cdf(nucleus, _blocks(nucleus), counter_uniforms(
            seeds[pending], step, REJECTION_ROUNDS + 1))
    return chosen


def _nucleus_without_sync(weights, sums, total, chosen, seeds, step: int, top_p: float,
                          space: Workspace) -> torch.Tensor:
    """The rejection rounds as whole-batch tensor operations, a fixed number of them: a
    redraw where the last draw lies outside, then a count of those still outside."""
    for attempt in range(1, SYNC_FREE_DRAWS):
        outside = _mass_above(weights, chosen, space) >= top_p * total
        redraw = inverse_cdf(weights, sums, counter_uniforms(seeds, step, attempt))
        chosen = torch.where(outside, redraw, chosen)
    outside = _mass_above(weights, chosen, space) >= top_p * total
    space.tail_draws = space.tail_draws + outside.sum()
    return chosen


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail outside the smallest set whose mass reaches top_p (keeps >= 1 token);
    by a sort: the reference the sampler's rejection test agrees with."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(-1, descending=True)
    outside = sorted_probs.cumsum(-1) - sorted_probs >= top_p
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)


class CounterSampler(LogitsProcessor):
    """Draws each row's next token with that row's counter-based stream and marks it in the
    scores (+inf), so a greedy step takes it; suppressed tokens are never drawn. Called once
    per decode step, for every row, so the step count is each row's draw count. On a GPU it
    never waits for the device (sample_rows' host_sync); check() then says what it found."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device,
                 suppress: list[int] = ()):
        self.seeds = torch.tensor(seeds, dtype=torch.int64, device=device)
        self.temperature, self.top_p = temperature, top_p
        self.suppress = torch.tensor(list(suppress), dtype=torch.int64, device=device)
        self.step = 0
        self.space = Workspace()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor):
        if self.suppress.numel():
            scores = scores.index_fill_(-1, self.suppress, float("-inf"))  # generate's own copy
        chosen = sample_rows(scores, self.seeds, self.step, self.temperature, self.top_p,
                             self.space, host_sync=self.seeds.device.type == "cpu")
        self.step += 1
        return scores.scatter_(-1, chosen[:, None], float("inf"))

    def check(self) -> int:
        """After generate: raises if any step's logits were not finite; returns how many
        tokens were kept from outside the nucleus (host_sync=False only)."""
        if self.space.nonfinite is not None and bool(self.space.nonfinite):
            raise RuntimeError("sampling: the logits hold NaN or infinite values")
        return int(self.space.tail_draws)
