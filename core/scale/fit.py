"""Scaling-law fits over a sweep's runs, with bootstrap confidence intervals.

Three families, all with :mod:`scipy.optimize`:

- **power laws** ``L = a * x**-b`` of the validation loss against compute ``C``, data ``D`` or
  parameters ``N`` (EPI-250k's ``L ∝ C^-0.225``): least squares on ``log L`` vs ``log x``, ``R²`` in
  log space;
- the **parametric** form of Hoffmann et al. (2022), ``L = E + A / N**alpha + B / D**beta``, fitted as
  they do: a Huber loss on ``log L`` with the prediction written as a log-sum-exp, from a grid of
  starting points;
- the **data-constrained** form of Muennighoff et al. (2023, "Scaling Data-Constrained Language
  Models", eq. 5), where ``D`` is replaced by the effective data of ``U`` distinct samples seen for
  ``R = D / U - 1`` repetitions beyond the first: ``D' = U + U * R* * (1 - exp(-R / R*))``; ``R*`` (the
  repetitions after which repeated data is worth ``1 - 1/e`` less) is fitted too. (The paper's
  ``N'`` for excess parameters is left out: a sweep varies ``N`` directly.)

Confidence intervals resample the runs with replacement and refit (percentile bootstrap, 95 %).
A fit that its table cannot constrain (too few runs, one value of its variable) raises
:class:`DegenerateGridError` naming what is missing; :func:`narrow_warnings` flags axes that span
less than a decade.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import optimize

from efm.errors import UsageError

log = logging.getLogger("efm.scale.fit")

HUBER_DELTA = 1e-3  # Hoffmann et al.'s delta for the Huber loss on log L
CI = (2.5, 97.5)


class DegenerateGridError(UsageError):
    """The runs cannot constrain a fit (too few of them, or a variable that never changes)."""


# -- helpers --------------------------------------------------------------------------------------
def _arrays(*cols: Any) -> list[np.ndarray]:
    out = [np.asarray(c, dtype=float) for c in cols]
    n = {len(c) for c in out}
    if len(n) != 1:
        raise UsageError(f"columns of different lengths: {sorted(n)}")
    return out


def _require(name: str, x: np.ndarray, what: str, need_points: int, n: int) -> None:
    """Raise :class:`DegenerateGridError` unless ``x`` has >= 2 distinct positive values."""
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise DegenerateGridError(f"{name}: {what} must be finite and > 0, got {x.tolist()}")
    distinct = np.unique(x)
    if len(distinct) < 2:
        raise DegenerateGridError(
            f"{name}: every run has the same {what} ({distinct[0]:.4g}); a fit needs at least "
            f"two values of it: add them to the sweep grid"
        )
    if n < need_points:
        raise DegenerateGridError(
            f"{name}: {n} run(s), the fit has {need_points - 1} parameter(s) and needs at "
            f"least {need_points} runs: widen the sweep grid"
        )


def r_squared(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination of ``pred`` for ``y``."""
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def bootstrap(
    fit: Callable[[np.ndarray], dict[str, float]],
    n: int,
    n_boot: int,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Percentile intervals of each value ``fit(index)`` returns, over resamples of ``n`` rows.

    Resamples whose fit fails (a resample with one distinct value) are skipped.
    """
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        try:
            values = fit(idx)
        except (DegenerateGridError, ValueError, RuntimeError, FloatingPointError):
            continue
        for k, v in values.items():
            draws.setdefault(k, []).append(v)
    return {
        k: [float(np.percentile(v, CI[0])), float(np.percentile(v, CI[1]))]
        for k, v in draws.items()
        if len(v) >= max(10, n_boot // 4)
    }


# -- power laws -----------------------------------------------------------------------------------
def _power(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    lx, ly = np.log(x), np.log(y)
    if np.ptp(lx) == 0:
        raise DegenerateGridError("one value of x")
    slope, intercept = np.polyfit(lx, ly, 1)
    return {"a": float(math.exp(intercept)), "b": float(-slope)}


def fit_power_law(
    x: Any, loss: Any, *, name: str = "L(x)", variable: str = "x", n_boot: int = 200, seed: int = 0
) -> dict[str, Any]:
    """Fit ``L = a * x**-b`` by least squares in log-log space.

    Returns
    -------
    dict
        ``a``, ``b`` (the exponent, positive when the loss falls), ``r2`` (in log space), ``n``,
        ``x_range`` and ``ci`` (95 % bootstrap intervals of ``a`` and ``b``).
    """
    x, y = _arrays(x, loss)
    _require(name, x, variable, 3, len(x))
    if np.any(y <= 0):
        raise DegenerateGridError(f"{name}: losses must be > 0 for a log-log fit")
    p = _power(x, y)
    pred = np.log(p["a"]) - p["b"] * np.log(x)
    return {
        "form": "L = a * x^-b",
        "variable": variable,
        **p,
        "r2": r_squared(np.log(y), pred),
        "n": len(x),
        "x_range": [float(x.min()), float(x.max())],
        "ci": bootstrap(lambda i: _power(x[i], y[i]), len(x), n_boot, seed),
    }


# -- parametric and data-constrained forms ---------------------------------------------------------
def effective_data(d: Any, u: Any, r_star: float) -> np.ndarray:
    """Muennighoff et al.'s effective data ``D' = U + U R* (1 - exp(-R / R*))``, ``R = D/U - 1``.

    ``D <= U`` (no repetition) gives ``D' = D``.
    """
    d, u = np.asarray(d, dtype=float), np.asarray(u, dtype=float)
    r = np.maximum(d / u - 1.0, 0.0)
    return np.where(d <= u, d, u + u * r_star * -np.expm1(-r / r_star))


def _log_pred(theta: np.ndarray, ln_n: np.ndarray, ln_d: np.ndarray) -> np.ndarray:
    a, b, e, alpha, beta = theta[:5]
    return np.logaddexp(np.logaddexp(a - alpha * ln_n, b - beta * ln_d), e)


def _huber_fit(
    residual: Callable[[np.ndarray], np.ndarray],
    starts: list[np.ndarray],
    lower: np.ndarray,
    upper: np.ndarray,
) -> tuple[np.ndarray, float]:
    best, best_cost = None, math.inf
    for x0 in starts:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                res = optimize.least_squares(
                    residual,
                    np.clip(x0, lower + 1e-9, upper - 1e-9),
                    bounds=(lower, upper),
                    loss="huber",
                    f_scale=HUBER_DELTA,
                    method="trf",
                )
            except ValueError:
                continue
        if np.isfinite(res.cost) and res.cost < best_cost:
            best, best_cost = res.x, float(res.cost)
    if best is None:
        raise RuntimeError("no starting point converged")
    return best, best_cost


def _starts(loss: np.ndarray, extra: list[list[float]] | None = None) -> list[np.ndarray]:
    """Hoffmann et al.'s grid of initialisations (coarsened)."""
    e0 = [math.log(float(loss.min()) * f) for f in (0.5, 0.9)]
    grid = itertools.product([0.0, 8.0], [0.0, 8.0], e0, [0.3], [0.3])
    return [
        np.array([a, b, e, al, be, *(x or [])]) for a, b, e, al, be in grid for x in extra or [[]]
    ]


_LOWER = np.array([-30.0, -30.0, -30.0, 0.0, 0.0])
_UPPER = np.array([60.0, 60.0, 30.0, 3.0, 3.0])


def _parametric(
    n: np.ndarray, d: np.ndarray, loss: np.ndarray, starts: list[np.ndarray]
) -> np.ndarray:
    ln_n, ln_d, ln_l = np.log(n), np.log(d), np.log(loss)
    theta, _ = _huber_fit(lambda t: _log_pred(t, ln_n, ln_d) - ln_l, starts, _LOWER, _UPPER)
    return theta


def _named(theta: np.ndarray) -> dict[str, float]:
    out = {
        "E": float(math.exp(theta[2])),
        "A": float(math.exp(theta[0])),
        "B": float(math.exp(theta[1])),
        "alpha": float(theta[3]),
        "beta": float(theta[4]),
    }
    if len(theta) > 5:
        out["R_star"] = float(math.exp(theta[5]))
    return out


def fit_parametric(
    n: Any, d: Any, loss: Any, *, n_boot: int = 100, seed: int = 0
) -> dict[str, Any]:
    """Fit ``L = E + A / N**alpha + B / D**beta`` (Hoffmann et al. 2022, approach 3).

    Returns ``E, A, B, alpha, beta``, ``r2`` (of ``L``), ``n`` and ``ci`` (bootstrap intervals,
    each resample started from the full fit).
    """
    n, d, loss = _arrays(n, d, loss)
    _require("L(N, D)", n, "N (parameters)", 6, len(n))
    _require("L(N, D)", d, "D (samples seen)", 6, len(n))
    theta = _parametric(n, d, loss, _starts(loss))
    pred = np.exp(_log_pred(theta, np.log(n), np.log(d)))

    def refit(i: np.ndarray) -> dict[str, float]:
        if len(np.unique(n[i])) < 2 or len(np.unique(d[i])) < 2:
            raise DegenerateGridError("resample")
        return _named(_parametric(n[i], d[i], loss[i], [theta]))

    return {
        "form": "L = E + A / N^alpha + B / D^beta",
        **_named(theta),
        "r2": r_squared(loss, pred),
        "n": len(n),
        "ci": bootstrap(refit, len(n), n_boot, seed),
    }


def _constrained(
    n: np.ndarray, d: np.ndarray, u: np.ndarray, loss: np.ndarray, starts: list[np.ndarray]
) -> np.ndarray:
    ln_n, ln_l = np.log(n), np.log(loss)

    def residual(t: np.ndarray) -> np.ndarray:
        ln_d = np.log(effective_data(d, u, math.exp(t[5])))
        return _log_pred(t, ln_n, ln_d) - ln_l

    lower = np.append(_LOWER, math.log(0.05))
    upper = np.append(_UPPER, math.log(1e4))
    theta, _ = _huber_fit(residual, starts, lower, upper)
    return theta


def fit_data_constrained(
    n: Any, d: Any, u: Any, loss: Any, *, n_boot: int = 100, seed: int = 0
) -> dict[str, Any]:
    """Fit ``L = E + A / N**alpha + B / D'**beta`` with Muennighoff et al.'s effective data ``D'``.

    ``u`` is the number of distinct samples each run drew from; runs with ``D > U`` repeat data.
    Returns the parametric values plus ``R_star``.
    """
    n, d, u, loss = _arrays(n, d, u, loss)
    _require("L(N, D')", n, "N (parameters)", 7, len(n))
    _require("L(N, D')", d, "D (samples seen)", 7, len(n))
    epochs = d / u
    if not np.any(epochs > 1.0 + 1e-9) or not np.any(epochs <= 1.0 + 1e-9):
        raise DegenerateGridError(
            "L(N, D'): the data-constrained fit needs runs that see their data once and runs "
            f"that repeat it (epochs seen: {sorted({round(float(e), 3) for e in epochs})}): add "
            "epoch counts 1 and > 1 to the sweep grid"
        )
    theta = _constrained(n, d, u, loss, _starts(loss, [[math.log(5.0)], [math.log(30.0)]]))
    pred = np.exp(_log_pred(theta, np.log(n), np.log(effective_data(d, u, math.exp(theta[5])))))

    def refit(i: np.ndarray) -> dict[str, float]:
        if len(np.unique(n[i])) < 2 or len(np.unique(d[i])) < 2:
            raise DegenerateGridError("resample")
        return _named(_constrained(n[i], d[i], u[i], loss[i], [theta]))

    return {
        "form": "L = E + A / N^alpha + B / D'^beta, D' = U + U R* (1 - exp(-(D/U - 1) / R*))",
        **_named(theta),
        "r2": r_squared(loss, pred),
        "n": len(n),
        "ci": bootstrap(refit, len(n), n_boot, seed),
    }


def predict(fit: dict[str, Any], n: Any, d: Any, u: Any | None = None) -> np.ndarray:
    """The loss a parametric or data-constrained ``fit`` predicts at ``(N, D[, U])``."""
    n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
    if "R_star" in fit and u is not None:
        d = effective_data(d, u, fit["R_star"])
    out: np.ndarray = fit["E"] + fit["A"] / n ** fit["alpha"] + fit["B"] / d ** fit["beta"]
    return out


# -- the grid ---------------------------------------------------------------------------------------
def narrow_warnings(columns: dict[str, Any], decades: float = 1.0) -> list[str]:
    """One line per axis whose values span less than ``decades`` decades (exponents poorly set)."""
    out = []
    for name, values in columns.items():
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v) & (v > 0)]
        if len(v) == 0:
            continue
        span = math.log10(v.max() / v.min())
        if span < decades:
            out.append(
                f"the grid spans {span:.2f} decade(s) of {name} ({v.min():.3g} to {v.max():.3g}): "
                f"exponents fitted over less than {decades:g} decade are poorly constrained; "
                "widen the grid before extrapolating"
            )
    return out
