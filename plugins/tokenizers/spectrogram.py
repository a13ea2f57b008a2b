"""STFT spectrogram images (EPI-250k's default representation, flash-eeg compatible).

flash-eeg 0.4.1 (Swiss-Epilepsy-Center/flash-eeg, ``SpectrogramSTFT``): Hann STFT (centred, reflect
padding), power in dB, bins between ``fmin`` and ``fmax`` resampled to ``n_freqs_out`` rows on a
log-then-linear axis (log ``fmin`` -> ``freq_breakpoint``, linear up to ``fmax``), min-max per
(sample, channel), bilinear resize to ``output_size`` squared.

flash-eeg maps a target frequency to a bin position as if the kept bins spanned exactly
``fmin..fmax`` (at 250 Hz / 1024 they span 1.22..99.85 Hz). By default this module interpolates at
the bins' true frequencies; ``flash_compat=True`` reproduces flash-eeg's mapping.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from einops import rearrange
from torch import nn

from efm_plugins.tokenizers._common import (
    check_option,
    check_signal,
    db,
    flash_target_freqs,
    minmax,
    resize,
    run_chunked,
    upcast,
)
from efm_plugins.tokenizers.config import RepresentationError


class Spectrogram(nn.Module):
    """``[B, C, T]`` -> ``[B, C, output_size, output_size]`` STFT power images in [0, 1].

    Parameters
    ----------
    sfreq : float
        Sampling frequency (Hz).
    n_fft, hop_length : int
        STFT window (Hann, periodic) and hop, in samples; frames are centred (reflect padding).
    fmin, fmax, freq_breakpoint : float
        Frequency range kept and the log/linear breakpoint (Hz).
    n_freqs_out : int
        Rows of the resampled frequency axis.
    output_size : int
        Side of the square output image.
    output : {"image", "raw"}
        ``"raw"`` returns the dB power of the kept bins, ``[B, C, n_bins, n_frames]``.
    flash_compat : bool
        Map target frequencies to bins exactly as flash-eeg 0.4.1 does.
    chunk_elems : int
        Upper bound on float32 elements of intermediates per internal chunk (memory bound).
    """

    family: ClassVar[str] = "image"

    def __init__(
        self,
        sfreq: float = 250.0,
        n_fft: int = 1024,
        hop_length: int = 128,
        fmin: float = 1.0,
        fmax: float = 100.0,
        freq_breakpoint: float = 30.0,
        n_freqs_out: int = 224,
        output_size: int = 224,
        output: str = "image",
        flash_compat: bool = False,
        chunk_elems: int = 1 << 27,
    ) -> None:
        super().__init__()
        check_option("spectrogram", "output", output, ("image", "raw"))
        if not 0 < fmin < freq_breakpoint < fmax <= sfreq / 2:
            raise RepresentationError(
                f"spectrogram: need 0 < fmin ({fmin}) < freq_breakpoint ({freq_breakpoint}) < fmax "
                f"({fmax}) <= sfreq / 2 ({sfreq / 2})"
            )
        self.n_fft, self.hop, self.output, self.size = n_fft, hop_length, output, output_size
        self.n_freqs_out, self.chunk_elems = n_freqs_out, chunk_elems
        df = sfreq / n_fft
        self.bin_min = int(fmin / df + 0.999)  # flash-eeg's rounding
        self.bin_max = int(fmax / df)
        self.n_bins = self.bin_max - self.bin_min + 1
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        target = flash_target_freqs(fmin, fmax, freq_breakpoint, n_freqs_out)
        if flash_compat:
            pos = (target - fmin) / (fmax - fmin) * (self.n_bins - 1)
        else:
            pos = target.double() / df - self.bin_min
        pos = pos.clamp(0, self.n_bins - 1)
        lo = torch.floor(pos).long().clamp(0, self.n_bins - 1)
        self.register_buffer("idx_lo", lo, persistent=False)
        self.register_buffer(
            "idx_hi", torch.ceil(pos).long().clamp(0, self.n_bins - 1), persistent=False
        )
        self.register_buffer("frac", (pos - lo).float(), persistent=False)

    def n_frames(self, n_times: int) -> int:
        return 1 + n_times // self.hop

    def output_shape(self, n_chans: int, n_times: int) -> tuple[int, ...]:
        if self.output == "raw":
            return (n_chans, self.n_bins, self.n_frames(n_times))
        return (n_chans, self.size, self.size)

    def power_db(self, x: torch.Tensor) -> torch.Tensor:
        """dB power of the kept bins, ``[B, C, n_bins, n_frames]`` (fp32 in, fp32 out)."""
        pad = self.n_fft // 2
        xp = torch.nn.functional.pad(x, (pad, pad), mode="reflect")  # [B, C, T + n_fft]
        frames = xp.unfold(-1, self.n_fft, self.hop) * self.window  # [B, C, n_frames, n_fft]
        spec = torch.fft.rfft(frames, dim=-1)[..., self.bin_min : self.bin_max + 1]
        power = torch.view_as_real(spec).square().sum(-1)  # [B, C, n_frames, n_bins]
        return db(rearrange(power, "b c t f -> b c f t").contiguous())

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.power_db(x)  # [b, C, n_bins, n_frames]
        lo = spec.index_select(-2, self.idx_lo)  # [b, C, F_out, n_frames]
        hi = spec.index_select(-2, self.idx_hi)
        img = torch.lerp(lo, hi, self.frac[:, None])
        return resize(minmax(img), self.size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_signal(x, "spectrogram", min_times=self.n_fft // 2 + 1)
        x32, dtype = upcast(x)
        b, c, t = x.shape
        per_sample = c * self.n_frames(t) * (3 * self.n_fft + 2 * self.n_freqs_out)
        rows = self.chunk_elems // per_sample
        if self.output == "raw":
            return run_chunked(self.power_db, x32, rows, self.output_shape(c, t), dtype)
        return run_chunked(self._image, x32, rows, (c, self.size, self.size), dtype)
