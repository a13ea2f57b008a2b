"""Classification metrics in NumPy: Cohen's kappa, balanced accuracy, weighted F1, AUROC, AUPRC.

Definitions follow scikit-learn's (``cohen_kappa_score``, ``balanced_accuracy_score``,
``f1_score(average="weighted")``, ``roc_auc_score`` (one-vs-rest macro for several classes) and
``average_precision_score`` (macro over one-vs-rest)), and the tests check them against it.
Everything is vectorised over samples; loops run over classes only where a per-class curve is needed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``[n_classes, n_classes]``: rows are true classes, columns predictions."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def cohen_kappa(cm: np.ndarray) -> float:
    """Cohen's kappa from a confusion matrix (NaN when chance agreement is 1)."""
    n = cm.sum()
    po = np.trace(cm) / n
    pe = float(cm.sum(axis=0) @ cm.sum(axis=1)) / n**2
    return float("nan") if pe == 1.0 else float((po - pe) / (1.0 - pe))


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes that occur in the truth."""
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def weighted_f1(cm: np.ndarray) -> float:
    """Per-class F1 averaged with the true-class supports as weights."""
    tp = np.diag(cm).astype(float)
    denom = 2 * tp + (cm.sum(axis=0) - tp) + (cm.sum(axis=1) - tp)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    support = cm.sum(axis=1)
    return float((f1 * support).sum() / support.sum())


def binary_auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half)."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)  # average ranks for ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision: sum over thresholds of (recall step) x precision, ties grouped."""
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-np.asarray(score, dtype=float), kind="mergesort")
    s, t = np.asarray(score, dtype=float)[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(t)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _one_vs_rest(
    fn: Callable[[np.ndarray, np.ndarray], float], y: np.ndarray, proba: np.ndarray
) -> float:
    if proba.ndim == 1 or proba.shape[1] == 2:
        return fn(y == 1, proba if proba.ndim == 1 else proba[:, 1])
    return float(np.mean([fn(y == k, proba[:, k]) for k in range(proba.shape[1])]))


def auroc(y: np.ndarray, proba: np.ndarray) -> float:
    """Binary AUROC on ``proba[:, 1]``, or the one-vs-rest macro average for several classes."""
    return _one_vs_rest(binary_auroc, np.asarray(y), np.asarray(proba))


def auprc(y: np.ndarray, proba: np.ndarray) -> float:
    """Binary average precision, or the one-vs-rest macro average for several classes."""
    return _one_vs_rest(binary_average_precision, np.asarray(y), np.asarray(proba))


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Every metric of a probe from true labels ``[N]`` (0..K-1) and class probabilities ``[N, K]``."""
    proba = np.asarray(proba)
    cm = confusion(y, proba.argmax(axis=1), proba.shape[1])
    return {
        "kappa": cohen_kappa(cm),
        "balanced_accuracy": balanced_accuracy(cm),
        "f1_weighted": weighted_f1(cm),
        "auroc": auroc(y, proba),
        "auprc": auprc(y, proba),
        "accuracy": float(np.trace(cm) / cm.sum()),
    }
