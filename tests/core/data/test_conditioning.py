"""Conditioning against MNE's own filter_data + notch_filter + resample."""

from __future__ import annotations

import numpy as np
import pytest

from efm.data import conditioning


def _signal(sfreq: float, seconds: float, line: float | None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sfreq * seconds)) / sfreq
    x = rng.standard_normal((4, t.size)) * 20e-6 + 10e-6 * np.sin(2 * np.pi * 10 * t)
    if line:
        x += 30e-6 * np.sin(2 * np.pi * line * t)
    return x.astype(np.float32)


@pytest.mark.parametrize("line", [50.0, 60.0, None])
def test_detect_line_freq(line: float | None) -> None:
    assert conditioning.detect_line_freq(_signal(500.0, 60.0, line), 500.0) == line


def test_no_detection_when_line_above_nyquist() -> None:
    assert conditioning.detect_line_freq(_signal(100.0, 60.0, None), 100.0) is None


@pytest.mark.parametrize("sfreq", [500.0, 256.0, 200.0, 125.0])
def test_condition_equals_mne(sfreq: float) -> None:
    import mne

    x = _signal(sfreq, 40.0, 50.0 if sfreq > 120 else None)
    out, unfiltered, info = conditioning.condition(x, sfreq, 250.0, 0.5, 100.0, None)
    from fractions import Fraction

    r = Fraction(250.0 / sfreq).limit_denominator(1000)
    ref = mne.filter.resample(
        x.astype(float), up=r.numerator, down=r.denominator, method="polyphase", verbose="error"
    )
    np.testing.assert_allclose(unfiltered, ref, atol=1e-6 * np.abs(ref).max())
    ref = mne.filter.filter_data(ref, 250.0, 0.5, 100.0, verbose="error")
    if info["notch"]:
        ref = mne.filter.notch_filter(ref, 250.0, info["notch"], verbose="error")
    assert out.shape == ref.shape == (4, 10000) and out.dtype == np.float32
    err = np.abs(out - ref).max() / np.abs(ref).max()
    assert err < 2e-5, err
    assert info["line_freq"] == (50.0 if sfreq > 120 else None)


def test_notch_removes_line_and_bandpass_removes_drift() -> None:
    x = _signal(500.0, 60.0, 50.0) + np.linspace(0, 500e-6, 30000, dtype=np.float32)
    out, _, info = conditioning.condition(x, 500.0, 250.0, 0.5, 100.0, None)
    assert info["notch"] == [50.0, 100.0]
    spec = np.abs(np.fft.rfft(out[:, 2500:-2500], axis=1)).mean(0)
    f = np.fft.rfftfreq(out.shape[1] - 5000, 1 / 250.0)
    assert spec[np.argmin(np.abs(f - 50))] < 0.05 * spec[np.argmin(np.abs(f - 10))]
    assert abs(out[:, 2500:-2500].mean()) < 2e-6


def test_notch_zero_disables() -> None:
    _, _, info = conditioning.condition(_signal(500.0, 20.0, 50.0), 500.0, 250.0, 0.5, 100.0, 0.0)
    assert info["notch"] == [] and info["line_freq"] is None
