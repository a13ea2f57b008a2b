"""Spectral reconstruction targets of DIVER-1's multi-domain objective.

DIVER-1 (arXiv 2512.19097; https://github.com/DIVER-Project/DIVER-1) reconstructs each masked patch in
three domains: time (the raw patch), FFT amplitude and multi-scale STFT amplitude. Per patch of
``P`` samples at 500 Hz:

- FFT: ``log1p(|rfft(patch, n=500)|)``, bins 0..199 (1 Hz bins up to 199 Hz; 0.1 s patches are
  zero-padded to 500 samples) -> 200 values.
- STFT (1 s patches only): Hann window, ``center=False``, ``normalized=True``, two scales,
  (n_fft 200, hop 100) first 80 bins x 4 frames and (n_fft 50, hop 25) first 20 bins x 19 frames,
  ``log1p`` of the magnitude, flattened frequency-major and concatenated -> 700 values.

The released code casts the complex spectrum to a real dtype before ``abs`` (keeping ``|Re X|``);
``legacy_real_part=True`` reproduces that, the default is the true magnitude the paper describes.
All work is fp32 and batched over every leading dimension; the result is fp32.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange

from efm_plugins.tokenizers.config import RepresentationError

STFT_SCALES: tuple[tuple[int, int, int], ...] = ((200, 100, 80), (50, 25, 20))


def _magnitude(spec: torch.Tensor, legacy_real_part: bool) -> torch.Tensor:
    return spec.real.abs() if legacy_real_part else spec.abs()


def fft_amplitude(
    patches: torch.Tensor, n_fft: int = 500, n_bins: int = 200, legacy_real_part: bool = False
) -> torch.Tensor:
    """``log1p`` FFT amplitude of each patch: ``[..., P]`` -> ``[..., n_bins]`` (fp32).

    Parameters
    ----------
    patches : Tensor, shape (..., P)
        Patches (e.g. ``Tokens.patches`` ``[B, C, N, P]``); ``P <= n_fft`` (zero-padded to ``n_fft``).
    n_fft : int
        FFT length (500 at 500 Hz gives 1 Hz bins).
    n_bins : int
        Leading bins kept (200: 0-199 Hz).
    legacy_real_part : bool
        Use ``|Re X|`` as DIVER-1's released code does, instead of ``|X|``.
    """
    p = patches.shape[-1]
    if p > n_fft or n_bins > n_fft // 2 + 1:
        raise RepresentationError(
            f"fft_amplitude: patch length {p} and n_bins {n_bins} must fit n_fft={n_fft} "
            f"(P <= n_fft, n_bins <= n_fft // 2 + 1)"
        )
    spec = torch.fft.rfft(patches.float(), n=n_fft, dim=-1)[..., :n_bins]
    return torch.log1p(_magnitude(spec, legacy_real_part))


def stft_frames(patches: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Hann-windowed, ``normalized=True``, ``center=False`` STFT: ``[..., P]`` -> ``[..., F, frames]``.

    Equal to ``torch.stft(..., center=False, normalized=True, window=torch.hann_window(n_fft))``
    but batched over any leading dimensions.
    """
    x = patches.float()
    frames = x.unfold(-1, n_fft, hop)  # [..., frames, n_fft]
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.fft.rfft(frames * window, dim=-1) * n_fft**-0.5  # [..., frames, F]
    return spec.transpose(-1, -2)


def stft_amplitude(
    patches: torch.Tensor,
    scales: Sequence[Sequence[int]] = STFT_SCALES,
    legacy_real_part: bool = False,
) -> torch.Tensor:
    """Multi-scale ``log1p`` STFT amplitude: ``[..., P]`` -> ``[..., sum(bins * frames)]`` (fp32).

    Parameters
    ----------
    patches : Tensor, shape (..., P)
        Patches; every scale's ``n_fft`` must be ``<= P`` (DIVER-1 uses this target for 1 s patches).
    scales : sequence of (n_fft, hop, n_bins)
        Default DIVER-1's ``((200, 100, 80), (50, 25, 20))``: 320 + 380 = 700 values for ``P = 500``.
    legacy_real_part : bool
        Use ``|Re X|`` as DIVER-1's released code does, instead of ``|X|``.
    """
    p = patches.shape[-1]
    parts = []
    for n_fft, hop, n_bins in scales:  # a fixed, small set of scales (not a data dimension)
        if n_fft > p or n_bins > n_fft // 2 + 1:
            raise RepresentationError(
                f"stft_amplitude: scale (n_fft={n_fft}, hop={hop}, n_bins={n_bins}) does not fit "
                f"patches of {p} samples"
            )
        spec = stft_frames(patches, n_fft, hop)[..., :n_bins, :]
        parts.append(rearrange(_magnitude(spec, legacy_real_part), "... f t -> ... (f t)"))
    return torch.log1p(torch.cat(parts, dim=-1))


def stft_amplitude_size(patch_len: int, scales: Sequence[Sequence[int]] = STFT_SCALES) -> int:
    """Length of :func:`stft_amplitude`'s output for patches of ``patch_len`` samples."""
    return sum(n_bins * (1 + (patch_len - n_fft) // hop) for n_fft, hop, n_bins in scales)
