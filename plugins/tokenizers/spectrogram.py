"""STFT spectrogram images (EPI-250k's default representation, flash-eeg compatible).

flash-eeg 0.4.1 (Swiss-Epilepsy-Center/flash-eeg, ``SpectrogramSTFT``): Hann STFT (centred, reflect
padding), power in dB, bins between ``fmin`` and ``fmax`` resampled to ``n_freqs_out`` rows on a
log-then-linear axis (log ``fmin`` -> ``freq_breakpoint``, linear up to ``fmax``), min-max per
(sample, channel), bilinear resize to ``output_size`` squared.

flash-eeg maps a target frequency to a bin position as if the kept bins spanned exactly
``fmin..fmax`` (at 250 Hz / 1024 they span 1.22..99.85 Hz). By default this module interpolates at
the bins' true frequencies; ``flash_compat=True`` reproduces flash-eeg's mapping.

On the CPU the batch runs in blocks sized for the caches (eager mode), each written straight into
the output; the bilinear resize, whose height is unchanged, is the equal (bit for bit) 1-D linear
resize along time.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from efm_plugins.tokenizers._common import (
    band_bins,
    block_rows,
    check_option,
    check_signal,
    db_power,
    flash_target_freqs,
    minmax,
    resize,
    run_blocked,
    stretch_width,
    write,
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
        self.sfreq = float(sfreq)
        self.n_fft, self.hop, self.output, self.size = n_fft, hop_length, output, output_size
        self.n_freqs_out, self.chunk_elems = n_freqs_out, chunk_elems
        df = sfreq / n_fft
        if flash_compat:
            self.bin_min = int(fmin / df + 0.999)  # flash-eeg's rounding
            self.bin_max = int(fmax / df)
        else:  # inclusive edges by integer bin index (fmax / df can round below a whole bin)
            self.bin_min, self.bin_max = band_bins(fmin, fmax, n_fft, sfreq)
        self.n_bins = self.bin_max - self.bin_min + 1
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        target = flash_target_freqs(fmin, fmax, freq_breakpoint, n_freqs_out)
        self.freqs = target.double().numpy()  # Hz of the image's rows, bottom to top (figures)
        self.units = (
            "dB power" if output == "raw" else "dB power, min-max scaled per channel"
        )  # what figures label the values with
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

    def power_db(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """dB power of the kept bins, ``[B, C, n_bins, n_frames]`` (fp32 in; written to ``out``)."""
        b, c, t = x.shape
        spec = torch.stft(
            x.reshape(b * c, t),
            self.n_fft,
            self.hop,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )[:, self.bin_min : self.bin_max + 1]  # [B*C, n_bins, n_frames] (Hann, reflect padding)
        spec = spec.view(b, c, self.n_bins, -1)
        if out is None or out.dtype != torch.float32:
            return write(out, db_power(spec))
        return db_power(spec, out)  # flash-eeg's dB

    def _raw(self, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        return self.power_db(x, out)

    def _image(self, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        spec = self.power_db(x)  # [b, C, n_bins, n_frames]
        lo = spec.index_select(-2, self.idx_lo)  # [b, C, F_out, n_frames]
        hi = spec.index_select(-2, self.idx_hi)
        img = minmax(torch.lerp(lo, hi, self.frac[:, None]))
        if img.shape[-2] != self.size:
            return write(out, resize(img, self.size))
        return write(out, stretch_width(img, self.size))  # linear along time only

    def forward(
        self, x: torch.Tensor, *, meta: Any = None, channel_mask: Any = None
    ) -> torch.Tensor:
        """``[B, C, T]`` -> the image; ``meta`` and ``channel_mask`` are not used."""
        check_signal(x, "spectrogram", min_times=self.n_fft // 2 + 1)
        b, c, t = x.shape
        per_sample = c * self.n_frames(t) * (3 * self.n_fft + 2 * self.n_freqs_out)
        rows = block_rows(per_sample, self.chunk_elems, device=x.device)
        fn = self._raw if self.output == "raw" else self._image
        return run_blocked(fn, x, rows, self.output_shape(c, t), x.dtype)
