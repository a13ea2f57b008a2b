"""Morlet wavelet scalogram images in bounded memory (flash-eeg compatible).

flash-eeg 0.4.1 (Swiss-Epilepsy-Center/flash-eeg, ``SpectrogramMorlet``) builds Gaussian wavelets on
the rFFT grid (centre ``f``, width ``f / n_cycles``, unit L2 norm), takes the analytic signal by a
full-length inverse FFT for every frequency (``[B, C, n_freqs, T]`` complex), then power in dB,
decimation by ``decim``, min-max per (sample, channel) and a bilinear resize.

This module computes the same numbers without the full-length intermediate. Two exact identities:
(1) sampling an inverse FFT of length ``T`` at every ``decim``-th point equals an inverse FFT of
length ``M = T / decim`` of the spectrum folded modulo ``M`` (divided by ``decim``); (2) a Gaussian
wavelet is negligible (< 1e-13 relative) beyond 8 widths from its centre, so each frequency needs
only a band of ``K`` bins, and when ``K <= M`` the fold is that band placed circularly at its start
bin modulo ``M``. A circular shift of a spectrum multiplies its inverse FFT by a unit phase, which
the power ignores, so the band is transformed where it is: each output row costs one gather of
``K`` bins and one length-``M`` inverse FFT (the band zero-padded). Work runs in blocks of samples
sized for the CPU caches (eager) or memory, so batch 2048 x 8 x 7500 fits in a few GB
(flash-eeg's full intermediate needs ~24 GB at batch 256).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from einops import rearrange
from torch import nn

from efm_plugins.tokenizers._common import (
    block_rows,
    check_option,
    check_signal,
    db_power,
    minmax,
    resize,
    run_blocked,
    write,
)
from efm_plugins.tokenizers.config import RepresentationError

SUPPORT_SIGMAS = 8.0


class Morlet(nn.Module):
    """``[B, C, T]`` -> ``[B, C, output_size, output_size]`` Morlet power images in [0, 1].

    Parameters
    ----------
    sfreq : float
        Sampling frequency (Hz).
    fmin, fmax : float
        Range of the ``n_freqs`` log-spaced wavelet centres (Hz).
    n_freqs : int
        Number of wavelets.
    n_cycles : float | None
        Cycles per wavelet; None gives ``freq / 2`` (flash-eeg), a constant 2 Hz spectral width.
    decim : int
        Keep every ``decim``-th time sample of the power.
    output_size : int
        Side of the square output image.
    output : {"image", "raw"}
        ``"raw"`` returns dB power ``[B, C, n_freqs, ceil(T / decim)]``.
    n_times : int
        Expected signal length; its plan is precomputed (other lengths work eagerly).
    chunk_elems : int
        Upper bound on complex elements of intermediates per internal chunk (memory bound).
    """

    family: ClassVar[str] = "image"

    def __init__(
        self,
        sfreq: float = 250.0,
        fmin: float = 1.0,
        fmax: float = 100.0,
        n_freqs: int = 50,
        n_cycles: float | None = None,
        decim: int = 4,
        output_size: int = 224,
        output: str = "image",
        n_times: int = 7500,
        chunk_elems: int = 1 << 26,
    ) -> None:
        super().__init__()
        check_option("morlet", "output", output, ("image", "raw"))
        if not 0 < fmin < fmax <= sfreq / 2 or decim < 1 or n_freqs < 1:
            raise RepresentationError(
                f"morlet: need 0 < fmin ({fmin}) < fmax ({fmax}) <= sfreq / 2 ({sfreq / 2}), "
                f"decim >= 1 ({decim}) and n_freqs >= 1 ({n_freqs})"
            )
        self.sfreq, self.decim, self.size, self.output = sfreq, decim, output_size, output
        self.n_freqs, self.chunk_elems = n_freqs, chunk_elems
        freqs = torch.logspace(math.log10(fmin), math.log10(fmax), n_freqs, dtype=torch.float32)
        cycles = freqs / 2.0 if n_cycles is None else torch.full_like(freqs, float(n_cycles))
        self.register_buffer("freqs", freqs, persistent=False)
        self.register_buffer("sigma", freqs / cycles, persistent=False)
        # the gather plan for the expected length is precomputed, so forward is compilable
        self.n_times = n_times
        plan = self._plan(n_times)
        self.banded = plan is not None
        idx, weights = plan if plan is not None else (torch.zeros(0), torch.zeros(0))
        self.register_buffer("band_idx", idx, persistent=False)
        self.register_buffer("band_w", weights, persistent=False)

    def output_shape(self, n_chans: int, n_times: int) -> tuple[int, ...]:
        if self.output == "raw":
            return (n_chans, self.n_freqs, -(-n_times // self.decim))
        return (n_chans, self.size, self.size)

    def wavelets(self, n_times: int) -> torch.Tensor:
        """Analytic-signal filters on the rFFT grid, ``[n_freqs, n_times // 2 + 1]`` (flash-eeg's)."""
        grid = torch.fft.rfftfreq(n_times, d=1.0 / self.sfreq, device=self.freqs.device)
        w = torch.exp(-0.5 * ((grid[None, :] - self.freqs[:, None]) / self.sigma[:, None]) ** 2)
        w = w / w.norm(dim=1, keepdim=True)
        n_rfft = grid.shape[0]
        double = torch.ones(n_rfft, device=w.device)
        double[1 : n_rfft - 1] = 2.0  # positive frequencies doubled (flash-eeg: DC, last bin once)
        return w * double

    def plan(self, n_times: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The band-limited fold plan for ``n_times`` (precomputed for the built length)."""
        if n_times == self.n_times:
            return (self.band_idx, self.band_w) if self.banded else None
        return self._plan(n_times)

    def _plan(self, n_times: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Gather index and weights ``[n_freqs, K]`` of each wavelet's band, or None."""
        if n_times % self.decim:
            return None
        m = n_times // self.decim
        n_rfft = n_times // 2 + 1
        df = self.sfreq / n_times
        width = int(math.ceil(2 * SUPPORT_SIGMAS * float(self.sigma.max()) / df)) + 1
        k = min(width, n_rfft)
        if k > m:
            return None
        start = torch.round((self.freqs - SUPPORT_SIGMAS * self.sigma) / df).long()
        start = start.clamp(0, n_rfft - k)  # [n_freqs]
        idx = start[:, None] + torch.arange(k, device=start.device)  # [n_freqs, K]
        weights = torch.gather(self.wavelets(n_times), 1, idx)
        return idx, weights / self.decim  # the fold's 1 / decim (exact for powers of 2)

    def _power_db(self, x: torch.Tensor) -> torch.Tensor:
        """dB power ``[b, C, n_freqs, ceil(T / decim)]`` of an fp32 chunk."""
        t = x.shape[-1]
        spec = torch.fft.rfft(x, dim=-1)  # [b, C, n_rfft]
        plan = self.plan(t)
        if plan is not None:
            idx, weights = plan  # weights include the 1 / decim
            band = spec.index_select(-1, idx.flatten()).view(*spec.shape[:-1], *idx.shape)
            m = t // self.decim  # [b, C, n_freqs, K] -> z [b, C, n_freqs, M], up to a phase
            z = torch.fft.ifft(band.mul_(weights), n=m, dim=-1)
        else:  # wide wavelets or T not a multiple of decim: full-length analytic signal
            analytic = spec[..., None, :] * self.wavelets(t)  # [b, C, n_freqs, n_rfft]
            analytic = torch.nn.functional.pad(analytic, (0, t - analytic.shape[-1]))
            if t % self.decim == 0:
                folded = rearrange(analytic, "... (d m) -> ... d m", d=self.decim).sum(-2)
                z = torch.fft.ifft(folded, dim=-1) / self.decim
            else:
                z = torch.fft.ifft(analytic, dim=-1)[..., :: self.decim]
        return db_power(z)

    def _raw(self, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        return write(out, self._power_db(x))

    def _image(self, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        return write(out, resize(minmax(self._power_db(x)), self.size))

    def forward(
        self, x: torch.Tensor, *, meta: Any = None, channel_mask: Any = None
    ) -> torch.Tensor:
        """``[B, C, T]`` -> the image; ``meta`` and ``channel_mask`` are not used."""
        check_signal(x, "morlet", min_times=2)
        b, c, t = x.shape
        full = self.plan(t) is None
        per_sample = c * (t + 3 * self.n_freqs * (t if full else -(-t // self.decim)))
        rows = block_rows(per_sample, self.chunk_elems, device=x.device)
        fn = self._raw if self.output == "raw" else self._image
        return run_blocked(fn, x, rows, self.output_shape(c, t), x.dtype)
