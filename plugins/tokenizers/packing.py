"""Sequence packing of any-variate tokens (MOIRAI / DIVER-1).

MOIRAI (Woo et al., "Unified Training of Universal Time Series Forecasting Transformers", ICML 2024;
https://github.com/SalesforceAIResearch/uni2ts) flattens every variate's patches into one token
sequence and packs several samples into rows of ``max_length`` tokens by first-fit-decreasing bin
packing; ``sample_id`` is 1-based within a row and 0 for padding, so the attention mask is
``sample_id[q] == sample_id[k]``. Here a batch of :class:`efm.interfaces.Tokens` whose samples have
different channel counts (``channel_mask``) becomes such rows; :func:`unpack` inverts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange

from efm.interfaces import Tokens
from efm_plugins.tokenizers.config import RepresentationError


@dataclass
class PackedTokens:
    """Tokens of several samples packed into fixed-length rows.

    Parameters
    ----------
    patches : Tensor, shape (R, L, P)
        Token values; zeros at padding positions.
    sample_id : Tensor, shape (R, L), long
        1-based id of the sample within its row, 0 for padding.
    variate_id : Tensor, shape (R, L), long
        Channel index within the sample, counting real channels only (0 for padding).
    time_id : Tensor, shape (R, L), long
        Patch index within the channel (0 for padding).
    ch_type, subtype, modality : Tensor, shape (R, L), long
        Per-token metadata copied from the source channel / sample (0 for padding).
    ch_pos : Tensor, shape (R, L, 3)
        Per-token electrode position (NaN for padding and unknown positions).
    source : Tensor, shape (R, L), long
        Index of the source sample in the input batch, -1 for padding.
    src_index, dst_index : Tensor, shape (n_real_tokens,), long
        Flat indices into ``[B * C * N]`` and ``[R * L]`` pairing each real token (for unpack).
    grid : tuple of int
        ``(B, C, N)`` of the unpacked batch.
    """

    patches: torch.Tensor
    sample_id: torch.Tensor
    variate_id: torch.Tensor
    time_id: torch.Tensor
    ch_type: torch.Tensor
    subtype: torch.Tensor
    modality: torch.Tensor
    ch_pos: torch.Tensor
    source: torch.Tensor
    src_index: torch.Tensor
    dst_index: torch.Tensor
    grid: tuple[int, int, int]

    @property
    def token_mask(self) -> torch.Tensor:
        """``[R, L]`` True for real tokens."""
        return self.sample_id > 0

    def attention_mask(self) -> torch.Tensor:
        """``[R, L, L]`` bool: a token attends to tokens of its own sample (padding to padding)."""
        return self.sample_id[:, :, None] == self.sample_id[:, None, :]


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> tuple[list[int], list[int]]:
    """Assign items to bins of ``capacity``: returns (bin index, start offset) per item."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    free: list[int] = []
    bins, starts = [0] * len(lengths), [0] * len(lengths)
    for i in order:  # host-side bookkeeping over samples (scalars), not signal work
        n = lengths[i]
        if n > capacity:
            raise RepresentationError(
                f"pack: a sample has {n} tokens, more than max_length={capacity}; raise max_length "
                "or use fewer channels / longer patches"
            )
        row = next((r for r, f in enumerate(free) if f >= n), len(free))
        if row == len(free):
            free.append(capacity)
        bins[i], starts[i] = row, capacity - free[row]
        free[row] -= n
    return bins, starts


def pack(tokens: Tokens, max_length: int = 512) -> PackedTokens:
    """Pack the real channels of every sample into rows of ``max_length`` tokens.

    Token order within a sample is channel-major (all patches of its first real channel, then the
    next). Bin assignment is first-fit-decreasing on the per-sample token counts.
    """
    x = tokens.patches  # [B, C, N, P]
    b, c, n, p = x.shape
    dev = x.device
    mask = tokens.channel_mask.to(torch.bool)  # [B, C]
    n_real = mask.sum(1)  # [B]
    lengths = (n_real * n).tolist()
    bins, starts = first_fit_decreasing(lengths, max_length)
    n_rows = max(bins) + 1 if bins else 0
    order_in_row = np.zeros(b, dtype=np.int64)
    for r in range(n_rows):  # 1-based sample id within each row, in order of offset
        members = sorted((starts[i], i) for i in range(b) if bins[i] == r)
        for k, (_, i) in enumerate(members):
            order_in_row[i] = k + 1
    row_of = torch.tensor(bins, dtype=torch.long, device=dev)
    start_of = torch.tensor(starts, dtype=torch.long, device=dev)
    sid_of = torch.from_numpy(order_in_row).to(dev)

    rank = torch.cumsum(mask.long(), dim=1) - 1  # [B, C] variate id among real channels
    bb, cc, nn_ = torch.nonzero(mask[:, :, None].expand(b, c, n), as_tuple=True)
    col = start_of[bb] + rank[bb, cc] * n + nn_
    dst = row_of[bb] * max_length + col
    src = (bb * c + cc) * n + nn_

    def scatter(values: torch.Tensor, fill: float = 0) -> torch.Tensor:
        """Place per-real-token values into a flat [R * L, ...] buffer."""
        out = values.new_full((n_rows * max_length, *values.shape[1:]), fill)
        out[dst] = values
        return out.view(n_rows, max_length, *values.shape[1:])

    flat = rearrange(x, "b c n p -> (b c n) p")
    return PackedTokens(
        patches=scatter(flat[src]),
        sample_id=scatter(sid_of[bb]),
        variate_id=scatter(rank[bb, cc]),
        time_id=scatter(nn_),
        ch_type=scatter(tokens.ch_type[bb, cc]),
        subtype=scatter(tokens.subtype[bb, cc]),
        modality=scatter(tokens.modality[bb]),
        ch_pos=scatter(tokens.ch_pos[bb, cc].float(), float("nan")),
        source=scatter(bb, -1),
        src_index=src,
        dst_index=dst,
        grid=(b, c, n),
    )


def unpack(values: torch.Tensor, packed: PackedTokens) -> torch.Tensor:
    """Map per-token values ``[R, L, ...]`` back to the grid ``[B, C, N, ...]`` (zeros at padding)."""
    b, c, n = packed.grid
    flat = values.reshape(-1, *values.shape[2:])
    out = values.new_zeros((b * c * n, *values.shape[2:]))
    out[packed.src_index] = flat[packed.dst_index]
    return out.view(b, c, n, *values.shape[2:])


def pad_channels(signals: Sequence[torch.Tensor | np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack recordings ``[C_i, T]`` with different channel counts into ``[B, C_max, T]`` + mask."""
    if not signals:
        raise RepresentationError("pad_channels: no signals given")
    ts = [torch.as_tensor(s) for s in signals]
    if any(t.ndim != 2 for t in ts) or len({t.shape[1] for t in ts}) != 1:
        raise RepresentationError(
            "pad_channels: every signal must be [n_chans, n_times] with the same n_times, got "
            + ", ".join(str(tuple(t.shape)) for t in ts)
        )
    x = torch.nn.utils.rnn.pad_sequence(ts, batch_first=True)  # [B, C_max, T]
    counts = torch.tensor([t.shape[0] for t in ts])
    mask = torch.arange(x.shape[1])[None, :] < counts[:, None]
    return x, mask
