"""``efm scale``: run a sweep, fit scaling laws, write its report; ``--plan C=...`` for a budget.

::

    efm scale recipe=NAME sweep.sizes=[a,b] sweep.data_fractions=[0.25,1] sweep.epochs=[1,4]
    efm scale recipe=NAME ... --plan C=1e18 [U=2e6]    the best (N, D, epochs) for a budget

The sweep folder (``sweep.out``, default ``sweeps/<recipe>-<profile>-<hash>``) gets ``data/`` (the
held-out and training views), ``runs/`` (one run directory per grid point), ``results.csv``,
``fit.json``, ``figures/`` and ``report.md``. Running the same command again skips finished runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from efm.errors import UsageError

log = logging.getLogger("efm.scale")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _parse_plan(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in ("C", "U") or not value:
            raise UsageError(
                f"--plan {item!r}: give C=FLOPS and optionally U=SAMPLES (e.g. C=1e18)"
            )
        try:
            out[key] = float(value)
        except ValueError:
            raise UsageError(f"--plan {item!r}: {value!r} is not a number") from None
    if "C" not in out:
        raise UsageError("--plan needs C=FLOPS (e.g. --plan C=1e18)")
    return out


def sweep(
    cfg: dict[str, Any], plan: dict[str, float] | None = None, shards: str | Path | None = None
) -> dict[str, Any]:
    """Prepare, run the grid, fit and report; returns the fits (with ``plans``).

    ``shards``: a prepared directory to sweep over instead of the recipe's data (tests, benchmarks).
    """
    from efm.data import ensure_shards
    from efm.scale import grid, launch, report

    s = cfg["sweep"]
    for w in grid.check_grid(s):
        log.warning("%s", w)
    out = grid.sweep_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    shards = Path(shards) if shards is not None else Path(ensure_shards(cfg))
    val, views = grid.data_views(shards, out, s)
    specs = grid.expand(cfg, out, val, views)
    header = [
        f"efm scale: recipe {cfg.get('recipe')!r}, {len(specs)} runs "
        f"({len(s['sizes']) or 1} size(s) x {len(s['data_fractions'])} data fraction(s) x "
        f"{len(s['epochs'])} epoch count(s)), executor {s['executor']}",
        f"data: {shards}; held out by {s['split_by']}: "
        f"{', '.join(json.loads((val / 'manifest.json').read_text())['units'])}",
        f"sweep folder: {out}",
    ]
    for line in header:
        _say(line)
    results, failures = launch.launch(
        specs, s["executor"], out, max_parallel=s["max_parallel"], launcher=s["launcher"]
    )
    _say(
        f"{len(results)} of {len(specs)} run(s) finished"
        + (f", {len(failures)} failed" if failures else "")
    )
    fitted = report.write(out, results, s["n_boot"], header, failures, plan)
    for name, f in fitted["fits"].items():
        exps = {k: round(f[k], 4) for k in ("b", "alpha", "beta", "E", "R_star") if k in f}
        _say(f"{name}: {exps}, R² {f['r2']:.3f}")
    for p in fitted.get("plans", []):
        _say("plan: " + report.plan_line(p))
    _say(f"report: {out / 'report.md'}")
    return fitted


def cli(argv: list[str]) -> int:
    from efm.config import compose

    p = argparse.ArgumentParser(
        prog="efm scale",
        description="Sweep model size x distinct data x epochs through efm run's engine, fit "
        "scaling laws (power laws, L = E + A/N^a + B/D^b, data-constrained) and write a report.",
        epilog="example: efm scale recipe=epi250k 'sweep.sizes=[hiera_test,hiera_tiny]' "
        "'sweep.data_fractions=[0.5,1]' 'sweep.epochs=[1,4]' --plan C=1e18",
    )
    p.add_argument(
        "--plan", nargs="+", metavar="C=FLOPS", help="the best (N, D, epochs) for a budget"
    )
    p.add_argument("overrides", nargs="*", metavar="recipe=NAME key=value")
    args = p.parse_intermixed_args(argv)
    if not args.overrides:
        raise UsageError("efm scale needs recipe=NAME (see `efm scale --help`)")
    plan = _parse_plan(args.plan) if args.plan else None
    cfg = compose(args.overrides, paths=True)
    sweep(cfg, plan)
    return 0
