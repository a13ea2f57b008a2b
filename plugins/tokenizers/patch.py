"""DIVER-1 patch tokens: non-overlapping patches of every channel, with channel metadata.

Implements the "Patchify" step of DIVER-1 (Han et al., "DIVER-1", arXiv 2512.19097;
https://github.com/DIVER-Project/DIVER-1): ``[B, C, T]`` at 500 Hz to ``[B, C, N, P]`` with
``P = patch_s * sfreq`` (500 for 1 s, 50 for 0.1 s patches). Channel types, positions, modality and
electrode subtypes travel with the patches in :class:`efm.interfaces.Tokens`; variate and time ids
are implicit in the layout (:func:`token_ids`) and explicit after packing (:mod:`.packing`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from einops import rearrange
from torch import nn

from efm.interfaces import CH_TYPES, MODALITIES, Tokens
from efm_plugins.tokenizers._common import check_option, check_signal
from efm_plugins.tokenizers.config import RepresentationError

log = logging.getLogger("efm.tokenizers.patch")

SUBTYPES = ("unknown", "grid", "strip", "depth")


def _index(value: Any, table: tuple[str, ...], what: str) -> int:
    """Index of a name (or an int already) in ``table``; a clear error otherwise."""
    if isinstance(value, (int, np.integer)):
        if not 0 <= int(value) < len(table):
            raise RepresentationError(f"patch: {what} index {value} is outside 0..{len(table) - 1}")
        return int(value)
    key = str(value).lower()
    if key not in table:
        raise RepresentationError(f"patch: unknown {what} {value!r}; options: {', '.join(table)}")
    return table.index(key)


def _per_channel(
    value: Any, table: tuple[str, ...], what: str, b: int, c: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[B, C]`` long indices from a tensor, one list of names, or one list per sample.

    Also returns the per-sample channel counts when per-sample lists were given (else None).
    """
    if value is None:
        return torch.zeros(b, c, dtype=torch.long, device=device), None
    if isinstance(value, torch.Tensor):
        out = value.to(device=device, dtype=torch.long)
        return (out.expand(b, c) if out.ndim == 1 else out).reshape(b, c), None
    value = list(value)
    if value and not isinstance(value[0], (str, int, np.integer)):  # one list per sample
        if len(value) != b:
            raise RepresentationError(f"patch: {len(value)} {what} lists for a batch of {b}")
        counts = [len(v) for v in value]
        if max(counts) > c:
            raise RepresentationError(
                f"patch: a sample has {max(counts)} {what}s but x has {c} channels"
            )
        rows = [[_index(v, table, what) for v in vs] + [0] * (c - len(vs)) for vs in value]
        return torch.tensor(rows, dtype=torch.long, device=device), torch.tensor(
            counts, device=device
        )
    if len(value) != c:
        raise RepresentationError(f"patch: {len(value)} {what}s for {c} channels")
    row = torch.tensor([_index(v, table, what) for v in value], dtype=torch.long, device=device)
    return row.expand(b, c).clone(), None


def _positions(value: Any, b: int, c: int, device: torch.device) -> torch.Tensor:
    """``[B, C, 3]`` float positions (metres), NaN where unknown."""
    if value is None:
        return torch.full((b, c, 3), float("nan"), device=device)
    if isinstance(value, (torch.Tensor, np.ndarray)):
        pos = torch.as_tensor(value, dtype=torch.float32, device=device)
        if pos.shape[-1] != 3 or pos.ndim not in (2, 3):
            raise RepresentationError(
                f"patch: ch_pos must be [C, 3] or [B, C, 3], got {tuple(pos.shape)}"
            )
        return pos.expand(b, c, 3).clone() if pos.ndim == 2 else pos.reshape(b, c, 3)
    rows = list(value)
    if len(rows) != b:
        raise RepresentationError(f"patch: {len(rows)} ch_pos entries for a batch of {b}")
    out = np.full((b, c, 3), np.nan, dtype=np.float32)
    for i, p in enumerate(rows):  # per sample, host side: metadata, not signal
        if p is not None:
            arr = np.asarray(p, dtype=np.float32).reshape(-1, 3)
            out[i, : len(arr)] = arr
    return torch.from_numpy(out).to(device)


def token_ids(tokens: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
    """Variate and time ids ``[B, C, N]`` of a token grid (channel index, patch index)."""
    b, c, n, _ = tokens.patches.shape
    dev = tokens.patches.device
    variate = torch.arange(c, device=dev).view(1, c, 1).expand(b, c, n)
    time = torch.arange(n, device=dev).view(1, 1, n).expand(b, c, n)
    return variate, time


class PatchTokenizer(nn.Module):
    """Cut ``[B, C, T]`` into non-overlapping patches ``[B, C, N, P]`` (a ``Tokens`` object).

    Parameters
    ----------
    patch_s : float
        Patch length in seconds (DIVER-1: 1.0 or 0.1).
    sfreq : float
        Sampling frequency of the input (DIVER-1: 500 Hz).
    tail : {"drop", "pad", "error"}
        Trailing samples that do not fill a patch: dropped (DIVER-1), zero-padded, or an error.

    Notes
    -----
    ``forward(x, *, meta=None, channel_mask=None, ch_types=None, ch_pos=None, modality=None,
    subtype=None)``: the first two are the one call every objective makes
    (:func:`efm.interfaces.represent`); the others are for direct use. Channel metadata may be a tensor (``[B, C]`` / ``[C]``), one list of names for the
    whole batch, or one list per sample (shorter lists mark the remaining channels as padding in
    ``channel_mask``). ``meta`` is the batch's list of shard ``meta.json`` dicts; explicit keywords
    win over it. Defaults: type ``eeg``, position NaN, modality ``eeg``, subtype unknown, all channels
    real. Patches keep the input dtype.
    """

    family: ClassVar[str] = "token"

    def __init__(self, patch_s: float = 1.0, sfreq: float = 500.0, tail: str = "drop") -> None:
        super().__init__()
        check_option("patch", "tail", tail, ("drop", "pad", "error"))
        self.patch_len = round(patch_s * sfreq)
        if self.patch_len < 1 or abs(self.patch_len - patch_s * sfreq) > 1e-6 * sfreq:
            raise RepresentationError(
                f"patch: patch_s={patch_s} s at sfreq={sfreq} Hz is not a whole number of samples"
            )
        self.patch_s, self.sfreq, self.tail = float(patch_s), float(sfreq), tail

    def n_patches(self, n_times: int) -> int:
        """Patches per channel for a signal of ``n_times`` samples."""
        p = self.patch_len
        return -(-n_times // p) if self.tail == "pad" else n_times // p

    def output_shape(self, n_chans: int, n_times: int) -> tuple[int, ...]:
        return (n_chans, self.n_patches(n_times), self.patch_len)

    def forward(
        self,
        x: torch.Tensor,
        *,
        meta: Sequence[Mapping[str, Any]] | None = None,
        channel_mask: torch.Tensor | None = None,
        ch_types: Any = None,
        ch_pos: Any = None,
        modality: Any = None,
        subtype: Any = None,
    ) -> Tokens:
        check_signal(x, "patch", min_times=self.patch_len)
        b, c, t = x.shape
        p, n = self.patch_len, self.n_patches(t)
        if t % p:
            if self.tail == "error":
                raise RepresentationError(
                    f"patch: {t} samples is not a multiple of the patch ({p})"
                )
            if self.tail == "pad":
                x = torch.nn.functional.pad(x, (0, n * p - t))
        patches = rearrange(x[..., : n * p], "b c (n p) -> b c n p", p=p)  # [B, C, N, P]
        if meta is not None:
            meta = list(meta)
            ch_types = ch_types if ch_types is not None else [m.get("ch_types") or [] for m in meta]
            ch_pos = ch_pos if ch_pos is not None else [m.get("ch_pos") for m in meta]
            modality = (
                modality if modality is not None else [m.get("modality", "eeg") for m in meta]
            )
            if subtype is None and all("subtype" in m for m in meta):
                subtype = [m["subtype"] for m in meta]
        dev = x.device
        types, counts = _per_channel(ch_types, CH_TYPES, "channel type", b, c, dev)
        subtypes, _ = _per_channel(subtype, SUBTYPES, "subtype", b, c, dev)
        if modality is None:
            mod = torch.zeros(b, dtype=torch.long, device=dev)
        elif isinstance(modality, torch.Tensor):
            mod = modality.to(device=dev, dtype=torch.long).expand(b).clone()
        elif isinstance(modality, str):
            mod = torch.full((b,), _index(modality, MODALITIES, "modality"), device=dev)
        else:
            mod = torch.tensor([_index(m, MODALITIES, "modality") for m in modality], device=dev)
        if channel_mask is None:
            channel_mask = torch.ones(b, c, dtype=torch.bool, device=dev)
            if counts is not None:
                channel_mask = torch.arange(c, device=dev)[None, :] < counts[:, None]
        elif tuple(channel_mask.shape) != (b, c):
            raise RepresentationError(
                f"patch: channel_mask must be [{b}, {c}], got {tuple(channel_mask.shape)}"
            )
        return Tokens(
            patches=patches,
            channel_mask=channel_mask.to(device=dev, dtype=torch.bool),
            ch_type=types,
            ch_pos=_positions(ch_pos, b, c, dev),
            modality=mod,
            subtype=subtypes,
            sfreq=self.sfreq,
        )
