"""Float64 reference of SPEC §1 in PyTorch, for tests and the benchmark's verification.

It reads the KV cache through the block table exactly as the contract says (only the first
ceil(L / page_block_size) entries of a row, only the first L tokens), so NaN in padding or
garbage block ids past a sequence's end cannot reach it either.
"""

from __future__ import annotations

import math
from typing import Optional

import torch


def mla_decode_reference(q: torch.Tensor, k_cache: torch.Tensor, block_table: torch.Tensor,
                         cache_seqlens: torch.Tensor, head_dim_v: int = 512,
                         softmax_scale: Optional[float] = None,
                         causal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (out [b, s_q, h_q, head_dim_v] float64, lse [b, h_q, s_q] float64).

    Computed on q's device; a row with no visible key gets out = 0 and lse = +inf.
    """
    b, s_q, h_q, d = q.shape
    page, h_kv = k_cache.shape[1], k_cache.shape[2]
    group = h_q // h_kv
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(d)
    out = torch.zeros((b, s_q, h_q, head_dim_v), dtype=torch.float64, device=q.device)
    lse = torch.full((b, h_q, s_q), math.inf, dtype=torch.float64, device=q.device)
    for i, length in enumerate(cache_seqlens.tolist()):
        if length <= 0:
            continue
        blocks = block_table[i, :math.ceil(length / page)].long()
        kv = k_cache[blocks].reshape(-1, h_kv, d)[:length].double()     # [L, h_kv, d]
        kv = kv.repeat_interleave(group, dim=1)                         # [L, h_q, d]
        scores = torch.einsum("shd,lhd->hsl", q[i].double(), kv) * scale  # [h_q, s_q, L]
        if causal:
            last_visible = length - s_q + torch.arange(s_q, device=q.device)   # [s_q]
            keys = torch.arange(length, device=q.device)
            visible = keys[None, :] <= last_visible[:, None]                   # [s_q, L]
            scores = scores.masked_fill(~visible, -math.inf)
        row_lse = torch.logsumexp(scores, dim=-1)                              # [h_q, s_q]
        has_key = torch.isfinite(row_lse)
        probs = torch.exp(scores - row_lse[..., None]).nan_to_num(0.0)
        out[i] = torch.einsum("hsl,lhd->shd", probs, kv[..., :head_dim_v])
        lse[i] = torch.where(has_key, row_lse, torch.full_like(row_lse, math.inf))
    return out, lse
