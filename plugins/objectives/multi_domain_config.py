"""Config schema of the DIVER-1 multi-domain objective (no torch import: validation stays cheap)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MultiDomainConfig:
    """Masked multi-domain patch reconstruction (DIVER-1, arXiv 2512.19097).

    Parameters
    ----------
    mask_ratio : float
        Bernoulli probability that a (channel, patch) is masked (zero-filled at the input).
    time_weight : float
        Weight of the time-domain MSE.
    fft_weight : float | None
        Weight of the ``log1p`` FFT-amplitude MSE; ``None``: 0.1 when the STFT term is on (DIVER-1's
        1 s model), 1.0 otherwise (its 0.1 s model).
    stft : bool | None
        Use the two-scale STFT-amplitude term; ``None``: on for patches of at least 1 s.
    stft_weight : float
        Weight of the STFT-amplitude MSE.
    max_hz : float | None
        Highest frequency kept in the spectral targets (DIVER-1: 200 Hz). None = derived by
        :mod:`efm.assemble`: ``min(pipeline.sfreq / 2, pipeline.h_freq)`` (200 Hz for DIVER-1's
        500 Hz data low-passed at 200 Hz); built alone, ``sfreq / 2`` of the representation. An
        explicit value above either is an error.
    real_part_targets : bool
        Use ``log1p(|Re X|)`` as DIVER-1's released code does, instead of the true amplitude.
    """

    mask_ratio: float = 0.5
    time_weight: float = 1.0
    fft_weight: float | None = None
    stft: bool | None = None
    stft_weight: float = 1.0
    max_hz: float | None = None
    real_part_targets: bool = False
