"""A sweep's outputs: ``results.csv``, ``fit.json``, figures, ``report.md`` and budget plans.

``fit.json`` holds every fit of :mod:`efm.scale.fit` that the grid constrains (and, for the others,
why they were skipped), the grid's warnings, and the compute model ``flops_per_sample = k * N**g``
fitted over the runs, which turns a budget ``C`` into samples ``D = C / flops_per_sample(N)``.
:func:`plan` picks the ``N`` that minimises the predicted loss at a budget (the compute-optimal
frontier), with the data-constrained fit when there is one (epochs over the ``U`` distinct samples
available), else the parametric fit.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize

from efm.errors import UsageError
from efm.scale import fit as F

log = logging.getLogger("efm.scale.report")

COLUMNS = (
    "label size backbone fraction epochs steps batch_size N n_total D U epochs_seen "
    "flops_per_sample C wall_s val_s train_loss val_loss resumed_from_step device run_dir key"
).split()


def write_results(path: Path, results: list[dict[str, Any]]) -> Path:
    """``results.csv``: one row per finished run (probe metrics as extra columns)."""
    extra = sorted({k for r in results for k in r if k not in COLUMNS})
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, [*COLUMNS, *extra], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)
    return path


def read_results(path: Path) -> list[dict[str, Any]]:
    def value(v: str) -> Any:
        try:
            return float(v)
        except ValueError:
            return v

    with open(path, encoding="utf-8") as fh:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def pareto(c: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Indices of the runs no cheaper run beats (the lower envelope of loss vs compute)."""
    order = np.argsort(c)
    best = np.minimum.accumulate(loss[order])
    keep = np.concatenate([[True], loss[order][1:] < best[:-1]])
    return np.sort(order[keep])


def fit_all(results: list[dict[str, Any]], n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Every fit the runs constrain; raises :class:`DegenerateGridError` when none is possible."""
    if not results:
        raise F.DegenerateGridError("no run of the sweep finished: nothing to fit (see the log)")
    col = {k: np.array([float(r[k]) for r in results]) for k in ("N", "D", "U", "C", "val_loss")}
    loss = col["val_loss"]
    out: dict[str, Any] = {"n_runs": len(results), "fits": {}, "skipped": {}}
    front = pareto(col["C"], loss)
    use = front if len(np.unique(col["C"][front])) >= 3 else np.arange(len(loss))
    jobs: dict[str, Any] = {
        "L(C)": lambda: {
            **F.fit_power_law(
                col["C"][use], loss[use], name="L(C)", variable="C", n_boot=n_boot, seed=seed
            ),
            "points": "frontier" if use is front else "all runs",
        },
        "L(D)": lambda: F.fit_power_law(
            col["D"], loss, name="L(D)", variable="D", n_boot=n_boot, seed=seed
        ),
        "L(N)": lambda: F.fit_power_law(
            col["N"], loss, name="L(N)", variable="N", n_boot=n_boot, seed=seed
        ),
        "L(N,D)": lambda: F.fit_parametric(col["N"], col["D"], loss, n_boot=n_boot // 2, seed=seed),
        "L(N,D')": lambda: F.fit_data_constrained(
            col["N"], col["D"], col["U"], loss, n_boot=n_boot // 2, seed=seed
        ),
    }
    for name, job in jobs.items():
        try:
            out["fits"][name] = job()
        except F.DegenerateGridError as exc:
            out["skipped"][name] = str(exc)
            log.warning("%s not fitted: %s", name, exc)
    if not out["fits"]:
        raise F.DegenerateGridError(
            "no scaling law can be fitted to these runs: "
            + "; ".join(f"{k}: {v}" for k, v in out["skipped"].items())
        )
    out["warnings"] = F.narrow_warnings({"N": col["N"], "D": col["D"], "C": col["C"]})
    for name, f in out["fits"].items():
        if "r2" in f and f["r2"] < 0.5:
            out["warnings"].append(f"{name}: R² {f['r2']:.2f}, the form fits these runs poorly")
    out["warnings"] += _at_bounds(out["fits"], float(loss.min()))
    for w in out["warnings"]:
        log.warning("%s", w)
    fps = np.array([float(r["flops_per_sample"]) for r in results])
    if len(np.unique(col["N"])) >= 2:
        g, lnk = np.polyfit(np.log(col["N"]), np.log(fps), 1)
    else:
        g, lnk = 1.0, float(np.log(np.mean(fps / col["N"])))
    out["compute_model"] = {
        "form": "flops_per_sample = k * N^g",
        "k": float(math.exp(lnk)),
        "g": float(g),
    }
    out["U_max"] = float(col["U"].max())
    out["ranges"] = {k: [float(v.min()), float(v.max())] for k, v in col.items()}
    return out


def _at_bounds(fits: dict[str, Any], min_loss: float) -> list[str]:
    """Warnings for parametric values pinned at the edge of their search range."""
    out = []
    for name, f in fits.items():
        if "E" not in f:
            continue
        pinned = [k for k in ("alpha", "beta") if f[k] < 1e-3 or f[k] > 3 - 1e-3]
        if f["E"] < 1e-6 * min_loss:
            pinned.append("E (0: no irreducible loss resolved)")
        if "R_star" in f and (f["R_star"] > 9e3 or f["R_star"] < 0.06):
            pinned.append("R_star (repetition effect not resolved)")
        if pinned:
            out.append(
                f"{name}: {', '.join(pinned)} at the bound of the search range: the grid does "
                "not constrain the form; widen it (more sizes, data and epochs) before trusting it"
            )
    return out


def _flops(fitted: dict[str, Any], n: Any) -> Any:
    m = fitted["compute_model"]
    return m["k"] * np.asarray(n, dtype=float) ** m["g"]


def _law(fitted: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    for name in ("L(N,D')", "L(N,D)"):
        if name in fitted["fits"]:
            return name, fitted["fits"][name]
    raise UsageError(
        "planning needs a fit of L(N, D) and this sweep has none ("
        + "; ".join(f"{k}: {v}" for k, v in fitted["skipped"].items() if k.startswith("L(N,"))
        + ")"
    )


def predicted(fitted: dict[str, Any], n: Any, c: Any, u: float) -> Any:
    """Predicted loss at parameters ``n`` and compute ``c`` with ``u`` distinct samples."""
    _, law = _law(fitted)
    d = np.asarray(c, dtype=float) / _flops(fitted, n)
    return F.predict(law, n, d, u)


def plan(fitted: dict[str, Any], budget: float, unique: float | None = None) -> dict[str, Any]:
    """The compute-optimal ``(N, D, epochs)`` for ``budget`` FLOPs and ``unique`` distinct samples."""
    if not budget > 0:
        raise UsageError(f"--plan C={budget}: the budget must be > 0 FLOPs")
    name, _ = _law(fitted)
    u = float(unique or fitted["U_max"])
    lo, hi = fitted["ranges"]["N"]
    span = (math.log(lo) - 3 * math.log(10), math.log(hi) + 3 * math.log(10))
    res = optimize.minimize_scalar(
        lambda ln_n: float(predicted(fitted, math.exp(ln_n), budget, u)),
        bounds=span,
        method="bounded",
    )
    n = math.exp(res.x)
    d = budget / float(_flops(fitted, n))
    notes = []
    if min(abs(res.x - span[0]), abs(res.x - span[1])) < 0.05:
        notes.append("the optimum sits on the search bound (1000x beyond the grid): not trusted")
    c_lo, c_hi = fitted["ranges"]["C"]
    if budget > 10 * c_hi or budget < c_lo / 10:
        notes.append(
            f"extrapolated {math.log10(budget / c_hi):+.1f} decades beyond the sweep's compute "
            f"({c_lo:.3g} to {c_hi:.3g} FLOPs)"
        )
    return {
        "C": budget,
        "law": name,
        "N": n,
        "D": d,
        "U": u,
        "epochs": d / u,
        "loss": float(res.fun),
        "notes": notes,
    }


def frontier(fitted: dict[str, Any], budgets: np.ndarray, u: float) -> list[dict[str, Any]]:
    return [plan(fitted, float(c), u) for c in budgets]


# -- figures --------------------------------------------------------------------------------------
def figures(out: Path, results: list[dict[str, Any]], fitted: dict[str, Any]) -> dict[str, Path]:
    """``loss_vs.png`` (log-log, fitted lines and exponents), ``loss_curves.png``, ``isoloss.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from efm.train.rundir import Metrics

    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    loss = np.array([float(r["val_loss"]) for r in results])
    sizes = sorted(
        {r["size"] for r in results}, key=lambda s: min(r["N"] for r in results if r["size"] == s)
    )
    cmap = plt.get_cmap("viridis")
    color = {s: cmap(i / max(1, len(sizes) - 1)) for i, s in enumerate(sizes)}

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, var, title in zip(
        axes,
        ("C", "D", "N"),
        ("compute C (FLOPs)", "samples seen D", "parameters N (non-embedding)"),
    ):
        x = np.array([float(r[var]) for r in results])
        for s in sizes:
            m = np.array([r["size"] == s for r in results])
            ax.scatter(x[m], loss[m], color=color[s], label=s, s=28, zorder=3)
        f = fitted["fits"].get(f"L({var})")
        if f is not None:
            grid = np.geomspace(x.min() / 1.5, x.max() * 1.5, 50)
            ci = f["ci"].get("b")
            text = f"L ∝ {var}^-{f['b']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
            ax.plot(grid, f["a"] * grid ** -f["b"], "k--", lw=1, label=f"{text}, R² {f['r2']:.2f}")
        ax.set(xscale="log", yscale="log", xlabel=title, ylabel="validation loss")
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths["loss_vs"] = out / "loss_vs.png"
    fig.savefig(paths["loss_vs"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.2))
    for r in results:
        rows = (
            Metrics.read_csv(Path(str(r.get("run_dir", ""))) / "metrics.csv")
            if r.get("run_dir")
            else []
        )
        if rows:
            ax.plot(
                [row["step"] * float(r["batch_size"]) for row in rows],
                [row["loss"] for row in rows],
                color=color[r["size"]],
                alpha=0.4 + 0.6 * float(r["fraction"]),
                lw=1,
                marker="o",
                ms=2,  # a run shorter than train.log_every logs one point
                label=r["label"],
            )
    ax.set(xscale="log", xlabel="samples seen", ylabel="training loss", title="loss curves per run")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=6, ncol=1 + len(results) // 20, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    paths["loss_curves"] = out / "loss_curves.png"
    fig.savefig(paths["loss_curves"], dpi=110)
    plt.close(fig)

    try:
        _law(fitted)
    except UsageError:
        return paths
    u = fitted["U_max"]
    n_lo, n_hi = fitted["ranges"]["N"]
    ns = np.geomspace(n_lo / 10, n_hi * 10, 80)
    eps = np.geomspace(0.5, max(64.0, 4 * fitted["ranges"]["D"][1] / u), 80)
    nn_, ee = np.meshgrid(ns, eps)
    cc = _flops(fitted, nn_) * ee * u
    ll = predicted(fitted, nn_, cc, u)
    fig, ax = plt.subplots(figsize=(7, 5))
    cs = ax.contourf(nn_, ee, ll, levels=20, cmap="viridis_r")
    fig.colorbar(cs, ax=ax, label="predicted validation loss (IsoLoss)")
    budgets = np.geomspace(cc.min() * 3, cc.max() / 3, 6)
    ax.contour(nn_, ee, cc, levels=budgets, colors="w", linestyles=":", linewidths=0.8)
    front = [p for p in frontier(fitted, np.geomspace(cc.min(), cc.max(), 40), u)]
    ax.plot(
        [p["N"] for p in front],
        [p["epochs"] for p in front],
        "r-",
        lw=2,
        label="compute-optimal frontier",
    )
    ax.scatter(
        [float(r["N"]) for r in results],
        [float(r["epochs_seen"]) for r in results],
        c="k",
        s=14,
        label="runs",
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(ns[0], ns[-1]),
        ylim=(eps[0], eps[-1]),
        xlabel="parameters N",
        ylabel=f"epochs over U = {u:.3g} samples",
        title=f"IsoLoss ({_law(fitted)[0]}), dotted: iso-compute",
    )
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    paths["isoloss"] = out / "isoloss.png"
    fig.savefig(paths["isoloss"], dpi=110)
    plt.close(fig)
    return paths


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def markdown(
    results: list[dict[str, Any]],
    fitted: dict[str, Any],
    figs: dict[str, Path],
    header: list[str],
    failures: list[str],
) -> str:
    """``report.md``: the grid, the runs, every fit with its interval, the figures, the warnings."""
    lines = ["# Scaling sweep", "", *[f"    {h}" for h in header], ""]
    lines += [
        "## Runs",
        "",
        "| run | N | D | U | epochs | C (FLOPs) | wall s | val loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['label']} | {int(r['N'])} | {int(r['D'])} | {int(r['U'])} | {float(r['epochs_seen']):.3g} "
            f"| {float(r['C']):.3g} | {float(r['wall_s']):.1f} | {float(r['val_loss']):.4f} |"
        )
    lines += ["", "## Fits (95 % bootstrap intervals over runs)", ""]
    for name, f in fitted["fits"].items():
        keys = [k for k in ("a", "b", "E", "A", "B", "alpha", "beta", "R_star") if k in f]
        vals = ", ".join(
            f"{k} = {_fmt(f[k])}"
            + (f" [{_fmt(f['ci'][k][0])}, {_fmt(f['ci'][k][1])}]" if k in f["ci"] else "")
            for k in keys
        )
        lines.append(f"- **{name}**: `{f['form']}`: {vals}; R² {f['r2']:.3f} over {f['n']} runs")
    for name, why in fitted["skipped"].items():
        lines.append(f"- {name}: not fitted ({why})")
    m = fitted["compute_model"]
    lines += ["", f"Compute model: training FLOPs per sample = {m['k']:.3g} x N^{m['g']:.3f}.", ""]
    if fitted["warnings"] or failures:
        lines += (
            ["## Warnings", ""]
            + [f"- {w}" for w in fitted["warnings"]]
            + [f"- failed run {f}" for f in failures]
            + [""]
        )
    lines += ["## Figures", ""]
    for key, title in (
        ("loss_vs", "Loss vs compute, data, parameters"),
        ("loss_curves", "Loss curves"),
        ("isoloss", "IsoLoss map and frontier"),
    ):
        if key in figs:
            lines += [f"![{title}](figures/{figs[key].name})", ""]
    if "plans" in fitted:
        lines += ["## Plans", ""]
        for p in fitted["plans"]:
            lines.append(plan_line(p))
    return "\n".join(lines) + "\n"


def plan_line(p: dict[str, Any]) -> str:
    notes = f" ({'; '.join(p['notes'])})" if p["notes"] else ""
    return (
        f"C = {p['C']:.3g} FLOPs: N = {p['N']:.3g} parameters, D = {p['D']:.3g} samples = "
        f"{p['epochs']:.3g} epochs over U = {p['U']:.3g}, predicted loss {p['loss']:.4g} "
        f"[{p['law']}]{notes}"
    )


def write(
    sweep: Path,
    results: list[dict[str, Any]],
    n_boot: int,
    header: list[str],
    failures: list[str],
    budget: dict[str, float] | None = None,
) -> dict[str, Any]:
    """results.csv, fit.json, figures/ and report.md in the sweep folder; returns the fits.

    ``budget`` (``{"C": flops, "U": samples}``) adds the plan for that budget (``plans``).
    """
    write_results(sweep / "results.csv", results)
    fitted = fit_all(results, n_boot=n_boot)
    fitted["failures"] = failures
    if budget:
        fitted["plans"] = [plan(fitted, budget["C"], budget.get("U"))]
    (sweep / "fit.json").write_text(json.dumps(fitted, indent=1, default=float), encoding="utf-8")
    figs = figures(sweep / "figures", results, fitted)
    (sweep / "report.md").write_text(
        markdown(results, fitted, figs, header, failures), encoding="utf-8"
    )
    return fitted
