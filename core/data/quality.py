"""Stage 9b: a quality score per epoch from flat lines, clipping, amplitude and line noise.

Every measure is a fraction in [0, 1], computed for all epochs and channels at once:

``flat``
    channels whose conditioned signal has a standard deviation below ``FLAT_UV``;
``clipping``
    channels that sit at their recording-wide extreme (the amplifier's rail) for more than
    ``CLIP_FRAC`` of the epoch's samples, at the recorded sampling rate;
``amplitude``
    channels whose conditioned peak-to-peak exceeds ``AMP_UV``;
``line_noise``
    the share of the unfiltered power (1 Hz to the lowpass edge) that lies within 1 Hz of the line
    frequency and its harmonics in excess of the neighbouring bins (2-5 Hz away), averaged over
    channels.

``score = (1 - flat) * (1 - clipping) * (1 - amplitude) * (1 - line_noise)``; an epoch with every
channel flat is invalid.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from einops import rearrange

FLAT_UV = 0.5
CLIP_FRAC = 0.002
AMP_UV = 1000.0
BLOCK = 64  # epochs per block


def epochs_view(data: np.ndarray, n_epochs: int, n_times: int) -> np.ndarray:
    """``[C, T]`` -> ``[E, C, n_times]`` over the first ``n_epochs`` whole epochs."""
    return rearrange(data[:, : n_epochs * n_times], "c (e t) -> e c t", e=n_epochs)


def epoch_quality(
    filtered: np.ndarray,
    unfiltered: np.ndarray,
    sfreq: float,
    epoch_s: float,
    line_freqs: list[float] | tuple[float, ...],
    h_freq: float | None = None,
    native: np.ndarray | None = None,
    native_sfreq: float | None = None,
) -> dict[str, np.ndarray]:
    """Quality measures and score per whole epoch.

    Parameters
    ----------
    filtered, unfiltered : ndarray, shape (n_chans, n_times)
        Conditioned and merely resampled signals, volts, same rate ``sfreq``.
    line_freqs : sequence of float
        Line frequency and harmonics (empty: line noise measured at 50 Hz and harmonics).
    native, native_sfreq : ndarray, shape (n_chans, n_times_native), float
        The signal at its recorded rate, where the amplifier's rail is exact (resampling rings
        around it); clipping is measured on it when given, else on ``unfiltered``.

    Returns
    -------
    dict of ndarray, shape (n_epochs,)
        ``flat``, ``clipping``, ``amplitude``, ``line_noise``, ``score`` and ``valid`` (bool).
    """
    n_t = int(round(epoch_s * sfreq))
    n_ep = filtered.shape[1] // n_t
    if n_ep == 0:
        empty = {k: np.zeros(0) for k in ("flat", "clipping", "amplitude", "line_noise", "score")}
        return {**empty, "valid": np.zeros(0, dtype=bool)}
    raw, raw_sfreq = (native, native_sfreq) if native is not None else (unfiltered, sfreq)
    assert raw_sfreq is not None
    n_raw = int(round(epoch_s * raw_sfreq))
    n_ep = min(n_ep, raw.shape[1] // n_raw)
    hi = raw.max(axis=1, keepdims=True)  # [C, 1] recording-wide extremes (the rails, if hit)
    lo = raw.min(axis=1, keepdims=True)
    tol = 1e-3 * np.maximum(hi - lo, 1e-12)
    freqs = np.fft.rfftfreq(n_t, 1 / sfreq)
    top = min(h_freq or sfreq / 2, sfreq / 2)
    band = (freqs >= 1.0) & (freqs <= top)
    lines = [
        f0
        for f0 in (list(line_freqs) or list(np.arange(50.0, top + 1e-6, 50.0)))
        if f0 + 1.0 <= sfreq / 2
    ]
    near = [np.abs(freqs - f0) <= 1.0 for f0 in lines]
    ring = [(np.abs(freqs - f0) >= 2.0) & (np.abs(freqs - f0) <= 5.0) for f0 in lines]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("flat", "amplitude", "clipping", "line")}
    f_all = epochs_view(filtered, n_ep, n_t)
    u_all = epochs_view(unfiltered, n_ep, n_t)
    r_all = epochs_view(raw, n_ep, n_raw)
    for s in range(0, n_ep, BLOCK):  # blocks of epochs bound the memory of the spectra
        f = f_all[s : s + BLOCK] * 1e6  # [E, C, t] µV
        u = u_all[s : s + BLOCK] * 1e6  # [E, C, t] µV
        parts["flat"].append((f.std(axis=-1) < FLAT_UV).mean(axis=-1))
        parts["amplitude"].append(((f.max(axis=-1) - f.min(axis=-1)) > AMP_UV).mean(axis=-1))
        r = r_all[s : s + BLOCK]  # [E, C, t_native] volts
        at_rail = (r >= hi - tol) | (r <= lo + tol)
        parts["clipping"].append((at_rail.mean(axis=-1) > CLIP_FRAC).mean(axis=-1))
        spec = np.abs(scipy.fft.rfft(u - u.mean(axis=-1, keepdims=True), axis=-1)) ** 2
        total = spec[..., band].sum(axis=-1) + 1e-30  # [E, C]
        excess = sum(  # power near the line above what the neighbouring bins predict
            np.maximum(spec[..., nr].sum(-1) - spec[..., rg].mean(-1) * nr.sum(), 0)
            for nr, rg in zip(near, ring)
        )
        parts["line"].append((np.minimum(excess / total, 1.0)).mean(axis=-1))
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    flat, amplitude, clipping, line = cat["flat"], cat["amplitude"], cat["clipping"], cat["line"]
    score = (1 - flat) * (1 - clipping) * (1 - amplitude) * (1 - np.clip(line, 0, 1))
    return {
        "flat": flat,
        "clipping": clipping,
        "amplitude": amplitude,
        "line_noise": line,
        "score": score,
        "valid": flat < 1.0,
    }
