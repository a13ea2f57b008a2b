"""Why does the pretrained encoder not beat band power on EEGMAT? One factor at a time.

The downstream benchmark (``benchmarks/downstream.py``) found diver1-EEG's demo model, pretrained
2000 steps, behind band power + logistic regression on ``eegmat-arithmetic`` and its linear probe
within the seed spread of its random init. This script varies one factor at a time on the same task
(24 subjects, subject-level folds, identical splits for every row of a variant):

- **steps**: the checkpoints of one ``--steps`` run (default 6000) at 500, 2000 and the last step,
  each probed linearly (the learning rate follows that run's schedule, so step 2000 is mid-run);
- **epoch length**: the task's 5 s epochs against 10 s (the same checkpoint; band power too);
- **model size**: ``moirai_test`` (d_model 64, 2 layers) against d_model 128, 4 layers, pretrained
  ``--size-steps`` steps;
- **fine-tuning learning rate**: the last checkpoint fine-tuned with ``eval.finetune.lr`` in
  ``--finetune-lrs``, beside the same backbone fine-tuned from random init with that rate;
- **size, fine-tuned**: the d_model 128 model fine-tuned with the lowest of ``--finetune-lrs``,
  beside its random init;
- **out of corpus** (``eegbci``): both pretrained models (EEGMAT only) probed linearly on
  ``eegbci-imagery`` (8 subjects none of which they saw, event-locked 4 s epochs), beside their
  random inits and band power.

``--parts`` runs some of these (``steps epoch size finetune size-finetune eegbci``); ``--work DIR`` reuses
the checkpoints of an earlier run in DIR (a pretraining whose last checkpoint is there is not
repeated), and the rows of variants not run now are kept from the existing ``--out`` file.

Random-init and band-power rows are run once per epoch length (they do not depend on pretraining).
JSON (after every part, so a run stopped for time keeps what it measured) to benchmarks/results/.

    python benchmarks/downstream_ablations.py                       # the full run (~2 CPU hours)
    python benchmarks/downstream_ablations.py --work /tmp/efm-ablations-x --parts size-finetune
    python benchmarks/downstream_ablations.py --steps 40 --size-steps 20 --folds 2 --seeds 1 \\
        --finetune-lrs 1e-3 --finetune-epochs 1 --out /tmp/a.json   # a smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
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
TASK = "eegmat-arithmetic"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=6000, help="the long pretraining run")
    p.add_argument("--probe-steps", type=int, nargs="+", default=[500, 2000])
    p.add_argument("--size-steps", type=int, default=2000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--finetune-lrs", type=float, nargs="+", default=[3e-4, 1e-4])
    p.add_argument("--finetune-epochs", type=int, default=10)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/downstream_ablations_cpu.json"))
    parts = ("steps", "epoch", "size", "finetune", "size-finetune", "eegbci")
    p.add_argument("--parts", nargs="+", choices=parts, default=list(parts))
    p.add_argument("--work", help="a folder of an earlier run's checkpoints, to reuse")
    args = p.parse_args(argv)

    import torch
    from safetensors.torch import load_file

    from efm import __version__
    from efm.config import compose
    from efm.data import ensure_shards
    from efm.evaluate import schema
    from efm.evaluate import task as task_mod
    from efm.evaluate.cli import evaluate_task
    from efm.train.checkpoint import step_dir
    from efm.train.loop import pretrain

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="efm-ablations-"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    doc: dict[str, Any] = {
        "benchmark": "downstream_ablations",
        "task": TASK,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "efm": __version__,
        "machine": platform.processor() or platform.machine(),
        "load_avg_1min_before": round(os.getloadavg()[0], 2),
        "args": vars(args),
        # every invocation whose rows this file holds, oldest first
        "invocations": [
            *earlier.get("invocations", [earlier["args"]] if earlier else []),
            vars(args),
        ],
        "pretraining": dict(earlier.get("pretraining", {})),
        "rows": [],
    }
    # replaced variant by variant as they are run again (rows before "task" existed are EEGMAT's)
    kept = [{"task": TASK, **r} for r in earlier.get("rows", [])]

    def save() -> None:
        doc["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
        new = {r["variant"] for r in doc["rows"]}
        rows = [r for r in kept if r["variant"] not in new] + doc["rows"]
        text = json.dumps(schema.finite({**doc, "rows": rows}), indent=1, default=str)
        out.write_text(text, encoding="utf-8")

    def config(run: str, steps: int, *extra: str) -> dict[str, Any]:
        return compose(
            [
                "recipe=diver1-EEG", f"data.root={REAL / 'eegmat'}", "data.profile=demo",
                f"train.steps={steps}", f"train.run_dir={work / run}", "train.compile=none",
                "train.progress=false", "pipeline.min_epochs=1",
                f"optim.warmup_steps={max(1, steps // 10)}",
                f"eval.seeds={args.seeds}", f"eval.folds={args.folds}",
                f"eval.finetune.epochs={args.finetune_epochs}", *extra,
            ]
        )  # fmt: skip

    def train(run: str, steps: int, *extra: str) -> Path:
        """The run's folder, after pretraining ``steps`` steps unless an earlier run did."""
        cfg = config(run, steps, *extra, f"train.ckpt_every={min(args.probe_steps + [steps])}",
                     "train.keep_ckpts=100")  # fmt: skip
        if (step_dir(work / run, steps) / "model.safetensors").exists():
            return work / run  # reused (--work); its pretraining entry is the earlier run's
        shards = Path(ensure_shards(cfg))
        t0 = time.perf_counter()
        result = pretrain(cfg, shards, work / run)
        doc["pretraining"][run] = {
            "overrides": list(extra),
            "steps": result.steps,
            "seconds": round(time.perf_counter() - t0, 1),
            "first_loss": result.losses[0] if result.losses else None,
            "last_loss": result.losses[-1] if result.losses else None,
            "parameters_with_heads": sum(
                t.numel() for t in load_file(result.checkpoint / "model.safetensors").values()
            ),
        }
        save()
        return work / run

    real_get = task_mod.get

    def evaluate(variant: str, factor: str, value: Any, ckpt: Path | None, modes: list[str],
                 baselines: list[str], epoch_s: float | None = 5.0, *extra: str,
                 task: str = TASK, root: Path = REAL / "eegmat") -> None:  # fmt: skip
        if epoch_s is not None:  # None: the task's own (EEGBCI's event-locked 4 s)
            task_mod.get = lambda name: dataclasses.replace(real_get(name), epoch_s=epoch_s)
        try:
            cfg = config("eval", 1, f"eval.modes=[{','.join(modes)}]",
                         f"eval.baselines=[{','.join(baselines)}]", *extra)  # fmt: skip
            res = evaluate_task(cfg, task, ckpt, work / "eval" / variant, str(root),
                                run_cfg=cfg, say=lambda *a, **k: None)  # fmt: skip
        finally:
            task_mod.get = real_get
        for r in res["rows"]:
            if r.get("skipped"):
                continue
            m = r["metrics"]
            doc["rows"].append({
                "variant": variant, "factor": factor, "value": value, "task": task,
                "method": r["method"], "mode": r["mode"],
                "epoch_s": epoch_s if epoch_s is not None else real_get(task).epoch_s,
                "n_subjects": res["n_subjects"],
                "n_epochs": res["n_epochs"],
                "balanced_accuracy": [m["balanced_accuracy"]["mean"], m["balanced_accuracy"]["std"]],
                "auroc": [m["auroc"]["mean"], m["auroc"]["std"]],
                "per_seed_balanced_accuracy": [s["balanced_accuracy"] for s in r["per_seed"]],
                "seconds": r.get("seconds"),
            })  # fmt: skip
            print(f"{variant:>22} {r['method']:>16} {r['mode']:>8}  BAcc "
                  f"{m['balanced_accuracy']['mean']:.3f} ± {m['balanced_accuracy']['std']:.3f}",
                  file=sys.stderr, flush=True)  # fmt: skip
        save()

    # steps: one long run, probed at several checkpoints; the baselines once per epoch length
    long = train("moirai_test", args.steps)
    last = step_dir(long, args.steps)
    if "steps" in args.parts:
        evaluate("baselines-5s", "baseline", None, None, ["linear"],
                 ["random-init", "bandpower-logreg"])  # fmt: skip
        for s in [*args.probe_steps, args.steps]:
            evaluate(f"steps-{s}", "steps", s, step_dir(long, s), ["linear"], [])
    if "epoch" in args.parts:  # 10 s epochs of the same recordings
        evaluate("epoch-10s", "epoch_s", 10.0, last, ["linear"],
                 ["random-init", "bandpower-logreg"], 10.0)  # fmt: skip
    # model size: d_model 128, 4 layers (pretrained once, whichever part asks first)
    wide = ("backbone.d_model=128", "backbone.n_layers=4")
    if {"size", "size-finetune", "eegbci"} & set(args.parts):
        wide_last = step_dir(train("moirai-d128-l4", args.size_steps, *wide), args.size_steps)
    if "size" in args.parts:
        evaluate("size-d128-l4", "size", "d128-l4", wide_last, ["linear"], ["random-init"], 5.0,
                 *wide)  # fmt: skip
    if "size-finetune" in args.parts:
        lr = min(args.finetune_lrs)
        evaluate(f"size-d128-l4-finetune-lr-{lr:g}", "size_finetune", "d128-l4", wide_last,
                 ["finetune"], ["random-init"], 5.0, *wide, f"eval.finetune.lr={lr}")  # fmt: skip
    if "eegbci" in args.parts:  # subjects and a task neither model saw in pretraining
        bci, bci_root = "eegbci-imagery", REAL / "eegbci"
        evaluate("eegbci-moirai_test", "transfer", "moirai_test", last, ["linear"],
                 ["random-init", "bandpower-logreg"], None, task=bci, root=bci_root)  # fmt: skip
        evaluate("eegbci-d128-l4", "transfer", "d128-l4", wide_last, ["linear"], ["random-init"],
                 None, *wide, task=bci, root=bci_root)  # fmt: skip
    # fine-tuning learning rate, on the long run's last checkpoint and from random init
    if "finetune" in args.parts:
        for lr in args.finetune_lrs:
            evaluate(f"finetune-lr-{lr:g}", "finetune_lr", lr, last, ["finetune"],
                     ["random-init"], 5.0, f"eval.finetune.lr={lr}")  # fmt: skip
    save()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
