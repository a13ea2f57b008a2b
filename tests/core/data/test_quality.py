"""Quality measures on signals with known defects."""

from __future__ import annotations

import numpy as np

from efm.data import quality


def _clean(n_ep: int = 4, sfreq: float = 250.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((8, int(n_ep * 30 * sfreq))) * 20e-6).astype(np.float32)


def test_clean_signal_scores_one() -> None:
    x = _clean()
    q = quality.epoch_quality(x, x, 250.0, 30.0, [])
    assert q["score"].shape == (4,)
    np.testing.assert_allclose(q["score"], 1.0, atol=0.02)
    assert q["valid"].all()


def test_each_defect_is_seen() -> None:
    x = _clean()
    n = 7500
    x[:, :n] = 0.0  # epoch 0: flat everywhere -> invalid
    x[2, n : 2 * n] = np.clip(x[2, n : 2 * n] * 50, -400e-6, 400e-6)  # epoch 1: clipping
    x[3, n : 2 * n] = 1e-3  # stuck at the rail
    x[4:, 2 * n : 3 * n] += 2e-3 * np.sign(np.sin(np.arange(n) / 50))  # epoch 2: amplitude
    t = np.arange(n) / 250.0
    u = x.copy()
    u[:, 3 * n :] += 100e-6 * np.sin(2 * np.pi * 50 * t)  # epoch 3: line noise (unfiltered only)
    q = quality.epoch_quality(x, u, 250.0, 30.0, [50.0])
    assert q["flat"][0] == 1.0 and not q["valid"][0] and q["score"][0] == 0.0
    assert q["clipping"][1] == 2 / 8
    assert q["amplitude"][2] == 4 / 8
    assert q["line_noise"][3] > 0.5 and q["line_noise"][:3].max() < 0.05
    assert (q["score"][1:] < 0.8).all()


def test_clipping_is_measured_at_the_recorded_rate() -> None:
    from efm.data import conditioning

    rng = np.random.default_rng(1)
    raw = (rng.standard_normal((4, 500 * 120)) * 20e-6).astype(np.float32)  # 500 Hz, 4 epochs
    raw[1, 500 * 40 : 500 * 42] = np.clip(raw[1, 500 * 40 : 500 * 42] * 40, -300e-6, 300e-6)
    raw[1] = np.clip(raw[1], -300e-6, 300e-6)  # the rail
    filt, unfilt, _ = conditioning.condition(raw, 500.0, 250.0, 0.5, 100.0, 0.0)
    q = quality.epoch_quality(filt, unfilt, 250.0, 30.0, [], 100.0, raw, 500.0)
    assert q["clipping"].tolist() == [0.0, 0.25, 0.0, 0.0]
