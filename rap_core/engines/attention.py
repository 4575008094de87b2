"""Text attention for RAP: sdpa in every decoder layer; eager in the last one only while
the ACE pass reads its weights (inside `final_layer_weights()`).

ACE needs the final layer's attention weights, which only an eager layer returns. Running
every layer eager (the old way) materialises a (batch, heads, T, T) matrix per layer; keeping
the last layer eager during generation too cost a matrix per step for weights nobody reads. Registered under
NAME for transformers' attention and mask interfaces, so the masks it receives are the sdpa
ones (boolean, or None for plain causal attention) and are turned into the additive form
here. (Flipping one layer's config to eager instead would give it an sdpa mask of None and
attend non-causally.)
"""

from __future__ import annotations

import contextlib
import contextvars

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "rap_final_eager"
_WEIGHTS_WANTED = contextvars.ContextVar("rap_final_layer_weights", default=False)


@contextlib.contextmanager
def final_layer_weights():
    """Within this block the final text layer runs eager and returns its weights."""
    token = _WEIGHTS_WANTED.set(True)
    try:
        yield
    finally:
        _WEIGHTS_WANTED.reset(token)


def _additive_mask(mask: torch.Tensor | None, q_len: int, k_len: int,
                   dtype: torch.dtype, device) -> torch.Tensor:
    """0 where a query may attend, the dtype's minimum elsewhere; None means causal, with
    the queries being the last q_len positions."""
    if mask is None:
        mask = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril(k_len - q_len)
    elif mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(
        ~mask, torch.finfo(dtype).min)


def _is_final_layer(module) -> bool:
    return module.layer_idx == module.config.num_hidden_layers - 1


def final_layer_eager(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                      **kwargs):
    if not (_WEIGHTS_WANTED.get() and _is_final_layer(module)):
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      scaling=scaling, dropout=dropout, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    scores = scores + _additive_mask(attention_mask, query.shape[2], key.shape[2],
                                     scores.dtype, scores.device)
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


AttentionInterface.register(NAME, final_layer_eager)
AttentionMaskInterface.register(NAME, sdpa_mask)
