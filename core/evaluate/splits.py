"""Patient-level splits, checked for leakage.

A probe's train and test sets never share a patient: every epoch of a patient goes to the same side.
:func:`check_no_leakage` is called on every split a probe uses and raises
:class:`LeakageError` (not an ``assert``, so it also runs under ``python -O``).
"""

from __future__ import annotations

import numpy as np

from efm.errors import EfmError


class LeakageError(EfmError):
    """A patient appears on both sides of a split."""


def check_no_leakage(train_groups: np.ndarray, test_groups: np.ndarray) -> None:
    """Raise :class:`LeakageError` if any patient id is in both sets."""
    shared = np.intersect1d(np.asarray(train_groups), np.asarray(test_groups))
    if shared.size:
        raise LeakageError(
            f"patient-level split leaks {shared.size} patient(s) into both train and test: "
            f"{', '.join(map(str, shared[:5]))}"
        )


def patient_split(
    groups: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, tries: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices by patient so that both sides hold every class.

    Parameters
    ----------
    groups : array of str, shape (N,)
        Patient id per sample.
    y : array of int, shape (N,)
        Labels.
    test_fraction : float
        Fraction of the patients held out (at least one, at most all but one).
    seed : int
        Seed of the patient permutation.
    tries : int
        Permutations tried until train and test both contain every class.

    Returns
    -------
    train_idx, test_idx : ndarray of int
    """
    groups, y = np.asarray(groups), np.asarray(y)
    patients = np.unique(groups)
    if patients.size < 2:
        raise EfmError(
            f"a patient-level split needs at least 2 patients; the data has {patients.size}"
        )
    n_test = int(np.clip(round(patients.size * test_fraction), 1, patients.size - 1))
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    for _ in range(tries):
        test_patients = rng.permutation(patients)[:n_test]
        is_test = np.isin(groups, test_patients)
        if np.array_equal(np.unique(y[is_test]), classes) and np.array_equal(
            np.unique(y[~is_test]), classes
        ):
            train_idx, test_idx = np.flatnonzero(~is_test), np.flatnonzero(is_test)
            check_no_leakage(groups[train_idx], groups[test_idx])
            return train_idx, test_idx
    counts = {str(c): int(np.unique(groups[y == c]).size) for c in classes}
    raise EfmError(
        f"no patient-level split with every class on both sides after {tries} tries "
        f"({patients.size} patients; patients per class: {counts}); more patients are needed"
    )
