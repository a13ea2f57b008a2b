"""Probe metrics against scikit-learn, on random data with ties and on edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from efm.evaluate.metrics import (
    auprc,
    auroc,
    balanced_accuracy,
    classification_metrics,
    cohen_kappa,
    confusion,
    weighted_f1,
)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn(n_classes, seed):
    rng = np.random.default_rng(seed)
    n = 257
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 1.5 * np.eye(n_classes)[y]
    logits = np.round(logits, 1)  # ties in the scores
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    cm = confusion(y, pred, n_classes)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=range(n_classes)))
    assert cohen_kappa(cm) == pytest.approx(skm.cohen_kappa_score(y, pred), abs=1e-12)
    assert balanced_accuracy(cm) == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-12)
    assert weighted_f1(cm) == pytest.approx(skm.f1_score(y, pred, average="weighted"), abs=1e-12)
    if n_classes == 2:
        ref_auc = skm.roc_auc_score(y, proba[:, 1])
        ref_ap = skm.average_precision_score(y, proba[:, 1])
    else:
        ref_auc = skm.roc_auc_score(y, proba, multi_class="ovr", average="macro")
        ref_ap = skm.average_precision_score(np.eye(n_classes)[y], proba, average="macro")
    assert auroc(y, proba) == pytest.approx(ref_auc, abs=1e-12)
    assert auprc(y, proba) == pytest.approx(ref_ap, abs=1e-12)
    all_ = classification_metrics(y, proba)
    assert all_["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))


def test_edge_cases():
    y = np.array([0, 0, 1, 1])
    perfect = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    m = classification_metrics(y, perfect)
    assert m["kappa"] == 1.0 and m["auroc"] == 1.0 and m["auprc"] == 1.0
    flat = np.full((4, 2), 0.5)  # all tied: AUROC one half, like sklearn
    assert auroc(y, flat) == pytest.approx(skm.roc_auc_score(y, flat[:, 1]))
    assert auprc(y, flat) == pytest.approx(skm.average_precision_score(y, flat[:, 1]))
    assert np.isnan(auroc(np.zeros(4, int), flat))
    # a class never predicted, and one absent from the truth (sklearn drops it from the mean)
    yt, yp = np.array([0, 0, 1, 1, 1]), np.array([0, 2, 1, 1, 0])
    cm = confusion(yt, yp, 3)
    with pytest.warns(UserWarning):
        ref = skm.balanced_accuracy_score(yt, yp)
    assert balanced_accuracy(cm) == pytest.approx(ref)
    assert weighted_f1(cm) == pytest.approx(skm.f1_score(yt, yp, average="weighted"))
    assert cohen_kappa(cm) == pytest.approx(skm.cohen_kappa_score(yt, yp))
