"""Classification metrics, computed by scikit-learn.

Cohen's kappa (``cohen_kappa_score``), balanced accuracy (``balanced_accuracy_score``), weighted F1
(``f1_score(average="weighted")``), AUROC (``roc_auc_score``; one-vs-rest macro for several
classes) and AUPRC (``average_precision_score``; macro over one-vs-rest for several classes). The
confusion-matrix forms expand the counts back into label pairs (vectorised) and call the same
functions. Degenerate cases (one class in the truth) give NaN instead of an exception.
"""

from __future__ import annotations

import warnings

import numpy as np

# results.json names -> classification_metrics keys
NAMES = {
    "balanced_accuracy": "balanced_accuracy",
    "kappa": "kappa",
    "auroc": "auroc",
    "auprc": "auprc",
    "f1": "f1_weighted",
}


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``[n_classes, n_classes]``: rows are true classes, columns predictions."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(
        np.asarray(y_true, dtype=np.int64),
        np.asarray(y_pred, dtype=np.int64),
        labels=np.arange(n_classes),
    )


def _pairs(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_pred)`` with the counts of a confusion matrix."""
    cm = np.asarray(cm, dtype=np.int64)
    k = cm.shape[0]
    flat = np.arange(k * k)
    idx = np.repeat(flat, cm.ravel())
    return idx // k, idx % k


def _quiet(fn, *args, **kw) -> float:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(fn(*args, **kw))
        except ValueError:  # one class only
            return float("nan")


def cohen_kappa(cm: np.ndarray) -> float:
    """Cohen's kappa from a confusion matrix (NaN when chance agreement is 1)."""
    from sklearn.metrics import cohen_kappa_score

    t, p = _pairs(cm)
    return _quiet(cohen_kappa_score, t, p)


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes that occur in the truth."""
    from sklearn.metrics import balanced_accuracy_score

    t, p = _pairs(cm)
    return _quiet(balanced_accuracy_score, t, p)


def weighted_f1(cm: np.ndarray) -> float:
    """Per-class F1 averaged with the true-class supports as weights."""
    from sklearn.metrics import f1_score

    t, p = _pairs(cm)
    return _quiet(f1_score, t, p, average="weighted", zero_division=0)


def auroc(y: np.ndarray, proba: np.ndarray) -> float:
    """Binary AUROC on ``proba[:, 1]``, or the one-vs-rest macro average for several classes."""
    from sklearn.metrics import roc_auc_score

    y, proba = np.asarray(y), np.asarray(proba)
    if proba.ndim == 1 or proba.shape[1] == 2:
        return _quiet(roc_auc_score, y == 1, proba if proba.ndim == 1 else proba[:, 1])
    k = proba.shape[1]
    if np.unique(y).size < k:  # sklearn's ovr needs every class in the truth
        return float(np.nanmean([auroc(y == c, proba[:, c]) for c in range(k)]))
    sums = proba.sum(axis=1, keepdims=True)
    p = proba if np.allclose(sums, 1.0) else proba / sums  # sklearn's ovr needs rows summing to 1
    return _quiet(roc_auc_score, y, p, multi_class="ovr", average="macro")


def auprc(y: np.ndarray, proba: np.ndarray) -> float:
    """Binary average precision, or the one-vs-rest macro average for several classes."""
    from sklearn.metrics import average_precision_score

    y, proba = np.asarray(y), np.asarray(proba)
    if proba.ndim == 1 or proba.shape[1] == 2:
        if not np.any(y == 1):
            return float("nan")
        return _quiet(average_precision_score, y == 1, proba if proba.ndim == 1 else proba[:, 1])
    onehot = np.eye(proba.shape[1])[y]
    return _quiet(average_precision_score, onehot, proba, average="macro")


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Every metric from true labels ``[N]`` (0..K-1) and class probabilities ``[N, K]``."""
    proba = np.asarray(proba)
    cm = confusion(y, proba.argmax(axis=1), proba.shape[1])
    return {
        "kappa": cohen_kappa(cm),
        "balanced_accuracy": balanced_accuracy(cm),
        "f1_weighted": weighted_f1(cm),
        "auroc": auroc(y, proba),
        "auprc": auprc(y, proba),
        "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
    }
