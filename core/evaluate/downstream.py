"""``efm eval``'s engine: every row of a downstream task on identical subject-level splits.

Rows (``method``, ``mode``): the encoder's checkpoint (``pretrained``) and the same encoder at
random initialisation (``random-init``), each as ``linear`` (frozen embeddings + logistic
regression), ``finetune`` and ``lora`` (:mod:`efm.evaluate.adapt`); ``bandpower-logreg``
(``linear``) and ``eegnet`` (``supervised``, trained from scratch) from
:mod:`efm.evaluate.baselines`. For every seed the folds are made once
(:func:`efm.evaluate.splits.folds`), audited for leakage, and used by every row.

Scores: per seed, the metrics of the test predictions pooled over that seed's folds; per row,
their mean, standard deviation and 95 % confidence half-width (Student's t over seeds); per
subject, the balanced accuracy of its epochs averaged over seeds. The schema of the result is
:mod:`efm.evaluate.schema`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from efm.errors import EfmError
from efm.evaluate import splits
from efm.evaluate.metrics import NAMES, classification_metrics, confusion
from efm.evaluate.task import Task
from efm.evaluate.taskdata import TaskData

log = logging.getLogger("efm.evaluate.downstream")

ENCODER_METHODS = ("pretrained", "random-init")
MODES = ("linear", "finetune", "lora")
ROWS = (
    ("pretrained", "linear"),
    ("pretrained", "finetune"),
    ("pretrained", "lora"),
    ("random-init", "linear"),
    ("random-init", "finetune"),
    ("random-init", "lora"),
    ("bandpower-logreg", "linear"),
    ("eegnet", "supervised"),
)


@dataclass
class Plan:
    """What to run: modes, baselines, seeds, split protocol (``eval`` options, resolved)."""

    modes: list[str] = field(default_factory=lambda: ["linear", "finetune"])
    seeds: int = 3
    split: str = "kfold"
    folds: int = 5
    test_subjects: list[str] = field(default_factory=list)
    baselines: list[str] = field(
        default_factory=lambda: ["random-init", "bandpower-logreg", "eegnet"]
    )
    C: float = 1.0
    batch_size: int = 64


def rows_of(plan: Plan, has_checkpoint: bool) -> list[tuple[str, str]]:
    """The (method, mode) rows a plan asks for, in table order."""
    out = []
    for method, mode in ROWS:
        if method in ENCODER_METHODS:
            if mode not in plan.modes:
                continue
            if method == "pretrained" and not has_checkpoint:
                continue
            if method == "random-init" and "random-init" not in plan.baselines:
                continue
            if method == "random-init" and mode == "lora":
                continue  # adapters on a random encoder answer no question
        elif method not in plan.baselines:
            continue
        out.append((method, mode))
    return out


def summarize(values: list[float]) -> dict[str, float]:
    """``{mean, std, ci95}`` over seeds (ci95: Student's t half-width; NaN for one seed)."""
    from scipy import stats

    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "ci95": float("nan")}
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    ci = (
        float(stats.t.ppf(0.975, v.size - 1) * std / np.sqrt(v.size))
        if v.size > 1
        else float("nan")
    )
    return {"mean": float(v.mean()), "std": std, "ci95": ci}


def _per_subject(y: np.ndarray, pred: np.ndarray, subjects: np.ndarray, k: int) -> dict[str, float]:
    from efm.evaluate.metrics import balanced_accuracy

    out = {}
    for s in np.unique(subjects):
        m = subjects == s
        out[str(s)] = balanced_accuracy(confusion(y[m], pred[m], k))
    return out


def score_row(
    y: np.ndarray, subjects: np.ndarray, probas: list[tuple[int, np.ndarray, np.ndarray]], k: int
) -> dict[str, Any]:
    """Metrics of one row from ``(seed, test indices, probabilities)`` per seed."""
    per_seed, per_subject, cm = [], [], np.zeros((k, k), dtype=np.int64)
    for seed, idx, proba in probas:
        m = classification_metrics(y[idx], proba)
        per_seed.append(
            {"seed": seed, "n_test": int(idx.size), **{n: m[v] for n, v in NAMES.items()}}
        )
        pred = proba.argmax(1)
        cm += confusion(y[idx], pred, k)
        per_subject.append(_per_subject(y[idx], pred, subjects[idx], k))
    subs = sorted({s for d in per_subject for s in d})
    return {
        "metrics": {n: summarize([s[n] for s in per_seed]) for n in NAMES},
        "per_seed": per_seed,
        "per_subject": {s: float(np.nanmean([d[s] for d in per_subject if s in d])) for s in subs},
        "confusion": cm.tolist(),
    }


def pretraining_sha256(run_cfg: dict[str, Any] | None) -> set[str] | None:
    """SHA-256 of the files of the checkpoint's pretraining corpus (its prepared shards' log)."""
    if run_cfg is None:
        return None
    try:
        from efm.data import shards
        from efm.data.sources import out_dir

        out = out_dir(run_cfg)
        if not out.is_dir():
            return None
        return {str(e["sha256"]) for e in shards.entries(out) if e.get("sha256")}
    except Exception as exc:  # the audit's extra check must not stop an evaluation
        log.warning("pretraining corpus of the checkpoint unknown: %s", exc)
        return None


def run_task(
    cfg: dict[str, Any],
    task: Task,
    data: TaskData,
    plan: Plan,
    checkpoint: Path | None,
    out: Path,
    *,
    finetune: Any = None,
    is_test: np.ndarray | None = None,
    pretraining: set[str] | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every row of ``task`` on ``data``; writes embeddings under ``out`` and returns the result.

    ``is_test`` marks the epochs of a separate test folder (``eval.test_root``).
    """
    from efm.evaluate import adapt, baselines

    fc = finetune or adapt.FinetuneConfig()
    k = len(data.classes)
    say(
        f"task {task.name}: {len(data)} epochs, {data.counts()}; {splits.subjects_line(data.subject)}"
    )
    for s in data.skipped[:5]:
        say(f"  skipped {s['file']}: {s['reason']}")
    protocol = "fixed" if is_test is not None else plan.split
    by_seed = {
        seed: splits.folds(
            data.subject,
            data.y,
            data.classes,
            protocol,
            plan.folds,
            seed,
            plan.test_subjects,
            is_test,
        )  # fmt: skip
        for seed in range(plan.seeds)
    }
    audit = splits.audit(
        [f for fs in by_seed.values() for f in fs],
        data.subject, data.recording, data.sha256, data.session, pretraining,
    )  # fmt: skip
    say(
        f"splits: {protocol}, {len(by_seed[0])} fold(s) x {plan.seeds} seed(s); leakage audit: "
        f"nothing shared; {audit['test_in_pretraining']} of {audit['test_recordings']} test "
        f"recordings were in the pretraining corpus"
        + ("" if audit["pretraining_corpus_known"] else " (corpus unknown)")
    )
    meta = data.meta()
    notes = [task.note] if task.note else []
    x_enc, fit_note = adapt.fit_length(cfg, data.x, data.sfreq)
    if fit_note:
        notes.append(fit_note)
    emb_dir = out / "embeddings"
    rows: list[dict[str, Any]] = []
    cache: dict[str, np.ndarray] = {}
    for method, mode in rows_of(plan, checkpoint is not None):
        t0 = time.perf_counter()
        probas: list[tuple[int, np.ndarray, np.ndarray]] = []
        curves: list[dict[str, Any]] = []
        try:
            ckpt = checkpoint if method == "pretrained" else None
            if mode == "linear":
                if method == "bandpower-logreg":
                    feats = baselines.bandpower_features(data.x, data.sfreq)
                else:
                    if method not in cache:
                        enc = adapt.build_encoder(cfg, x_enc, data.sfreq, ckpt, _seed(cfg))
                        cache[method] = adapt.embed(enc, x_enc, meta, plan.batch_size)
                        emb_dir.mkdir(parents=True, exist_ok=True)
                        np.savez_compressed(
                            emb_dir / f"{method}.npz", x=cache[method], y=data.y,
                            subject=data.subject, recording=data.recording, start_s=data.start_s,
                            classes=np.asarray(data.classes),
                        )  # fmt: skip
                    feats = cache[method]
                for seed, fs in by_seed.items():
                    parts = [
                        baselines.fit_predict(feats, data.y, f.train, f.test, seed, plan.C)
                        for f in fs
                    ]
                    probas.append(
                        (seed, np.concatenate([f.test for f in fs]), np.concatenate(parts))
                    )
            else:
                # adapters train at their own rate (a frozen encoder tolerates a larger one)
                fc_mode = replace(fc, lr=fc.lora_lr) if mode == "lora" else fc
                for seed, fs in by_seed.items():
                    parts = []
                    for f in fs:
                        model, x_in = _model(cfg, method, mode, data, x_enc, ckpt, seed, fc, k)
                        c = adapt.train_classifier(
                            model, x_in, data.y, f.train, f.val, meta, fc_mode, seed
                        )
                        curves.append({"seed": seed, "fold": f.name, **asdict(c)})
                        parts.append(adapt.predict(model, x_in[f.test], meta, plan.batch_size))
                    probas.append(
                        (seed, np.concatenate([f.test for f in fs]), np.concatenate(parts))
                    )
        except EfmError as exc:
            rows.append({"method": method, "mode": mode, "skipped": str(exc)})
            say(f"  {method} / {mode}: skipped ({exc})")
            continue
        row = {"method": method, "mode": mode, **score_row(data.y, data.subject, probas, k)}
        row["seconds"] = round(time.perf_counter() - t0, 2)
        row["flagged"] = bool(method == "pretrained" and audit["test_in_pretraining"])
        if curves:
            row["curves"] = curves
        rows.append(row)
        m = row["metrics"]["balanced_accuracy"]
        say(
            f"  {method} / {mode}: balanced accuracy {m['mean']:.3f} ± {m['std']:.3f} ({row['seconds']:.0f} s)"
        )
    return {
        "task": task.name,
        "description": task.description,
        "classes": list(data.classes),
        "class_counts": data.counts(),
        "n_epochs": len(data),
        "n_subjects": int(np.unique(data.subject).size),
        "subjects": sorted(map(str, np.unique(data.subject))),
        "epoch_s": float(task.epoch_s),
        "sfreq": float(data.sfreq),
        "n_chans": int(data.x.shape[1]),
        "split": {
            "protocol": protocol,
            "folds": len(by_seed[0]),
            "seeds": plan.seeds,
            "validation": "about a fifth of each fold's training subjects",
            "subject_rule": task.subject or "recording",
            "test_subjects": sorted(map(str, np.unique(data.subject[is_test])))
            if is_test is not None
            else list(plan.test_subjects),
        },
        "leakage": audit,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "recipe": cfg.get("recipe"),
        "rows": rows,
        "notes": notes,
        "skipped_files": data.skipped,
        **verdict(rows),
    }


def _seed(cfg: dict[str, Any]) -> int:
    return int((cfg.get("train") or {}).get("seed", 0))


def _model(
    cfg: dict[str, Any],
    method: str,
    mode: str,
    data: TaskData,
    x_enc: np.ndarray,
    ckpt: Path | None,
    seed: int,
    fc: Any,
    k: int,
) -> tuple[Any, np.ndarray]:
    import torch

    from efm.evaluate import adapt, baselines

    torch.manual_seed(seed)
    if method == "eegnet":
        net = baselines.eegnet(int(data.x.shape[1]), k, int(data.x.shape[2]), data.sfreq)
        return adapt.SignalClassifier(net), data.x
    init_seed = _seed(cfg) if method == "pretrained" else _seed(cfg) + 1000 * seed
    enc = adapt.build_encoder(cfg, x_enc, data.sfreq, ckpt, init_seed)
    model = adapt.Classifier(enc, k)
    if mode == "lora":
        adapt.add_lora(model, fc)
    return model, x_enc


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The best row by mean balanced accuracy, and a sentence that says who wins and by how much."""
    scored = [r for r in rows if "metrics" in r]
    if not scored:
        return {"best": None, "summary": "no row could be scored"}
    key = [r["metrics"]["balanced_accuracy"]["mean"] for r in scored]
    best = scored[int(np.nanargmax(key))]
    b = best["metrics"]["balanced_accuracy"]
    others = [r for r in scored if r is not best]
    text = f"{best['method']} ({best['mode']}) wins with balanced accuracy {b['mean']:.3f} ± {b['std']:.3f}"
    if others:
        second = max(others, key=lambda r: r["metrics"]["balanced_accuracy"]["mean"])
        s = second["metrics"]["balanced_accuracy"]
        gap = b["mean"] - s["mean"]
        spread = max(b["std"], s["std"])
        text += f", {gap:.3f} ahead of {second['method']} ({second['mode']}) at {s['mean']:.3f}" + (
            " - within the seed spread, so not a clear win" if gap <= spread else ""
        )
    pre = [r for r in scored if r["method"] == "pretrained"]
    base = [r for r in scored if r["method"] == "bandpower-logreg"]
    if pre and base:
        p = max(r["metrics"]["balanced_accuracy"]["mean"] for r in pre)
        q = base[0]["metrics"]["balanced_accuracy"]["mean"]
        text += (
            f". The best pretrained row {'matches or beats' if p >= q else 'falls short of'} "
            f"band power + logistic regression ({p:.3f} vs {q:.3f})"
        )
    return {"best": {"method": best["method"], "mode": best["mode"]}, "summary": text + "."}
