"""Downstream benchmark: does pretraining pay off on real EEG? Every row of `efm eval`, per recipe.

For each recipe (default diver1-EEG and epi250k, demo sizes so it runs on a CPU), pretrain for
``--steps`` steps on ``--pretrain-root`` (default: the EEGMAT folder itself, used without labels;
the leakage audit then counts EEGMAT's test recordings as seen in pretraining and the table flags
the pretrained rows), then evaluate on

- ``eegmat-arithmetic``: EEGMAT subjects 00-23, rest vs mental arithmetic, 5 s epochs;
- ``eegbci-imagery``: EEGBCI S017-S024 runs 4/8/12, rest (T0) vs imagery (T1/T2), event-locked 4 s;

with subject-level folds, ``--seeds`` seeds (identical splits for every row) and the rows
pretrained / random-init (linear, finetune, lora), band power + logistic regression and EEGNet.
Records the pretraining steps and wall time of every part. JSON to benchmarks/results/.

    python benchmarks/downstream.py --steps 250 --seeds 3                       # the real run
    python benchmarks/downstream.py --steps 20 --folds 2 --seeds 1 --subjects 4 \\
        --modes linear --recipes diver1-EEG --out /tmp/d.json                   # a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("EFM_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))
TASKS = {"eegmat-arithmetic": "eegmat", "eegbci-imagery": "eegbci"}


def _subset(src: Path, task: str, n: int, tmp: Path) -> Path:
    """A folder with the first ``n`` subjects of ``src`` (symlinks), or ``src`` for n = 0."""
    if n <= 0:
        return src
    from efm.evaluate import taskdata
    from efm.evaluate.task import get

    t = get(task)
    files = taskdata.task_files(t, src)
    keep = sorted({taskdata.subject_of(rel, t.subject) for _, rel in files})[:n]
    out = tmp / f"{task}-{n}"
    for p, rel in files:
        if taskdata.subject_of(rel, t.subject) in keep:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).symlink_to(p)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", nargs="+", default=["diver1-EEG", "epi250k"])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--steps", type=int, default=250, help="pretraining steps per recipe")
    p.add_argument("--pretrain-root", default=str(REAL / "eegmat"), help="'demo': embedded corpus")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--modes", nargs="+", default=["linear", "finetune", "lora"])
    p.add_argument("--baselines", nargs="+", default=["random-init", "bandpower-logreg", "eegnet"])
    p.add_argument("--finetune-epochs", type=int, default=30)
    p.add_argument("--subjects", type=int, default=0, help="first N subjects per task (0: all)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "downstream_cpu.json"))
    args = p.parse_args(argv)

    import torch

    from efm import __version__
    from efm.config import compose
    from efm.data import ensure_shards
    from efm.evaluate import schema
    from efm.evaluate.cli import evaluate_task
    from efm.train.loop import pretrain

    work = Path(tempfile.mkdtemp(prefix="efm-downstream-"))
    doc: dict[str, Any] = {
        "benchmark": "downstream",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "efm": __version__,
        "load_avg_1min_before": round(os.getloadavg()[0], 2),
        "machine": platform.processor() or platform.machine(),
        "args": vars(args),
        "runs": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(doc: dict[str, Any]) -> None:  # after every task: a long run that dies keeps its part
        doc["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
        out.write_text(json.dumps(schema.finite(doc), indent=1, default=str), encoding="utf-8")

    roots = {t: _subset(REAL / TASKS[t], t, args.subjects, work) for t in args.tasks}
    for recipe in args.recipes:
        pre = [] if args.pretrain_root == "demo" else [f"data.root={args.pretrain_root}"]
        cfg = compose(
            [
                f"recipe={recipe}", *pre, "data.profile=demo", f"train.steps={args.steps}",
                f"train.run_dir={work / recipe}", "train.compile=none", "train.progress=false",
                "pipeline.min_epochs=1",  # EEGMAT's 60 s arithmetic files hold two 30 s epochs
                f"optim.warmup_steps={max(1, args.steps // 10)}",
                f"eval.seeds={args.seeds}", f"eval.folds={args.folds}",
                f"eval.modes=[{','.join(args.modes)}]",
                f"eval.baselines=[{','.join(args.baselines)}]",
                f"eval.finetune.epochs={args.finetune_epochs}",
            ]
        )  # fmt: skip
        t0 = time.perf_counter()
        shards = Path(ensure_shards(cfg))
        prep_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = pretrain(cfg, shards, work / recipe)
        run: dict[str, Any] = {
            "recipe": recipe,
            "backbone": cfg["backbone"]["name"],
            "pretrain_root": args.pretrain_root,
            "steps": result.steps,
            "prepare_s": round(prep_s, 1),
            "pretrain_s": round(time.perf_counter() - t0, 1),
            "first_loss": result.losses[0] if result.losses else None,
            "last_loss": result.losses[-1] if result.losses else None,
            "tasks": {},
        }
        doc["runs"].append(run)
        for task, root in roots.items():
            t0 = time.perf_counter()
            res = evaluate_task(cfg, task, result.checkpoint, work / recipe / "eval" / task,
                                str(root), run_cfg=cfg)  # fmt: skip
            run["tasks"][task] = {
                "eval_s": round(time.perf_counter() - t0, 1),
                "n_subjects": res["n_subjects"],
                "n_epochs": res["n_epochs"],
                "split": res["split"],
                "leakage": res["leakage"],
                "summary": res["summary"],
                "rows": [
                    {
                        k: r[k]
                        for k in (
                            "method",
                            "mode",
                            "skipped",
                            "metrics",
                            "per_seed",
                            "seconds",
                            "flagged",
                        )
                        if k in r
                    }  # fmt: skip
                    for r in res["rows"]
                ],
            }
            save(doc)
        print(json.dumps({k: v for k, v in run.items() if k != "tasks"}), file=sys.stderr)
    save(doc)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
