"""The run report: ``report.json`` (everything) and ``report.md`` (for people), with plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("efm.evaluate.report")


SLEEP_STAGES = {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "REM"}


def class_names(task: str, classes: list[Any]) -> list[str]:
    """Readable names of a task's classes: sleep stages by name, a binary task's 0/1 as words."""
    if task == "sleep_stage":
        return [SLEEP_STAGES.get(int(c), str(c)) for c in classes]
    if [int(c) for c in classes] == [0, 1]:
        return [f"no {task}", task]
    return [str(c) for c in classes]


def confusion_plot(cm: list[list[int]], classes: list[Any], path: Path, title: str) -> Path:
    """A confusion matrix (rows true, columns predicted), counts summed over seeds.

    ``classes`` label the rows and columns (:func:`class_names` gives readable ones).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    a = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(3.2 + 0.4 * len(classes), 3 + 0.4 * len(classes)), dpi=100)
    im = ax.imshow(a, cmap="Blues")
    fig.colorbar(im, ax=ax, label="epochs", fraction=0.046, pad=0.04)
    for (i, j), v in np.ndenumerate(a):
        ax.text(
            j, i, str(v), ha="center", va="center", color="white" if v > a.max() / 2 else "black"
        )
    ax.set_xticks(range(len(classes)), [str(c) for c in classes])
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(mean: float, std: float) -> str:
    return "n/a" if not np.isfinite(mean) else f"{mean:.3f} ± {std:.3f}"


def write_report(run_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` (plus confusion plots) into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# efm report: {report.get('recipe')}", ""]
    head = report.get("header") or []
    lines += [f"- {h}" for h in head] + ([""] if head else [])
    train = report.get("train") or {}
    if train:
        lines += [
            "## Pretraining",
            "",
            f"- steps: {train.get('steps')} (this call ran {train.get('steps_run')}, from step "
            f"{train.get('start_step')}), batch size {train.get('batch_size')}",
            f"- loss: first {train.get('first_loss', float('nan')):.4g}, "
            f"last {train.get('last_loss', float('nan')):.4g}",
            f"- throughput: {train.get('samples_per_s', 0.0):.1f} samples/s (whole loop, checkpoints included)",
            f"- checkpoint: `{train.get('checkpoint')}`",
            "",
        ]
        for name in ("loss.png", "reconstruction.png"):
            if (run_dir / "figures" / name).is_file():
                lines.append(f"![{name}](figures/{name})")
        lines.append("")
    probes = report.get("probes") or {}
    baseline = ((report.get("encoders") or {}).get("random_init") or {}).get("tasks") or {}
    rows = [(task, r) for task, r in probes.items()]
    rows += [(f"{task} (random-init encoder, baseline)", r) for task, r in baseline.items()]
    if probes:
        lines += ["## Linear probes (frozen encoder, patient-level splits)", ""]
        lines += [
            "| task | epochs | patients | seeds | Cohen's kappa | balanced acc. | AUROC | "
            "weighted F1 | AUPRC |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for task, r in rows:
            if "skipped" in r:
                lines.append(f"| {task} | skipped: {r['skipped']} ||||||||")
                continue
            m, s = r["mean"], r["std"]
            lines.append(
                f"| {task} | {r['n_epochs']} | {r['n_patients']} | {len(r['per_seed'])} | "
                + " | ".join(
                    _fmt(m[k], s[k])
                    for k in ("kappa", "balanced_accuracy", "auroc", "f1_weighted", "auprc")
                )
                + " |"
            )
        lines += [
            "",
            "Chance: kappa 0, balanced accuracy 1/classes, AUROC 0.5. Every split was "
            "checked: no patient is in both train and test.",
            "",
        ]
        lines += [f"- {c}" for c in report.get("comparison") or []]  # efm.run.compare_encoders
        lines += [""] if report.get("comparison") else []
        for task, r in probes.items():
            if "confusion" in r:
                name = f"confusion_{task}.png"
                confusion_plot(
                    r["confusion"],
                    class_names(task, r["classes"]),
                    run_dir / "figures" / name,
                    f"{task} (summed over seeds)",
                )
                lines.append(f"![{task}](figures/{name})")
        lines.append("")
    times = report.get("times") or {}
    if times:
        lines += ["## Time", "", ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in times.items()), ""]
    md = run_dir / "report.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    js = run_dir / "report.json"
    js.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return md, js
