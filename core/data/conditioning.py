"""Stage 6: conditioning through MNE's filters: line-noise detection, resampling, bandpass and notch.

Filters are designed by MNE (``mne.filter.create_filter``: zero-phase windowed-sinc FIR, MNE's
default transition bands; the notch exactly as ``mne.filter.notch_filter`` designs it) and resampling
is MNE's polyphase resampler. For speed the signal is resampled to the target rate first, then the
bandpass and notch kernels are convolved into one and applied in a single float32 overlap-add pass
with MNE's ``reflect_limited`` edge padding (odd reflection, then zeros). ``tests/core/data/test_conditioning.py`` checks the
result against ``mne.filter.filter_data`` followed by ``mne.filter.notch_filter``.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from functools import lru_cache

import numpy as np
import scipy.signal

log = logging.getLogger("efm.data.conditioning")

LINE_FREQS = (50.0, 60.0)
LINE_RATIO = 4.0  # peak over neighbourhood power ratio that counts as line noise


def detect_line_freq(data: np.ndarray, sfreq: float, max_s: float = 60.0) -> float | None:
    """50 or 60 Hz when the spectrum shows a line-noise peak, else None.

    Welch spectrum (0.5 Hz resolution) of up to ``max_s`` seconds from the middle of the recording;
    the peak at f must exceed :data:`LINE_RATIO` times the median power 2-6 Hz either side.
    """
    n = data.shape[-1]
    seg = int(min(n, max_s * sfreq))
    mid = data[:, (n - seg) // 2 : (n - seg) // 2 + seg]  # [C, T]
    nper = int(min(seg, 2 * sfreq))
    if nper < sfreq:
        return None
    freqs, psd = scipy.signal.welch(mid, sfreq, nperseg=nper, axis=-1)
    psd = np.median(psd, axis=0)  # robust over channels
    best, best_ratio = None, LINE_RATIO
    for f in LINE_FREQS:
        if f + 6 >= sfreq / 2:
            continue
        peak = psd[np.abs(freqs - f) <= 0.5].max()
        side = (np.abs(freqs - f) >= 2) & (np.abs(freqs - f) <= 6)
        ratio = peak / max(float(np.median(psd[side])), 1e-30)
        if ratio > best_ratio:
            best, best_ratio = f, ratio
    return best


def resample(data: np.ndarray, sfreq: float, target: float) -> np.ndarray:
    """MNE's polyphase resampling from ``sfreq`` to ``target`` (float32 in and out)."""
    if abs(sfreq - target) < 1e-9:
        return data
    import mne

    ratio = Fraction(target / sfreq).limit_denominator(1000)
    out = mne.filter.resample(
        data.astype(np.float64, copy=False),
        up=ratio.numerator,
        down=ratio.denominator,
        method="polyphase",
        verbose="error",
    )
    return out.astype(np.float32)


@lru_cache(maxsize=32)
def kernel(
    sfreq: float, l_freq: float | None, h_freq: float | None, notch: tuple[float, ...] = ()
) -> np.ndarray | None:
    """One zero-phase FIR kernel: MNE's bandpass design convolved with MNE's notch design."""
    import mne

    nyq = sfreq / 2
    if h_freq is not None and h_freq >= nyq * 0.98:
        h_freq = None
    parts = []
    if l_freq is not None or h_freq is not None:
        parts.append(
            mne.filter.create_filter(
                None,
                sfreq,
                l_freq,
                h_freq,
                method="fir",
                phase="zero",
                fir_design="firwin",
                verbose="error",
            )
        )
    freqs = [f for f in notch if f + 1.0 < nyq]
    if freqs:
        widths = [f / 200.0 for f in freqs]
        highs = [f + w / 2 + 0.5 for f, w in zip(freqs, widths)]
        lows = [f - w / 2 - 0.5 for f, w in zip(freqs, widths)]
        parts.append(
            mne.filter.create_filter(
                None,
                sfreq,
                highs,
                lows,
                l_trans_bandwidth=0.5,
                h_trans_bandwidth=0.5,
                method="fir",
                phase="zero",
                fir_design="firwin",
                verbose="error",
            )
        )
    if not parts:
        return None
    h = parts[0]
    for p in parts[1:]:
        h = np.convolve(h, p)
    return h.astype(np.float32)


def apply_kernel(data: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Zero-phase filtering with an odd symmetric kernel, edges padded by limited reflection."""
    half = len(h) // 2
    n = data.shape[-1]
    pad = min(half, n - 1)
    x = np.pad(
        data.astype(np.float32, copy=False),
        ((0, 0), (pad, pad)),
        mode="reflect",
        reflect_type="odd",
    )
    if pad < half:  # shorter than the kernel: zero beyond the reflection, as MNE does
        x = np.pad(x, ((0, 0), (half - pad, half - pad)))
    # [C, T + 2 half] * [1, L] -> [C, T]
    return scipy.signal.oaconvolve(x, h[None, :], mode="valid", axes=1).astype(np.float32)


def line_harmonics(f0: float, h_freq: float | None, sfreq: float) -> tuple[float, ...]:
    """The line frequency and its harmonics below the lowpass edge (or Nyquist)."""
    top = min(h_freq or sfreq / 2, sfreq / 2)
    return tuple(float(f) for f in np.arange(f0, top + 1e-6, f0) if f + 1.0 < sfreq / 2)


def condition(
    data: np.ndarray,
    sfreq: float,
    target: float,
    l_freq: float | None,
    h_freq: float | None,
    notch: float | None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Resample then bandpass + notch.

    Parameters
    ----------
    data : ndarray, shape (n_chans, n_times), float32
        Volts at ``sfreq``.
    notch : float | None
        Line frequency; None detects 50 or 60 Hz from the spectrum; 0 disables the notch.

    Returns
    -------
    filtered : ndarray, shape (n_chans, n_times'), float32
        Conditioned signal at ``target``.
    unfiltered : ndarray, shape (n_chans, n_times'), float32
        Resampled but not filtered (for the quality score's clipping and line-noise checks).
    info : dict
        ``line_freq`` (detected or given), ``notch`` frequencies applied, rates.
    """
    line = detect_line_freq(data, sfreq) if notch is None else (notch or None)
    rs = resample(data, sfreq, target)  # [C, T']
    freqs = line_harmonics(line, h_freq, target) if line else ()
    h = kernel(float(target), l_freq, h_freq, freqs)
    out = apply_kernel(rs, h) if h is not None else rs.copy()
    info = {
        "line_freq": line,
        "notch": list(freqs),
        "sfreq_in": sfreq,
        "sfreq": target,
        "l_freq": l_freq,
        "h_freq": h_freq,
    }
    return out, rs, info
