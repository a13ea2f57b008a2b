"""Scaling-law fits recover known laws from noisy synthetic tables and refuse degenerate grids."""

from __future__ import annotations

import numpy as np
import pytest

from efm.scale import fit
from efm.scale.fit import DegenerateGridError

# Hoffmann et al. (2022)'s published fit, used as the ground truth of the synthetic tables
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28


def _noisy(values, rng, sigma=0.01):
    return values * np.exp(rng.normal(0, sigma, np.shape(values)))


def test_power_law_recovers_exponent_and_r2():
    rng = np.random.default_rng(0)
    c = np.geomspace(1e12, 1e18, 14)
    loss = _noisy(5.0 * c**-0.225, rng)
    f = fit.fit_power_law(c, loss, variable="C", n_boot=100)
    assert f["b"] == pytest.approx(0.225, abs=0.005)  # 1 % noise over 6 decades
    assert f["a"] == pytest.approx(5.0, rel=0.15)
    assert f["r2"] > 0.99
    lo, hi = f["ci"]["b"]
    assert lo < f["b"] < hi and hi - lo < 0.02
    assert abs(f["b"] - 0.225) < hi - lo  # the truth within a CI width of the estimate
    # R² against numpy's own: the log-space coefficient of determination
    ly, pred = np.log(loss), np.log(f["a"]) - f["b"] * np.log(c)
    assert f["r2"] == pytest.approx(np.corrcoef(ly, pred)[0, 1] ** 2, rel=1e-9)


def test_parametric_fit_recovers_exponents_and_irreducible_loss():
    rng = np.random.default_rng(1)
    n, d = (g.ravel() for g in np.meshgrid(np.geomspace(1e6, 1e9, 5), np.geomspace(1e8, 1e11, 5)))
    loss = _noisy(E + A / n**ALPHA + B / d**BETA, rng)
    f = fit.fit_parametric(n, d, loss, n_boot=20)
    # 1 % multiplicative noise, 25 runs over 3 decades of N and D
    assert f["alpha"] == pytest.approx(ALPHA, abs=0.03)
    assert f["beta"] == pytest.approx(BETA, abs=0.03)
    assert f["E"] == pytest.approx(E, rel=0.08)
    assert f["r2"] > 0.99
    assert f["ci"]["E"][0] < E < f["ci"]["E"][1]


def test_data_constrained_fit_recovers_r_star():
    rng = np.random.default_rng(2)
    rows = [
        (n, u, u * ep)
        for n in np.geomspace(1e6, 1e9, 4)
        for u in np.geomspace(1e8, 1e10, 3)
        for ep in (1, 2, 4, 16, 64)
    ]
    n, u, d = (np.array(c, dtype=float) for c in zip(*rows))
    r_star = 15.4  # Muennighoff et al. (2023)'s fitted R*_D
    loss = _noisy(E + A / n**ALPHA + B / fit.effective_data(d, u, r_star) ** BETA, rng)
    f = fit.fit_data_constrained(n, d, u, loss, n_boot=10)
    assert f["alpha"] == pytest.approx(ALPHA, abs=0.03)
    assert f["beta"] == pytest.approx(BETA, abs=0.04)
    assert f["E"] == pytest.approx(E, rel=0.1)
    assert f["R_star"] == pytest.approx(r_star, rel=0.35)
    # the parametric form ignores repetition and fits the same table worse
    assert fit.fit_parametric(n, d, loss, n_boot=0)["r2"] < f["r2"]


def test_effective_data():
    u = 100.0
    np.testing.assert_allclose(fit.effective_data([50, 100], u, 15.4), [50, 100])
    # R = 1 repetition: U + U R* (1 - exp(-1 / R*)), just under 2 U
    expected = u + u * 15.4 * (1 - np.exp(-1 / 15.4))
    np.testing.assert_allclose(fit.effective_data(200, u, 15.4), expected)
    assert 190 < expected < 200
    # infinitely many repetitions saturate at U (1 + R*)
    np.testing.assert_allclose(fit.effective_data(1e9, u, 15.4), u * 16.4, rtol=1e-6)


def test_degenerate_tables_are_refused():
    with pytest.raises(DegenerateGridError, match="every run has the same N"):
        fit.fit_power_law([1e6, 1e6, 1e6], [3.0, 2.9, 3.1], name="L(N)", variable="N")
    with pytest.raises(DegenerateGridError, match="needs at least 3 runs"):
        fit.fit_power_law([1e6, 1e7], [3.0, 2.0], variable="N")
    n = [1e6, 1e7] * 4
    with pytest.raises(DegenerateGridError, match="same D"):
        fit.fit_parametric(n, [1e9] * 8, np.linspace(2, 3, 8))
    with pytest.raises(DegenerateGridError, match="repeat it"):
        fit.fit_data_constrained(n, np.geomspace(1e8, 1e9, 8), np.geomspace(1e8, 1e9, 8), [2.0] * 8)


def test_narrow_grid_warns():
    (w,) = fit.narrow_warnings({"N": [1e6, 4e6], "D": [1e6, 1e9]})
    assert "0.60 decade(s) of N" in w
