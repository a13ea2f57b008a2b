"""Config schemas of the built-in representations (no torch import: validation stays cheap).

``sfreq`` and ``n_times`` are None by default: :mod:`efm.assemble` derives them from
``pipeline.sfreq`` and ``pipeline.epoch_s``; a representation built alone uses its class default.

Defaults follow flash-eeg 0.4.1 (Swiss-Epilepsy-Center/flash-eeg) for the image family and DIVER-1
(arXiv 2512.19097, DIVER-Project/DIVER-1) for the token family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from efm.errors import EfmError


class RepresentationError(EfmError):
    """A representation was given input it cannot use (wrong shape, rank, length, metadata)."""


@dataclass
class PatchConfig:
    """DIVER-1 patch tokens: ``patch_s`` seconds per patch at ``sfreq`` Hz.

    ``tail``: what to do with trailing samples that do not fill a patch: ``"drop"`` (DIVER-1),
    ``"pad"`` (zero-pad to a whole patch) or ``"error"``.
    """

    patch_s: float = 1.0
    sfreq: float | None = None  # None = derived: pipeline.sfreq (500 Hz when built alone)
    tail: Literal["drop", "pad", "error"] = "drop"


@dataclass
class SpectrogramConfig:
    """Hann STFT power in dB on a log-then-linear frequency axis (flash-eeg ``spectrogram``)."""

    sfreq: float | None = None  # None = derived: pipeline.sfreq (250 Hz when built alone)
    n_fft: int = 1024
    hop_length: int = 128
    fmin: float = 1.0
    fmax: float = 100.0
    freq_breakpoint: float = 30.0
    n_freqs_out: int = 224
    output_size: int = 224
    output: Literal["image", "raw"] = (
        "image"  # "image" (min-max + resize) or "raw" (dB, [B, C, n_freq, n_frames])
    )
    flash_compat: bool = False  # flash-eeg's exact frequency-axis interpolation
    chunk_elems: int = 1 << 27  # float32 values per internal chunk (bounds memory)


@dataclass
class MorletConfig:
    """Morlet wavelet power in dB (flash-eeg ``morlet``), computed in bounded memory."""

    sfreq: float | None = None  # None = derived: pipeline.sfreq (250 Hz when built alone)
    fmin: float = 1.0
    fmax: float = 100.0
    n_freqs: int = 50
    n_cycles: float | None = None  # None: freq / 2 (flash-eeg), i.e. a 2 Hz spectral width
    decim: int = 4
    n_times: int | None = None  # None = derived: pipeline.epoch_s x sfreq (7500 alone)
    output_size: int = 224
    output: Literal["image", "raw"] = (
        "image"  # "image" or "raw" (dB, [B, C, n_freqs, ceil(T / decim)])
    )
    chunk_elems: int = 1 << 26  # complex values per internal chunk (bounds memory)


@dataclass
class WPLIConfig:
    """Band-wise single-epoch WPLI packed into one image (flash-eeg ``connectivity``).

    ``flash_compat=True`` reproduces flash-eeg 0.4.1 exactly, including its defect: the FFT is
    taken with ``n=n_fft`` so only the first ``n_fft`` samples of each epoch are used. The default
    (``False``) uses the whole epoch with DPSS tapers of the epoch's length.
    """

    sfreq: float | None = None  # None = derived: pipeline.sfreq (250 Hz when built alone)
    n_fft: int = 512
    bandwidth_nw: float = 2.0
    n_tapers: int = 3
    bands: list[list[float]] = field(
        default_factory=lambda: [
            [1.0, 4.0],
            [4.0, 8.0],
            [8.0, 13.0],
            [13.0, 30.0],
            [30.0, 60.0],
            [60.0, 100.0],
            [1.0, 40.0],
            [1.0, 100.0],
        ]
    )
    output_size: int = 224
    output: Literal["image", "raw"] = "image"  # "image" or "raw" (WPLI, [B, n_bands, C, C])
    flash_compat: bool = False
    n_times: int | None = None  # None = derived: pipeline.epoch_s x sfreq (7500 alone)
    chunk_elems: int = 1 << 26  # float32 values per internal chunk (bounds memory)


@dataclass
class TemporalMatrixConfig:
    """Signal-to-image fold with a fixed block permutation (flash-eeg ``reshape``)."""

    output_size: int = 224
    block_size: int = 32
    seed: int = 42


@dataclass
class BandpassConfig:
    """Zero-phase FFT bandpass with raised-cosine edges (flash-eeg ``bandpass``); [B, C, T] out."""

    sfreq: float | None = None  # None = derived: pipeline.sfreq (250 Hz when built alone)
    low: float = 1.0
    high: float = 50.0
    rolloff: float = 2.0


@dataclass
class StackConfig:
    """Several image representations stacked for the 3D variant: ``[B, n_repr, C, H, W]``.

    ``names``: registered image tokenizers (each built with its defaults, overridden by
    ``sfreq`` and ``output_size``); ``wpli`` is not stackable (its output is one image per sample).
    """

    names: list[str] = field(default_factory=lambda: ["spectrogram", "morlet", "temporal_matrix"])
    sfreq: float | None = None  # None = derived: pipeline.sfreq (250 Hz when built alone)
    output_size: int = 224
    n_times: int | None = None  # None = derived: pipeline.epoch_s x sfreq (7500 alone)
