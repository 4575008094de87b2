"""ACE math: reduce a final-layer attention map to what psi needs.

psi_j(A) = prod_{i=j..L} sigma * A[i, j] = exp(n_j * log(sigma) + S_j), with
S_j = sum_{i>=j} log A[i, j] and n_j the run length. Storing S_j per response column makes
sigma and ace_min_run retunable in SQL (sql/macros/psi_log.sql, psi_norm_log.sql) with no model call.
"""

from __future__ import annotations

import numpy as np
import torch

# Attention weights that underflow to 0 would give -inf; clamp to the smallest float32 normal.
LOG_FLOOR = float(np.log(np.finfo(np.float32).tiny))


def reduce_heads(attn: torch.Tensor, how: str) -> torch.Tensor:
    """(heads, T, T) -> (T, T) by mean or max over heads."""
    return attn.float().mean(0) if how == "mean" else attn.float().amax(0)


def column_log_sums(response_attn: torch.Tensor) -> np.ndarray:
    """S_j for a (R, R) attention block over response tokens (rows are queries)."""
    logs = torch.log(response_attn.double()).clamp(min=LOG_FLOOR)
    lower = torch.tril(torch.ones_like(logs, dtype=torch.bool))
    return torch.where(lower, logs, torch.zeros_like(logs)).sum(0).numpy()
