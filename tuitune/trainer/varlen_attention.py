"""Packed rows attend within their own example: PyTorch's variable-length flash attention.

TRL packs examples into rows without padding and gives the model each example's boundaries
(`cu_seq_lens_q`/`cu_seq_lens_k`, `max_length_q`/`max_length_k`) and positions restarting at 0.
transformers turns those positions into a block-diagonal mask for SDPA, which is correct but rules
out SDPA's flash kernel and costs a (tokens x tokens) mask. On a CUDA GPU with
`torch.nn.attention.varlen.varlen_attn` (PyTorch's flash attention over concatenated sequences),
the patched attention calls it instead: causal within each example, nothing across examples, no
mask. `packed_attention` returns None where it does not apply, and the caller keeps SDPA.
"""

from __future__ import annotations

import inspect
import math
from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def _varlen():
    """(varlen_attn, its parameter names), or None when this PyTorch has no variable-length attention."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


def available(device: torch.device) -> bool:
    return device.type == "cuda" and _varlen() is not None


def packed_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *, scaling: float,
                     kwargs: dict, sliding_window=None, softcap=None, dropout: float = 0.0) -> torch.Tensor | None:
    """Causal attention within each packed example; q, k, v are (1, heads, tokens, head_dim).

    Returns (1, tokens, heads, head_dim) like transformers' attention functions, or None when the
    batch is not a packed row with boundaries, or when the variable-length kernel cannot do it
    (no CUDA, 32-bit inputs, a sliding window, logit soft-capping, dropout)."""
    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    if cu_q is None or cu_k is None or query.shape[0] != 1 or not available(query.device):
        return None
    if sliding_window or softcap or dropout or query.dtype not in (torch.float16, torch.bfloat16):
        return None  # flash attention computes in 16-bit only
    fn, params = _varlen()
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (tokens, heads, head_dim)
    groups = q.shape[1] // k.shape[1]
    extra = {}
    if groups > 1:
        if "enable_gqa" in params:
            extra["enable_gqa"] = True
        else:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    if "scale" in params:
        extra["scale"] = scaling
    else:
        q = q * (scaling * math.sqrt(q.shape[-1]))  # the kernel scales by 1/sqrt(head_dim)
    if "is_causal" in params:
        extra["is_causal"] = True
    else:
        extra["window_size"] = (-1, 0)  # everything before the query, nothing after: causal
    device = q.device
    cu_q, cu_k = cu_q.to(device=device, dtype=torch.int32), cu_k.to(device=device, dtype=torch.int32)
    max_q, max_k = _as_int(kwargs.get("max_length_q"), cu_q), _as_int(kwargs.get("max_length_k"), cu_k)
    out = fn(q.contiguous(), k.contiguous(), v.contiguous(), cu_q, cu_k, max_q, max_k, **extra)
    return out.unsqueeze(0)


def _as_int(value, cu: torch.Tensor) -> int:
    if value is None:
        return int(cu.diff().max())  # one host sync; TRL's collator passes the length
    return int(value)
