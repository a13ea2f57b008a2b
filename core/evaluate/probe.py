"""Frozen-encoder embeddings and logistic-regression linear probes with patient-level splits.

Embeddings: for every epoch of a shard directory, in order, ``objective.embed(batch)`` when the
objective defines it, else ``backbone.embed(representation(signal, meta=..., channel_mask=...))``
(:func:`efm.interfaces.represent`, the one representation call). They are computed once, without
gradients, and cached in the run directory.

Probes: per task and seed, a patient-level split (:mod:`efm.evaluate.splits`, checked for leakage),
then ``StandardScaler`` + ``LogisticRegression`` (L2, ``C`` from the config, balanced class weights)
fitted on the training patients and scored on the held-out ones (:mod:`efm.evaluate.metrics`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from efm.errors import EfmError
from efm.evaluate.metrics import classification_metrics, confusion
from efm.evaluate.splits import LeakageError, patient_splits
from efm.interfaces import represent

log = logging.getLogger("efm.evaluate.probe")

METRICS = ("kappa", "balanced_accuracy", "auroc", "f1_weighted", "auprc", "accuracy")


def embed_shards(
    objective: Any,
    shards: str | Path,
    batch_size: int = 64,
    max_epochs: int = 0,
    device: Any = None,
    autocast_dtype: Any = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Embeddings ``[N, D]`` (float32) of every epoch in ``shards`` and their metadata, in order."""
    import contextlib

    import torch

    from efm.train.loader import iter_epochs

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    objective = objective.to(device).eval()
    amp = (
        torch.autocast(device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    chunks, metas = [], []
    with torch.no_grad(), amp:
        for batch in iter_epochs(shards, batch_size, max_epochs):
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            if hasattr(objective, "embed"):
                z = objective.embed(batch)
            else:
                z = objective.backbone.embed(represent(objective.representation, batch))  # [B, D]
            chunks.append(z.float().cpu().numpy())
            metas.extend(batch["meta"])
    if not chunks:
        raise EfmError(f"{shards} holds no epochs to embed")
    return np.concatenate(chunks), metas


def task_labels(metas: list[dict[str, Any]], task: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels of ``task`` (``meta["labels"][task]``) and the indices of the epochs that have one."""
    values = [(m.get("labels") or {}).get(task) for m in metas]
    keep = np.array(
        [i for i, v in enumerate(values) if isinstance(v, (int, np.integer)) and v >= 0], dtype=int
    )
    return np.array([values[i] for i in keep], dtype=np.int64), keep


def linear_probe(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    seeds: int = 3,
    test_fraction: float = 0.3,
    C: float = 1.0,
) -> dict[str, Any]:
    """Fit and score a logistic-regression probe on ``seeds`` patient-level splits.

    Returns ``{"per_seed": [...], "mean": {...}, "std": {...}, "confusion": summed counts,
    "classes": [...], "chance": {...}}``; every split is checked for leakage.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes, y_idx = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise EfmError(f"a probe needs at least 2 classes; the labels only hold {classes.tolist()}")
    per_seed, cm_total = [], np.zeros((classes.size, classes.size), dtype=np.int64)
    for seed, (train, test) in enumerate(patient_splits(groups, y_idx, test_fraction, seeds)):
        clf = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=C, max_iter=2000, class_weight="balanced", random_state=seed),
        )
        clf.fit(x[train], y_idx[train])
        proba = clf.predict_proba(x[test])  # [N_test, K]
        scores = classification_metrics(y_idx[test], proba)
        cm_total += confusion(y_idx[test], proba.argmax(axis=1), classes.size)
        per_seed.append(
            {
                "seed": seed,
                "n_train": int(train.size),
                "n_test": int(test.size),
                "test_patients": sorted(map(str, np.unique(groups[test]))),
                **scores,
            }
        )
    mean = {k: float(np.nanmean([s[k] for s in per_seed])) for k in METRICS}
    std = {k: float(np.nanstd([s[k] for s in per_seed])) for k in METRICS}
    prior = np.bincount(y_idx) / y_idx.size
    chance = {
        "kappa": 0.0,
        "balanced_accuracy": 1.0 / classes.size,
        "auroc": 0.5,
        "auprc": float(prior[1]) if classes.size == 2 else float("nan"),
    }
    return {
        "per_seed": per_seed,
        "mean": mean,
        "std": std,
        "confusion": cm_total.tolist(),
        "classes": classes.tolist(),
        "chance": chance,
        "n_epochs": int(y.size),
        "n_patients": int(np.unique(groups).size),
    }


def probe_tasks(
    x: np.ndarray, metas: list[dict[str, Any]], tasks: list[str], cfg: dict[str, Any]
) -> dict[str, Any]:
    """Run :func:`linear_probe` for each task that the data labels; skip (and say why) the rest."""
    if cfg.get("probe", "logistic") != "logistic":  # the eval.probe key: the probe's classifier
        raise EfmError(f"eval.probe={cfg.get('probe')!r}; options: logistic")
    groups_all = np.array([str(m.get("patient_id", "")) for m in metas])
    results: dict[str, Any] = {}
    for task in tasks:
        y, keep = task_labels(metas, task)
        if y.size == 0:
            results[task] = {"skipped": f"no epoch carries a {task!r} label"}
            log.warning("probe %s skipped: no epoch carries this label", task)
            continue
        try:
            results[task] = linear_probe(
                x[keep],
                y,
                groups_all[keep],
                seeds=int(cfg.get("seeds", 3)),
                test_fraction=float(cfg.get("test_fraction", 0.3)),
                C=float(cfg.get("C", 1.0)),
            )
        except LeakageError:
            raise
        except EfmError as exc:
            results[task] = {"skipped": str(exc)}
            log.warning("probe %s skipped: %s", task, exc)
    return results
