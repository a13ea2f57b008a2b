"""Band-wise single-epoch WPLI connectivity images (flash-eeg compatible, defect fixed by default).

WPLI (Vinck et al. 2011, NeuroImage 55:1548). flash-eeg 0.4.1 (Swiss-Epilepsy-Center/flash-eeg,
``ConnectivityWPLI``): DPSS tapers (NW 2, 3 tapers) -> rFFT -> cross-spectra of all channel pairs,
averaged over tapers -> for each of 8 bands ``|mean_f Im S| / mean_f |Im S|`` over the band's bins ->
min-max per band -> bands packed in pairs into C x C matrices (upper triangle one band, lower the
other, diagonal 1) -> the four matrices tiled 2 x 2 -> nearest resize: ``[B, 1, H, W]``.

flash-eeg builds tapers of the epoch's length but takes ``rfft(..., n=n_fft)``, which keeps only the
first ``n_fft`` (512) tapered samples, about 2 s of a 30 s epoch, where the tapers are near zero.
``flash_compat=True`` reproduces that; the default tapers and transforms the whole epoch.

The pair work is batched without per-bin matrix products: the imaginary cross-spectra of the
unordered pairs come from the channel axis and its circular shifts by 1..C//2 (a strided view, no
gather), accumulated over the 2K real taper components; band means are one matmul with a
[bins, bands] mean matrix. Batches run in blocks sized for the CPU caches (eager) or memory.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import torch
from einops import rearrange
from torch import nn

from efm_plugins.tokenizers._common import (
    band_bins,
    block_rows,
    check_option,
    check_signal,
    nearest_index,
    run_blocked,
    write,
)
from efm_plugins.tokenizers.config import RepresentationError

DEFAULT_BANDS = (
    (1.0, 4.0),
    (4.0, 8.0),
    (8.0, 13.0),
    (13.0, 30.0),
    (30.0, 60.0),
    (60.0, 100.0),
    (1.0, 40.0),
    (1.0, 100.0),
)

# guard of WPLI's denominator mean_f |Im S|, for channels scaled to unit RMS (so relative to the
# signal's scale): 1e-10 of the cross-spectrum per bin of two unit-RMS white channels at 7500
# samples (~2/7500), far below any measurable imaginary coupling; keeps 0/0 (a zero channel) at 0
GUARD = 1e-10 * 2.0 / 7500
RMS_FLOOR = 1e-30  # channels below this RMS (float32 denormals; zero) are left unscaled


@lru_cache(maxsize=16)
def dpss_tapers(n_times: int, bandwidth_nw: float, n_tapers: int) -> torch.Tensor:
    """DPSS tapers ``[n_tapers, n_times]`` (unit L2 norm; scipy's tridiagonal solver)."""
    from scipy.signal.windows import dpss

    return torch.from_numpy(np.asarray(dpss(n_times, bandwidth_nw, Kmax=n_tapers), np.float32))


class WPLI(nn.Module):
    """``[B, C, T]`` -> ``[B, 1, output_size, output_size]`` packed band-wise WPLI images.

    Parameters
    ----------
    sfreq : float
        Sampling frequency (Hz).
    n_fft : int
        FFT length in ``flash_compat`` mode (the default mode uses the epoch's length).
    n_times : int
        Expected epoch length; its tapers are precomputed (other lengths work eagerly).
    bandwidth_nw, n_tapers : float, int
        DPSS time-half-bandwidth product and taper count.
    bands : list of (fmin, fmax)
        Frequency bands (inclusive); an even number of them, 8 for the 2 x 2 tiling.
    output_size : int
        Side of the square output image.
    output : {"image", "raw"}
        ``"raw"`` returns the WPLI values ``[B, n_bands, C, C]`` before normalisation and packing.
    flash_compat : bool
        Reproduce flash-eeg 0.4.1 including its first-``n_fft``-samples defect.
    chunk_elems : int
        Upper bound on float32 elements of intermediates per internal chunk.
    """

    family: ClassVar[str] = "image"

    def __init__(
        self,
        sfreq: float = 250.0,
        n_fft: int = 512,
        bandwidth_nw: float = 2.0,
        n_tapers: int = 3,
        bands=DEFAULT_BANDS,
        output_size: int = 224,
        output: str = "image",
        flash_compat: bool = False,
        n_times: int = 7500,
        chunk_elems: int = 1 << 26,
    ) -> None:
        super().__init__()
        check_option("wpli", "output", output, ("image", "raw"))
        bands = [tuple(float(v) for v in b) for b in bands]
        if output == "image" and len(bands) != 8:
            raise RepresentationError(f"wpli: the packed image needs 8 bands, got {len(bands)}")
        if any(not 0 <= lo < hi <= sfreq / 2 for lo, hi in bands):
            raise RepresentationError(
                f"wpli: bands must satisfy 0 <= fmin < fmax <= sfreq / 2: {bands}"
            )
        self.sfreq, self.n_fft, self.nw, self.n_tapers = sfreq, n_fft, bandwidth_nw, n_tapers
        self.bands, self.size, self.output = bands, output_size, output
        self.flash_compat, self.chunk_elems = flash_compat, chunk_elems
        # the plan for the expected epoch length is precomputed, so forward is compilable
        self.n_times = n_times
        tapers, n, k0, k1, mean = self._plan(n_times, torch.device("cpu"))
        self.register_buffer("tapers", tapers, persistent=False)
        self.register_buffer("band_mean", mean, persistent=False)
        self._bins = (n, k0, k1)

    def output_shape(self, n_chans: int, n_times: int) -> tuple[int, ...]:
        if self.output == "raw":
            return (len(self.bands), n_chans, n_chans)
        return (1, self.size, self.size)

    def plan(self, n_times: int):
        """Tapers, FFT length, kept bin range and the [bins, bands] mean matrix for ``n_times``."""
        if n_times == self.n_times:
            return self.tapers, *self._bins, self.band_mean
        return self._plan(n_times, self.tapers.device)  # another length: eager only

    def _plan(self, n_times: int, device: torch.device):
        """Compute :meth:`plan` (scipy DPSS; not traceable)."""
        n = self.n_fft if self.flash_compat else n_times
        # bins by integer index (inclusive edges; float32 frequencies dropped the upper edge)
        edges = [band_bins(a, b, n, self.sfreq) for a, b in self.bands]
        k0 = min(e[0] for e in edges)
        k1 = max(max(e[1] for e in edges) + 1, k0 + 1)
        k = torch.arange(k0, k1, device=device)
        member = torch.stack([((k >= a) & (k <= b)).float() for a, b in edges], dim=1)
        counts = member.sum(0)
        if bool((counts == 0).any()):
            raise RepresentationError(
                f"wpli: a band holds no frequency bin at resolution {self.sfreq / n:.3g} Hz"
            )
        tapers = dpss_tapers(n_times, self.nw, self.n_tapers).to(device)
        # [F, n_bands] band means with the taper average folded in
        return tapers, n, k0, k1, member / counts / self.n_tapers

    def pair_wpli(self, x: torch.Tensor) -> torch.Tensor:
        """Band-wise WPLI of the shifted pairs, ``[b, n_bands, C//2 * C]`` (see ``_pair_index``),
        of an fp32 chunk ``[b, C, T]``."""
        b, c, t = x.shape
        tapers, n, k0, k1, mean_t = self.plan(t)
        k = tapers.shape[0]
        m = min(t, n)  # rfft(..., n) reads only the first n samples
        tapered = x[:, :, None, :m] * tapers[:, :m]  # [b, C, K, m]
        # each channel scaled to unit RMS over the samples used: WPLI is invariant to a channel's
        # scale, so this changes nothing but rounding, and the guard below (GUARD) is then relative
        # to the signal's scale instead of an absolute 1e-10 in whatever unit the signal has
        # (volts instead of uV changed the mean WPLI from 0.187 to 0.068). A zero channel stays 0.
        rms = torch.linalg.vector_norm(x[:, :, :m], dim=-1).mul_(m**-0.5)  # [b, C]
        tapered.mul_(rms.clamp_min_(RMS_FLOOR).reciprocal_()[:, :, None, None])
        spec = torch.fft.rfft(tapered, n=n, dim=-1)[..., k0:k1]  # [b, C, K, F]
        # channels and their circular shifts: wrapped[:, C + i] = wrapped[:, i] for i < C//2,
        # components re_1..K, im_1..K; shifted[:, d - 1, i] = channel (i + d) % C, d = 1..C//2,
        # covers every unordered pair (i, j) once (twice for d = C/2)
        half = c // 2
        wrapped = x.new_empty((b, c + half, 2, k, k1 - k0))  # [b, C + C//2, re/im, K, F]
        wrapped[:, :c].copy_(torch.view_as_real(spec).permute(0, 1, 4, 2, 3))  # one pass
        wrapped[:, c:].copy_(wrapped[:, :half])
        wrapped = wrapped.view(b, c + half, 2 * k, k1 - k0)  # [b, C + C//2, 2K, F]
        shifted = wrapped.unfold(1, c, 1).permute(0, 2, 1, 4, 3)[:, :, 1:]  # [b, 2K, C//2, C, F]
        re_j, im_j = shifted[:, :k].unbind(1), shifted[:, k:].unbind(1)
        re_i, im_i = wrapped[:, None, :c, :k].unbind(3), wrapped[:, None, :c, k:].unbind(3)
        # Im(X_i X_j^*) summed over tapers: sum_k im_i re_j - re_i im_j, all pairs at once
        if torch.compiler.is_compiling():  # inductor mis-strides out= on the overlapping view
            cross = im_i[0] * re_j[0]  # [b, C//2, C, F]
        else:  # contiguous, so the band means below read a view
            cross = torch.mul(im_i[0], re_j[0], out=x.new_empty((b, half, c, k1 - k0)))
        cross.addcmul_(re_i[0], im_j[0], value=-1.0)
        for q in range(1, k):  # the K tapers (static, small)
            cross.addcmul_(im_i[q], re_j[q])
            cross.addcmul_(re_i[q], im_j[q], value=-1.0)
        # band means: one [b * pairs, F] x [F, n_bands] product each (the taper mean folded in)
        flat = cross.reshape(-1, k1 - k0)
        num = (flat @ mean_t).abs_()  # |mean_f Im S|
        den = flat.abs_() @ mean_t  # mean_f |Im S|
        return num.div_(den.add_(GUARD)).view(b, half * c, -1).transpose(1, 2)

    def wpli(self, x: torch.Tensor) -> torch.Tensor:
        """Band-wise WPLI ``[b, n_bands, C, C]`` of an fp32 chunk ``[b, C, T]`` (diagonal 0)."""
        c = x.shape[1]
        full = self.pair_wpli(x).index_select(2, _pair_index(c, x.device))  # [b, n_bands, C*C]
        out = rearrange(full, "b n (i j) -> b n i j", i=c)
        eye = torch.eye(c, dtype=torch.bool, device=x.device)
        return out.masked_fill(eye, 0.0)  # Im S_ii = 0: WPLI 0 on the diagonal

    def _raw(self, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        return write(out, self.wpli(x))

    def _image(
        self, x: torch.Tensor, out: torch.Tensor | None, tile: torch.Tensor, near: torch.Tensor
    ) -> torch.Tensor:
        """Min-max per band (over C x C: the pairs and the zero diagonal), one gather of the
        2C x 2C tiling from the pair values and a constant 1 (see ``_tile_index``), then the
        nearest resize as a column gather and a row gather written into the output."""
        w = self.pair_wpli(x)  # [b, 8, pairs]
        zero = w.new_zeros(())
        lo = torch.minimum(w.amin(dim=-1, keepdim=True), zero)
        hi = torch.maximum(w.amax(dim=-1, keepdim=True), zero)
        w = (w - lo) / (hi - lo + 1e-8)
        values = torch.cat([w.flatten(1), w.new_ones(w.shape[0], 1)], dim=1)  # [b, 8 * pairs + 1]
        b, side = values.shape[0], 2 * x.shape[1]
        wide = values.index_select(1, tile).view(b, side, side).index_select(2, near)
        if out is None or out.dtype != wide.dtype:
            return write(out, wide.index_select(1, near).view(b, 1, self.size, self.size))
        torch.index_select(wide, 1, near, out=out.view(b, self.size, self.size))
        return out

    def forward(
        self, x: torch.Tensor, *, meta: Any = None, channel_mask: Any = None
    ) -> torch.Tensor:
        """``[B, C, T]`` -> the image; ``meta`` and ``channel_mask`` are not used."""
        check_signal(x, "wpli", min_times=8)
        if x.shape[1] < 2:
            raise RepresentationError(f"wpli: needs at least 2 channels, got {x.shape[1]}")
        b, c, t = x.shape
        n = self.n_fft if self.flash_compat else t
        m = min(t, n)
        f = n // 2 + 1
        per_sample = c * (t + self.n_tapers * (m + 2 * f + 4 * f)) + c * c * f
        rows = block_rows(per_sample, self.chunk_elems, device=x.device)
        if self.output == "raw":
            return run_blocked(self._raw, x, rows, self.output_shape(c, t), x.dtype)
        tile = _tile_index(c, x.device)
        near = nearest_index(2 * c, self.size).to(x.device)
        return run_blocked(
            lambda xb, ob: self._image(xb, ob, tile, near),
            x,
            rows,
            self.output_shape(c, t),
            x.dtype,
        )


def _pair_index(c: int, device: torch.device) -> torch.Tensor:
    """For each (i, j) of a C x C matrix, the column of the ``[C//2 * C]`` shifted-pair table
    holding pair (i, j): shift ``d = (j - i) % C`` at channel i when ``d <= C//2``, else shift
    ``(i - j) % C`` at channel j (WPLI is symmetric). The diagonal points at column 0 (masked).
    """
    half = c // 2
    i = torch.arange(c, device=device)[:, None]
    j = torch.arange(c, device=device)[None, :]
    fwd = (j - i) % c
    use_fwd = fwd <= half
    d = torch.where(use_fwd, fwd, (i - j) % c)
    src = torch.where(use_fwd, i, j).expand(c, c)
    return ((d - 1).clamp(min=0) * c + src).reshape(-1)


def _tile_index(c: int, device: torch.device) -> torch.Tensor:
    """Source of every cell of flash-eeg's 2C x 2C tiling in ``[8 bands x pairs, 1]`` values.

    The tiling holds four C x C matrices 2 x 2; matrix m holds band 2m in its upper triangle
    (transposed, equal by symmetry), band 2m + 1 below the diagonal and 1 on the diagonal.
    """
    pairs = (c // 2) * c
    r = torch.arange(2 * c, device=device)
    r, q = r[:, None], r[None, :]
    m = (r // c) * 2 + q // c  # tile: 0 1 / 2 3
    i, j = r % c, q % c
    band = 2 * m + (i > j).long()  # upper triangle: band 2m, lower: band 2m + 1
    pair = _pair_index(c, device).view(c, c)[i, j]
    return torch.where(i == j, 8 * pairs, band * pairs + pair).reshape(-1)  # [4 C^2]
