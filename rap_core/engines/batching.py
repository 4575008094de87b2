"""How many prompts one generate (or attention) call can take: `--batch-size auto`.

On CUDA, the most prompts whose rows fit in the device's free memory: each row holds the KV
cache of its longest possible sequence (the shard's longest prompt plus max_new_tokens, as
the batch is padded to it), the prefill's activations over that prompt, and the sampler's
float32 copies of a row of logits. Elsewhere (a CPU shares its memory with everything else
and gains little from wide batches) auto is DEFAULT_BATCH, the size used before auto existed.
A batch that runs out of memory anyway is split (engines.base.run_isolated).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BATCH = 8
MEMORY_SHARE = 0.85  # of the free memory; the allocator's fragments and the CUDA context
LOGIT_COPIES = 6  # generate's float32 copy, the sampler's weights and temporaries


@dataclass(frozen=True)
class Shapes:
    """What a row's memory depends on, read from the model's text config."""

    layers: int
    kv_heads: int
    heads: int
    head_dim: int
    hidden: int
    intermediate: int
    vocab: int
    dtype_bytes: int

    @classmethod
    def of(cls, model) -> "Shapes":
        text = model.config.get_text_config()
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        return cls(layers=text.num_hidden_layers,
                   kv_heads=getattr(text, "num_key_value_heads", None) or heads, heads=heads,
                   head_dim=head_dim, hidden=text.hidden_size,
                   intermediate=text.intermediate_size, vocab=text.vocab_size,
                   dtype_bytes=next(model.parameters()).element_size())


def generation_row_bytes(shapes: Shapes, prompt_tokens: int, new_tokens: int) -> int:
    """Device bytes one generated row needs at its peak."""
    kv = 2 * shapes.layers * shapes.kv_heads * shapes.head_dim * shapes.dtype_bytes \
        * (prompt_tokens + new_tokens)
    # one layer's prefill activations at a time: attention in/out, the MLP's three widths
    prefill = prompt_tokens * (4 * shapes.hidden + 3 * shapes.intermediate) * shapes.dtype_bytes
    logits = LOGIT_COPIES * shapes.vocab * 4
    return kv + prefill + logits


def attention_row_bytes(shapes: Shapes, tokens: int) -> int:
    """Device bytes one teacher-forced row of the ACE pass needs: the forward's activations
    and the final layer's (heads, T, T) weights, in float32 for the softmax and as kept."""
    forward = tokens * (4 * shapes.hidden + 3 * shapes.intermediate) * shapes.dtype_bytes
    weights = shapes.heads * tokens * tokens * (4 + shapes.dtype_bytes)
    return forward + weights + shapes.vocab * 4


def fitting_prompts(free_bytes: int, row_bytes: int, rows_per_prompt: int,
                    prompts: int) -> int:
    """The most prompts (1 to `prompts`) whose rows fit in MEMORY_SHARE of free_bytes."""
    fit = int(free_bytes * MEMORY_SHARE) // max(1, row_bytes * rows_per_prompt)
    return max(1, min(prompts, fit))
