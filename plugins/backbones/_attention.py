"""Any-variate attention kernels for packed token rows (MOIRAI, Woo et al. 2024, arXiv 2402.02592).

Two interchangeable paths that compute the same thing and are tested equal:

- ``sdpa``: ``F.scaled_dot_product_attention`` with a dense float bias ``[R, H, L, L]`` holding the
  learned per-head same/different-variate scalar and ``-inf`` across samples (the reference path, as in
  SalesforceAIResearch/uni2ts and DIVER-Project/DIVER-1; the CPU path);
- ``flex``: ``torch.nn.attention.flex_attention`` with a ``score_mod`` that looks the bias up and a block
  mask built from the segment ids (no ``L x L`` tensor; compiled on CUDA, eager elsewhere).

Segments: ``seg_id[r, l]`` identifies the sample a token belongs to; tokens attend only within their
segment. Padding gets its own segment (id 0 by convention) so no query row is fully masked.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger("efm.plugins.moirai")

BACKENDS = ("sdpa", "flex", "auto")
MIN_FLEX_HEAD_DIM = 16  # smallest head dim FlexAttention's fused CUDA kernels accept


def apply_rope(
    x: torch.Tensor, time_id: torch.Tensor, fraction: float, base: float
) -> torch.Tensor:
    """Rotary time encoding on the first ``fraction`` of each head's dims (interleaved pairs).

    Parameters
    ----------
    x : Tensor, shape (R, H, L, E)
    time_id : Tensor, shape (R, L), long
    fraction : float
        1.0 rotates the whole head (DIVER-1), 0.5 the first half (MOIRAI).
    base : float
        Frequency base (10000).
    """
    e = x.shape[-1]
    rot = int(e * fraction) // 2 * 2
    if rot == 0:
        return x
    theta = base ** (-torch.arange(0, rot, 2, device=x.device, dtype=torch.float32) / rot)
    ang = time_id[:, None, :, None].float() * theta  # [R, 1, L, rot/2]
    cos, sin = ang.cos(), ang.sin()
    xr = x[..., :rot].float()
    a, b = xr[..., 0::2], xr[..., 1::2]  # pairs (2i, 2i+1)
    out = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
    return torch.cat((out.to(x.dtype), x[..., rot:]), dim=-1)


def dense_bias(
    var_id: torch.Tensor, seg_id: torch.Tensor, table: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """The dense additive bias ``[R, H, L, L]`` of ``table`` (row 1 same variate, row 0 other).

    Softmax ignores a constant added to a whole query row, so only ``table[1] - table[0]`` matters:
    the bias is that difference on same-variate pairs and 0 elsewhere (one broadcast instead of a
    ``where`` over ``[R, H, L, L]``). Pairs in different segments get ``-inf`` (every row keeps at
    least itself).
    """
    same = (var_id[:, None, :, None] == var_id[:, None, None, :]).to(dtype)  # [R, 1, L, L]
    allowed = seg_id[:, None, :, None] == seg_id[:, None, None, :]
    block = torch.zeros_like(same).masked_fill_(~allowed, float("-inf"))
    delta = (table[1] - table[0]).to(dtype)[None, :, None, None]  # [1, H, 1, 1]
    return same * delta + block  # [R, H, L, L]


def _sdpa(q, k, v, var_id, seg_id, table, scale, dropout_p):
    bias = dense_bias(var_id, seg_id, table, q.dtype)
    return F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=bias,
        dropout_p=dropout_p,
        scale=scale,
        enable_gqa=k.shape[1] != q.shape[1],
    )


@cache
def _compiled_flex() -> Any:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=True)


def segment_block_mask(seg_id: torch.Tensor) -> Any:
    """FlexAttention block mask letting each token attend within its segment (build once per batch)."""
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(b, h, q_idx, kv_idx):
        return seg_id[b, q_idx] == seg_id[b, kv_idx]

    r, length = seg_id.shape
    return create_block_mask(mask_mod, r, None, length, length, device=seg_id.device)


def _flex(q, k, v, var_id, seg_id, table, scale, block_mask=None):
    from torch.nn.attention.flex_attention import flex_attention

    # Only table[1] - table[0] matters (a constant per query row and head leaves softmax
    # unchanged, see dense_bias). One lookup of one tensor: FlexAttention's compiled backward
    # rejects a trainable tensor indexed twice in score_mod (torch 2.11 on CUDA).
    delta = (table[1] - table[0]).to(q.dtype)  # [H]

    def score_mod(score, b, h, q_idx, kv_idx):
        same = var_id[b, q_idx] == var_id[b, kv_idx]
        return score + torch.where(same, delta[h], 0.0)

    if block_mask is None:
        block_mask = segment_block_mask(seg_id)
    e = q.shape[-1]
    if e < MIN_FLEX_HEAD_DIM:  # the fused kernels need head dims >= 16: zero-pad (exact)
        pad = (0, MIN_FLEX_HEAD_DIM - e)
        q, k, v = F.pad(q, pad), F.pad(k, pad), F.pad(v, pad)
    fn = _compiled_flex() if q.is_cuda else flex_attention
    out = fn(
        q,
        k,
        v,
        score_mod=score_mod,
        block_mask=block_mask,
        scale=scale,
        enable_gqa=k.shape[1] != q.shape[1],
    )
    return out[..., :e]


def variate_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    var_id: torch.Tensor,
    seg_id: torch.Tensor,
    table: torch.Tensor,
    scale: float,
    backend: str = "sdpa",
    dropout_p: float = 0.0,
    block_mask: Any = None,
) -> torch.Tensor:
    """Attention with a learned binary variate bias, restricted to each token's segment.

    Parameters
    ----------
    q : Tensor, shape (R, H, L, E)
    k, v : Tensor, shape (R, G, L, E)
        ``G`` key/value heads (grouped-query attention when ``G < H``).
    var_id, seg_id : Tensor, shape (R, L), long
    table : Tensor, shape (2, H)
        Row 0: bias for different variates, row 1: same variate (uni2ts ``BinaryAttentionBias``).
    scale : float
        Softmax scale (``1/sqrt(E)``, or ``1/E`` under muP).
    backend : str
        ``"sdpa"``, ``"flex"`` or ``"auto"`` (flex on CUDA).
    dropout_p : float
        Attention-probability dropout (sdpa only; FlexAttention has none, so flex ignores it).
    block_mask : BlockMask | None
        flex only: a prebuilt :func:`segment_block_mask` of ``seg_id`` (shared by all layers).

    Returns
    -------
    Tensor, shape (R, H, L, E)
    """
    if backend == "auto":
        backend = "flex" if q.is_cuda else "sdpa"
    if backend == "sdpa":
        return _sdpa(q, k, v, var_id, seg_id, table, scale, dropout_p)
    if backend == "flex":
        return _flex(q, k, v, var_id, seg_id, table, scale, block_mask)
    raise ValueError(f"unknown attention backend {backend!r}; use one of {BACKENDS}")
