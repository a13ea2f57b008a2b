"""Baselines that every downstream table shows: log band power + logistic regression, and EEGNet.

Band power: Welch's PSD (``scipy.signal.welch``, 2 s Hann windows or the epoch if shorter, half
overlap) per epoch and channel, integrated over the standard bands (delta 1-4, theta 4-8, alpha
8-13, beta 13-30, gamma 30-45 Hz; bands above Nyquist dropped) as a matrix product, then
``log10`` absolute power and ``log10`` relative power (band / sum of bands): ``2 x C x B``
features per epoch, standardised and fitted by scikit-learn's ``LogisticRegression`` (balanced
class weights).

EEGNet (Lawhern et al. 2018) comes from braindecode (``efm[baselines]``) and is trained from
scratch by :func:`efm.evaluate.adapt.train_classifier`, the loop fine-tuning uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BANDS = {
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 45.0),
}


def band_matrix(freqs: np.ndarray, sfreq: float) -> tuple[np.ndarray, list[str]]:
    """``[F, B]`` weights that sum a PSD over each band (times the bin width); band names."""
    df = float(freqs[1] - freqs[0]) if freqs.size > 1 else 1.0
    names = [b for b, (lo, _) in BANDS.items() if lo < sfreq / 2]
    m = np.stack(
        [
            ((freqs >= BANDS[b][0]) & (freqs < min(BANDS[b][1], sfreq / 2))).astype(float) * df
            for b in names
        ],
        axis=1,
    )
    return m, names


def bandpower_features(x: np.ndarray, sfreq: float) -> np.ndarray:
    """Features ``[N, 2 * C * B]``: log10 absolute then log10 relative band power.

    Parameters
    ----------
    x : ndarray, shape (N, C, T)
        Epochs (any unit; µV from task data).
    sfreq : float
        Sampling frequency.
    """
    from scipy.signal import welch

    x = np.asarray(x, dtype=np.float32)
    nper = min(x.shape[-1], int(round(2 * sfreq)))
    freqs, psd = welch(x, fs=sfreq, nperseg=nper, axis=-1)  # psd [N, C, F]
    m, _ = band_matrix(freqs, sfreq)
    power = psd @ m  # [N, C, B]
    rel = power / power.sum(axis=-1, keepdims=True).clip(1e-30)
    feats = np.concatenate([np.log10(power.clip(1e-30)), np.log10(rel.clip(1e-30))], axis=-1)
    return feats.reshape(len(x), -1)


def logistic(seed: int, C: float = 1.0) -> Any:
    """The probe every linear row uses: standardisation + L2 logistic regression, balanced."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        LogisticRegression(C=C, max_iter=2000, class_weight="balanced", random_state=seed),
    )


def fit_predict(
    feats: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int, C: float
) -> np.ndarray:
    """Class probabilities ``[len(test), K]`` of a logistic probe fitted on ``train``."""
    clf = logistic(seed, C)
    clf.fit(feats[train], y[train])
    proba = clf.predict_proba(feats[test])
    k = int(y.max()) + 1
    if proba.shape[1] != k:  # a class absent from training: zero probability
        full = np.zeros((len(test), k))
        full[:, clf.classes_] = proba
        proba = full
    return proba


def eegnet(n_chans: int, n_outputs: int, n_times: int, sfreq: float) -> Any:
    """EEGNet-8,2 from scratch: braindecode's when it imports, else efm's (efm.evaluate.eegnet)."""
    from efm.evaluate.eegnet import build

    return build(n_chans, n_outputs, n_times, sfreq)[0]
