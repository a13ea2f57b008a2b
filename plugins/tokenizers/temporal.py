"""Temporal-matrix images and the FFT bandpass (flash-eeg ``reshape`` and ``bandpass``).

flash-eeg 0.4.1 (Swiss-Epilepsy-Center/flash-eeg, ``ReshapeSquare``): keep the first
``floor(sqrt(T))**2`` samples (7500 -> 86**2 = 7396), fold them row-major into a square, min-max
per (sample, channel), nearest resize to ``output_size``, then permute ``block_size``-row blocks
with one fixed permutation (``torch.randperm`` seeded 42) shared by every sample. Here the resize
and the permutation are folded into one column gather and one row gather (written straight into the
output), in blocks of samples sized for the CPU caches.

``bandpass``: zero-phase FFT filter with raised-cosine edges, rising over [low - rolloff, low] and
falling over [high, high + rolloff]; ``rolloff=0`` is a brick wall keeping [low, high] inclusive
(by integer bin index; flash-eeg's float32 grid drops the upper edge bin at some lengths, e.g.
50 Hz at 7500 samples and 250 Hz). fp32 inside, input dtype out.
Small batches run in one rFFT / inverse-rFFT call; larger ones in cache-sized blocks of samples
written into the output (a whole-batch call allocates and faults in a fresh spectrum per call:
0.45 vs 0.23 ms per epoch at batch 256, 1 thread).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from efm_plugins.tokenizers._common import (
    band_mask,
    block_rows,
    check_signal,
    minmax,
    nearest_index,
    rfft_freqs,
    run_blocked,
    write,
)
from efm_plugins.tokenizers.config import RepresentationError

ONE_CALL_ELEMS = 1 << 22  # bandpass: batches up to 16 MB of fp32 signal per thread in one call


class TemporalMatrix(nn.Module):
    """``[B, C, T]`` -> ``[B, C, output_size, output_size]`` folded-signal images in [0, 1].

    Parameters
    ----------
    output_size : int
        Side of the output image; a multiple of ``block_size``.
    block_size : int
        Height of the row blocks that are permuted.
    seed : int
        Seed of the fixed block permutation (flash-eeg: 42).
    """

    family: ClassVar[str] = "image"

    def __init__(self, output_size: int = 224, block_size: int = 32, seed: int = 42) -> None:
        super().__init__()
        if block_size < 1 or output_size % block_size:
            raise RepresentationError(
                f"temporal_matrix: output_size ({output_size}) must be a multiple of block_size "
                f"({block_size})"
            )
        self.size, self.block = output_size, block_size
        perm = torch.randperm(
            output_size // block_size, generator=torch.Generator().manual_seed(seed)
        )
        self.register_buffer("perm", perm, persistent=False)

    def output_shape(self, n_chans: int, n_times: int) -> tuple[int, ...]:
        return (n_chans, self.size, self.size)

    def index(self, n_times: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        """Square side and the row / column source indices of the output image."""
        side = math.isqrt(n_times)
        near = nearest_index(side, self.size).to(self.perm.device)
        blocks = near.view(-1, self.block)  # [n_blocks, block]
        rows = blocks[self.perm].reshape(-1)  # output block i shows resized block perm[i]
        return side, rows, near

    def _image(self, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        b, c, t = x.shape
        side, rows, cols = self.index(t)
        square = minmax(x[..., : side * side].reshape(b, c, side, side))  # [b, C, s, s]
        wide = square.index_select(-1, cols)  # [b, C, s, S]
        if out is None or out.dtype != wide.dtype:
            res = wide.index_select(-2, rows)  # [b, C, S, S]
            return res if out is None else out.copy_(res)
        return torch.index_select(wide, -2, rows, out=out)

    def forward(
        self, x: torch.Tensor, *, meta: Any = None, channel_mask: Any = None
    ) -> torch.Tensor:
        """``[B, C, T]`` -> the image; ``meta`` and ``channel_mask`` are not used."""
        check_signal(x, "temporal_matrix", min_times=1)
        b, c, t = x.shape
        rows = block_rows(c * (t + 3 * self.size * self.size), 1 << 26, device=x.device)
        return run_blocked(self._image, x, rows, self.output_shape(c, t), x.dtype)


class Bandpass(nn.Module):
    """Zero-phase FFT bandpass ``[B, C, T]`` -> ``[B, C, T]`` with raised-cosine edges.

    Parameters
    ----------
    sfreq : float
        Sampling frequency (Hz).
    low, high : float
        Pass band (Hz).
    rolloff : float
        Width (Hz) of each raised-cosine edge; 0 for a brick wall.
    """

    family: ClassVar[str] = "signal"

    def __init__(
        self, sfreq: float = 250.0, low: float = 1.0, high: float = 50.0, rolloff: float = 2.0
    ) -> None:
        super().__init__()
        if not 0 <= low < high or rolloff < 0:
            raise RepresentationError(
                f"bandpass: need 0 <= low ({low}) < high ({high}) and rolloff >= 0 ({rolloff})"
            )
        self.sfreq, self.low, self.high, self.rolloff = sfreq, low, high, rolloff

    def output_shape(self, n_chans: int, n_times: int) -> tuple[int, ...]:
        return (n_chans, n_times)

    def response(self, n_times: int, device: torch.device | None = None) -> torch.Tensor:
        """The gain on the rFFT grid of ``n_times`` samples, ``[n_times // 2 + 1]``."""
        if self.rolloff == 0:  # inclusive edges by integer bin index (float32 rfftfreq drops
            # the upper edge bin: 50 Hz at 7500 samples / 250 Hz, as flash-eeg does)
            return band_mask(self.low, self.high, n_times, self.sfreq, device).float()
        f = rfft_freqs(n_times, self.sfreq, device)  # float64
        rise = ((f - (self.low - self.rolloff)) / self.rolloff).clamp(0.0, 1.0)
        fall = (((self.high + self.rolloff) - f) / self.rolloff).clamp(0.0, 1.0)
        gain = 0.25 * (1 - torch.cos(math.pi * rise)) * (1 - torch.cos(math.pi * fall))
        return gain.float()

    def _filter(
        self, x: torch.Tensor, out: torch.Tensor | None, gain: torch.Tensor
    ) -> torch.Tensor:
        """Filter an fp32 block ``[b, C, T]``: rFFT, gain in place, inverse rFFT; the result
        copied into ``out`` when given (``irfft(out=)`` computes into a temporary anyway)."""
        spec = torch.fft.rfft(x, dim=-1).mul_(gain)
        return write(out, torch.fft.irfft(spec, n=x.shape[-1], dim=-1))

    def forward(
        self, x: torch.Tensor, *, meta: Any = None, channel_mask: Any = None
    ) -> torch.Tensor:
        """``[B, C, T]`` -> the filtered signal; ``meta`` and ``channel_mask`` are not used."""
        check_signal(x, "bandpass", min_times=2)
        b, c, t = x.shape
        gain = self.response(t, x.device)  # [T // 2 + 1]
        # intermediates per sample: the spectrum and the inverse (c * t floats each); blocks
        # of 1.5x that measured best on the CPU (about 23 samples at 1 thread, 46 at 2)
        rows = block_rows(c * t * 3 // 2, 1 << 26, device=x.device)
        one_call = b <= rows  # always under torch.compile and on a GPU (memory bound only)
        if x.device.type == "cpu" and not torch.compiler.is_compiling():
            # a small batch whole: faster while its buffers are small (measured at 64 x 8 x 7500:
            # 0.20 vs 0.21-0.26 ms per epoch for blocks, 1 thread); larger ones keep cache blocks
            one_call = one_call or b * c * t <= ONE_CALL_ELEMS * torch.get_num_threads()
        if one_call:  # the result returned without an output copy
            return self._filter(x.float(), None, gain).to(x.dtype)
        return run_blocked(lambda xb, ob: self._filter(xb, ob, gain), x, rows, (c, t), x.dtype)
