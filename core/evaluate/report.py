"""The run report: ``report.json`` (everything) and ``report.md`` (for people), with plots."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from efm.evaluate import schema

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
    js.write_text(json.dumps(schema.finite(report), indent=2, default=str), encoding="utf-8")
    return md, js


# -- efm eval: RUN/eval/<task>/results.json and report.md ------------------------------------------
EVAL_COLUMNS = (
    ("balanced_accuracy", "balanced acc."),
    ("kappa", "Cohen's kappa"),
    ("auroc", "AUROC"),
    ("auprc", "AUPRC"),
    ("f1", "weighted F1"),
)


def curves_plot(curves: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Fine-tuning curves: train and validation loss, validation balanced accuracy, per fit."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    for c in curves:
        ep = np.arange(1, len(c["train_loss"]) + 1)
        (line,) = a.plot(ep, c["train_loss"], lw=1)
        a.plot(ep, c["val_loss"], lw=1, ls="--", color=line.get_color())
        b.plot(ep, c["val_balanced_accuracy"], lw=1, color=line.get_color())
    a.set_xlabel("epoch")
    a.set_ylabel("loss (solid: train, dashed: validation)")
    b.set_xlabel("epoch")
    b.set_ylabel("validation balanced accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_eval(out: Path, result: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``results.json`` (schema :mod:`efm.evaluate.schema`) and ``report.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    best = result.get("best") or {}
    sp = result["split"]
    lines = [
        f"# efm eval: {result['task']}",
        "",
        f"{result.get('description', '')}",
        "",
        f"- recipe `{result.get('recipe')}`, checkpoint `{result.get('checkpoint')}`"
        + (
            f" ({result['pretraining'].get('steps')} pretraining steps)"
            if result.get("pretraining")
            else ""
        ),
        f"- {result['n_epochs']} epochs of {result.get('epoch_s')} s, classes "
        + ", ".join(f"{c} ({n})" for c, n in result["class_counts"].items()),
        f"- {result['n_subjects']} subjects (rule: `{sp.get('subject_rule')}`); split {sp['protocol']}, "
        f"{sp['folds']} fold(s) x {sp['seeds']} seed(s); validation: {sp['validation']}",
    ]
    lines += [f"- note: {n}" for n in result.get("notes", [])]
    lines += ["", "## Results", "", f"**{result['summary']}**", ""]
    lines += [
        "| method | mode | " + " | ".join(t for _, t in EVAL_COLUMNS) + " | seconds |",
        "|---|---|" + "---|" * (len(EVAL_COLUMNS) + 1),
    ]
    for r in result["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['method']} | {r['mode']} | skipped: {r['skipped']} |")
            continue
        mark = (
            " (best)" if (r["method"], r["mode"]) == (best.get("method"), best.get("mode")) else ""
        )
        flag = " [flagged: test recordings in pretraining]" if r.get("flagged") else ""
        cells = []
        for k, _ in EVAL_COLUMNS:
            m = r["metrics"][k]
            cell = _fmt(m["mean"], m["std"])
            cells.append(f"**{cell}**" if mark else cell)
        lines.append(
            f"| {r['method']}{mark}{flag} | {r['mode']} | "
            + " | ".join(cells)
            + f" | {r.get('seconds', 0):.0f} |"
        )
    lines += [
        "",
        "Mean ± standard deviation over seeds (each seed: the test predictions of all its folds "
        "pooled); 95 % confidence half-widths are in results.json. Chance: balanced accuracy "
        f"{1 / len(result['classes']):.2f}, kappa 0, AUROC 0.5.",
        "",
        "## Leakage audit",
        "",
    ]
    lk = result["leakage"]
    lines.append(
        f"{lk['folds_checked']} folds checked: no subject, recording (SHA-256) or session is shared "
        f"between train, validation and test. {lk['test_in_pretraining']} of "
        f"{lk['test_recordings']} test recordings were in the checkpoint's pretraining corpus"
        + ("" if lk.get("pretraining_corpus_known") else " (corpus unknown: not checked)")
        + "."
    )
    lines += ["", "## Confusion matrices (summed over seeds)", ""]
    for r in result["rows"]:
        if "confusion" in r:
            name = f"confusion_{r['method']}_{r['mode']}.png"
            confusion_plot(
                r["confusion"],
                result["classes"],
                out / "figures" / name,
                f"{r['method']} {r['mode']}",
            )
            lines.append(f"![{r['method']} {r['mode']}](figures/{name})")
    curved = [r for r in result["rows"] if r.get("curves")]
    if curved:
        lines += ["", "## Fine-tuning curves", ""]
        for r in curved:
            name = f"curves_{r['method']}_{r['mode']}.png"
            curves_plot(r["curves"], out / "figures" / name, f"{r['method']} {r['mode']}")
            first = r["curves"][0]
            lines.append(
                f"- {r['method']} {r['mode']}: validation loss {first['val_loss_start']:.3f} before "
                f"training, {min(first['val_loss']):.3f} at best (epoch {first['best_epoch'] + 1}, "
                f"seed {first['seed']}, fold {first['fold']})"
            )
            lines.append(f"![curves {r['method']} {r['mode']}](figures/{name})")
    scored = [r for r in result["rows"] if "per_subject" in r]
    if scored:
        lines += ["", "## Per-subject balanced accuracy (mean over seeds)", ""]
        lines.append(
            "| subject | " + " | ".join(f"{r['method']} {r['mode']}" for r in scored) + " |"
        )
        lines.append("|---|" + "---|" * len(scored))
        for s in result["subjects"]:
            vals = [r["per_subject"].get(s, float("nan")) for r in scored]
            lines.append(
                f"| {s} | "
                + " | ".join("n/a" if not np.isfinite(v) else f"{v:.3f}" for v in vals)
                + " |"
            )
    if result.get("skipped_files"):
        lines += ["", "## Skipped files", ""]
        lines += [f"- {s['file']}: {s['reason']}" for s in result["skipped_files"]]
    md = out / "report.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    js = out / "results.json"
    text = json.dumps(schema.finite(result), indent=1, default=str, allow_nan=False)
    js.write_text(text, encoding="utf-8")
    return md, js
