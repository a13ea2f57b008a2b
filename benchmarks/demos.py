"""Each demo end to end, as a newcomer runs it: phase times, load average, pretrained vs random init.

    python benchmarks/demos.py                                   # every demo, fresh cache, JSON out
    python benchmarks/demos.py --recipes epi250k --out /tmp/d.json
    python benchmarks/demos.py --recipes epi250k --override train.steps=2 --override eval.seeds=2

Each recipe runs ``efm run recipe=NAME`` (its ``demo`` profile on the embedded demo corpus) in a
fresh process with a fresh ``EFM_CACHE`` (the corpus is generated and prepared inside the timing,
as on a first run). The JSON records, per demo: the phase times of its report (prepare, pretrain,
probe) and the whole wall time, the guard ``wall_s <= budget_s`` (5 minutes on an idle 2-core
machine), each probe's kappa for the pretrained and the random-init encoder with the report's
verdict, and the 1-minute load average before and after: a loaded machine's times are not the
demos' (PyTorch's threads degrade badly when oversubscribed), so compare only runs at a low load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEMOS = ("epi250k", "diver1-iEEG", "diver1-EEG")
ROOT = Path(__file__).resolve().parents[1]


def run_demo(recipe: str, overrides: list[str], work: Path, budget_s: float) -> dict:
    """One ``efm run`` in a fresh process; its phase times, verdicts and the load around it."""
    run_dir = work / f"run-{recipe}"
    env = {**os.environ, "EFM_CACHE": str(work / f"cache-{recipe}")}
    cmd = [sys.executable, "-m", "efm.cli", "run", f"recipe={recipe}",
           f"train.run_dir={run_dir}", "train.progress=false", *overrides]  # fmt: skip
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - t0
    row: dict = {
        "recipe": recipe,
        "command": " ".join(cmd[3:]),
        "returncode": proc.returncode,
        "wall_s": round(wall, 1),
        "within_budget": wall <= budget_s,
        "load_avg_1min_before": load_before,
        "load_avg_1min_after": os.getloadavg()[0],
    }
    if proc.returncode != 0:
        row["error"] = proc.stderr.strip().splitlines()[-1:] or ["?"]
        return row
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    row["phases_s"] = {k: round(v, 1) for k, v in report.get("times", {}).items()}
    row["first_lines"] = report.get("header", [])
    row["probes"] = {
        task: {
            name: {
                "kappa": enc["tasks"][task]["mean"]["kappa"],
                "kappa_std": enc["tasks"][task]["std"]["kappa"],
            }
            for name, enc in report["encoders"].items()
            if "mean" in enc["tasks"].get(task, {})
        }
        for task in report.get("probes", {})
    }
    row["verdicts"] = report.get("comparison", [])
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--recipes", nargs="+", default=list(DEMOS))
    p.add_argument("--override", action="append", default=[], help="key=value for every demo")
    p.add_argument("--budget-s", type=float, default=300.0, help="the guard: each demo's wall time")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "demos_cpu.json"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="efm-demos-") as tmp:
        rows = [run_demo(r, args.override, Path(tmp), args.budget_s) for r in args.recipes]
    import torch

    doc = {
        "what": "efm run recipe=NAME (demo profile) per demo, fresh cache, one process each",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "overrides": args.override,
        "budget_s": args.budget_s,
        "demos": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    for r in rows:
        phases = ", ".join(f"{k} {v}" for k, v in (r.get("phases_s") or {}).items())
        print(f"{r['recipe']}: {r['wall_s']} s ({phases}), load {r['load_avg_1min_before']:.1f}")
        for v in r.get("verdicts", []):
            print(f"  {v}")
    print(f"wrote {out}")
    return 0 if all(r["returncode"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
