"""The compute-optimal plan against the closed form; the frontier and the fit table."""

from __future__ import annotations

import numpy as np
import pytest

from efm.errors import UsageError
from efm.scale import report
from efm.scale.fit import DegenerateGridError

E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
K = 6.0  # FLOPs per sample per parameter: C = 6 N D


def _fitted(**law):
    return {
        "fits": {"L(N,D)": {"E": E, "A": A, "B": B, "alpha": ALPHA, "beta": BETA} | law},
        "skipped": {},
        "compute_model": {"k": K, "g": 1.0},
        "U_max": 1e30,
        "ranges": {"N": [1e6, 1e9], "C": [1e15, 1e20]},
    }


def test_plan_matches_the_chinchilla_closed_form():
    # minimising E + A/N^a + B/D^b subject to C = K N D gives
    # N_opt = G (C/K)^(b/(a+b)), G = (a A / (b B))^(1/(a+b))  (Hoffmann et al. 2022, eq. 4)
    fitted = _fitted()
    for budget in (1e17, 1e19):
        p = report.plan(fitted, budget)
        g = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
        n_opt = g * (budget / K) ** (BETA / (ALPHA + BETA))
        assert p["N"] == pytest.approx(n_opt, rel=1e-3)
        assert p["D"] == pytest.approx(budget / (K * p["N"]), rel=1e-9)
        assert p["loss"] == pytest.approx(E + A / n_opt**ALPHA + B / p["D"] ** BETA, rel=1e-6)
        assert p["notes"] == []
    assert "extrapolated" in report.plan(fitted, 1e24)["notes"][0]


def test_repetition_moves_the_optimum_to_larger_models():
    # with few distinct samples, repeated epochs are worth less (R* = 5): the budget is better
    # spent on parameters than on more passes over the same data
    free = report.plan(_fitted(), 1e20)
    constrained = _fitted()
    constrained["fits"] = {"L(N,D')": {**constrained["fits"]["L(N,D)"], "R_star": 5.0}}
    scarce = report.plan(constrained, 1e20, unique=1e8)
    assert free["epochs"] < 1  # U_max 1e30: the data never repeats
    assert scarce["epochs"] > 1 and scarce["N"] > free["N"]
    assert scarce["law"] == "L(N,D')"


def test_pareto_and_refusals():
    c = np.array([1.0, 2.0, 3.0, 4.0])
    loss = np.array([3.0, 3.5, 2.0, 2.5])
    assert report.pareto(c, loss).tolist() == [0, 2]
    with pytest.raises(DegenerateGridError, match="no run"):
        report.fit_all([])
    with pytest.raises(UsageError, match="budget must be > 0"):
        report.plan(_fitted(), -1)
    no_law = _fitted() | {"fits": {}, "skipped": {"L(N,D)": "one size"}}
    with pytest.raises(UsageError, match="planning needs a fit of L"):
        report.plan(no_law, 1e18)
