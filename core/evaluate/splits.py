"""Patient- and subject-level splits, checked for leakage.

A probe's train and test sets never share a patient: every epoch of a patient goes to the same side.
:func:`check_no_leakage` is called on every split a probe uses and raises
:class:`LeakageError` (not an ``assert``, so it also runs under ``python -O``).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def patient_splits(
    groups: np.ndarray, y: np.ndarray, test_fraction: float, n: int, tries: int = 200
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` patient-level splits, each with every class on both sides.

    Splits hold distinct sets of test patients for as long as there are distinct valid sets (6
    patients with 2 held out have 15): split ``s`` draws patient permutations from
    ``default_rng(s)`` and takes the first valid set that splits ``0..s-1`` did not take. Once every
    set has been taken, splits repeat.

    Parameters
    ----------
    groups : array of str, shape (N,)
        Patient id per sample.
    y : array of int, shape (N,)
        Labels.
    test_fraction : float
        Fraction of the patients held out (at least one, at most all but one).
    n : int
        Number of splits.
    tries : int
        Permutations tried per split for a valid set that no earlier split took.

    Returns
    -------
    list of (train_idx, test_idx), ndarrays of int
    """
    groups, y = np.asarray(groups), np.asarray(y)
    patients, g_idx = np.unique(groups, return_inverse=True)
    if patients.size < 2:
        raise EfmError(
            f"a patient-level split needs at least 2 patients; the data has {patients.size}"
        )
    n_test = int(np.clip(round(patients.size * test_fraction), 1, patients.size - 1))
    classes, y_idx = np.unique(y, return_inverse=True)
    has = np.zeros((patients.size, classes.size), dtype=bool)  # [P, K]: patient p has class k
    has[g_idx, y_idx] = True
    taken: set[frozenset[int]] = set()
    out = []
    for s in range(n):
        rng, first, fresh = np.random.default_rng(s), None, None
        for _ in range(tries):
            test = rng.permutation(patients.size)[:n_test]
            is_test = np.zeros(patients.size, dtype=bool)
            is_test[test] = True
            if not (has[is_test].any(0).all() and has[~is_test].any(0).all()):
                continue
            key = frozenset(test.tolist())
            first = key if first is None else first
            if key not in taken:
                fresh = key
                break
        if first is None:
            counts = {str(c): int(has[:, k].sum()) for k, c in enumerate(classes)}
            raise EfmError(
                f"no patient-level split with every class on both sides after {tries} tries "
                f"({patients.size} patients; patients per class: {counts}); more patients are "
                "needed"
            )
        chosen = first if fresh is None else fresh  # every valid set taken: repeat
        taken.add(chosen)
        is_sample_test = np.isin(g_idx, sorted(chosen))
        train_idx, test_idx = np.flatnonzero(~is_sample_test), np.flatnonzero(is_sample_test)
        check_no_leakage(groups[train_idx], groups[test_idx])
        out.append((train_idx, test_idx))
    return out


def patient_split(
    groups: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, tries: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``seed`` of :func:`patient_splits`: ``(train_idx, test_idx)``."""
    return patient_splits(groups, y, test_fraction, seed + 1, tries)[-1]


# -- downstream tasks: subject-level folds with a validation carve, and the leakage audit ----------
@dataclass
class Fold:
    """Indices of one split: ``train``, ``val`` (from the training subjects only) and ``test``."""

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def subjects_line(subjects: np.ndarray, k: int = 5) -> str:
    """``"24 subjects (Subject00, Subject01, ... Subject23)"``: said before any split."""
    u = np.unique(np.asarray(subjects).astype(str))
    shown = ", ".join(u[:k].tolist()) + (f", ... {u[-1]}" if u.size > k else "")
    return f"{u.size} subject{'s' if u.size != 1 else ''} ({shown})"


def _carve_val(
    subjects: np.ndarray, y: np.ndarray, train: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Move about a fifth of the training subjects (at least one) to validation (none when the
    fold has a single training subject: the rows that need validation then say so)."""
    subs = np.unique(subjects[train])
    if subs.size < 2:
        return train, train[:0]
    n_val = int(np.clip(round(subs.size * 0.2), 1, subs.size - 1))
    classes = np.unique(y[train])
    for _ in range(100):  # prefer a carve that leaves every class on both sides
        val_subs = rng.permutation(subs)[:n_val]
        is_val = np.isin(subjects[train], val_subs)
        if np.array_equal(np.unique(y[train][is_val]), classes) and np.array_equal(
            np.unique(y[train][~is_val]), classes
        ):
            break
    return train[~is_val], train[is_val]


def folds(
    subjects: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    protocol: str = "kfold",
    n_folds: int = 5,
    seed: int = 0,
    test_subjects: list[str] | None = None,
    is_test: np.ndarray | None = None,
) -> list[Fold]:
    """Subject-level splits of a task's epochs.

    Parameters
    ----------
    subjects, y : array, shape (N,)
        Subject id and class index per epoch.
    protocol : str
        ``kfold`` (scikit-learn's ``StratifiedGroupKFold`` over subjects, shuffled by ``seed``),
        ``loso`` (``LeaveOneGroupOut``) or ``fixed`` (``test_subjects``, or the epochs marked
        ``is_test`` when the test set is a separate folder).
    seed : int
        Seeds the fold assignment and the validation carve.

    Raises
    ------
    EfmError
        Fewer subjects than folds, a test subject absent from the data, or a fold whose
        training or test side holds one class only.
    """
    from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold

    subjects, y = np.asarray(subjects).astype(str), np.asarray(y)
    u = np.unique(subjects)
    rng = np.random.default_rng(seed)
    idx = np.arange(y.size)
    if protocol == "fixed":
        if is_test is None:
            wanted = [str(s) for s in test_subjects or []]
            if not wanted:
                raise EfmError("split 'fixed' needs eval.test_subjects=[...] or eval.test_root=DIR")
            absent = [s for s in wanted if s not in set(u.tolist())]
            if absent:
                raise EfmError(
                    f"eval.test_subjects names {', '.join(absent)}, absent from the data "
                    f"({subjects_line(u)})"
                )
            is_test = np.isin(subjects, wanted)
        pairs = [(idx[~is_test], idx[is_test])]
    elif protocol == "loso":
        if u.size < 3:
            raise EfmError(f"leave-one-subject-out needs 3 or more subjects; the data has {u.size}")
        pairs = list(LeaveOneGroupOut().split(idx, y, subjects))
    elif protocol == "kfold":
        if u.size < n_folds:
            raise EfmError(
                f"the task has {subjects_line(u)}, fewer than eval.folds={n_folds}; give "
                f"eval.folds={max(u.size, 2)} or fewer, or eval.split=loso"
            )
        cv = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        pairs = list(cv.split(idx, y, subjects))
    else:
        raise EfmError(f"eval.split={protocol!r}; options: kfold, loso, fixed")
    out = []
    for k, (train, test) in enumerate(pairs):
        for side, part in (("training", train), ("test", test)):
            present = np.unique(y[part])
            if present.size < 2 and not (side == "test" and protocol == "loso"):
                raise EfmError(
                    f"fold {k} of {protocol}: the {side} subjects hold only class "
                    f"{[classes[i] for i in present]}; every fold needs 2 classes on each side "
                    f"(fewer folds, or more subjects of each class)"
                )
        tr, va = _carve_val(subjects, y, np.asarray(train), rng)
        out.append(Fold(f"{protocol}{k}", tr, va, np.asarray(test)))
    return out


def audit(
    folds_: list[Fold],
    subjects: np.ndarray,
    recordings: np.ndarray,
    sha256: np.ndarray,
    sessions: np.ndarray,
    pretraining: set[str] | None = None,
) -> dict[str, object]:
    """The leakage audit: nothing may be shared between train, validation and test.

    Subjects, recordings (by the SHA-256 of their files) and sessions (subject + session id) are
    compared between every pair of sides of every fold; anything shared raises
    :class:`LeakageError`. Test recordings that were in the pretraining corpus (``pretraining``:
    the SHA-256 of its files) are counted and flagged, not an error.
    """
    sess = np.char.add(np.char.add(np.asarray(subjects).astype(str), "/"), sessions.astype(str))
    has_session = np.asarray(sessions).astype(str) != ""
    keys = {"subjects": subjects, "recordings": sha256, "sessions": sess}
    problems = []
    for f in folds_:
        sides = {"train": f.train, "validation": f.val, "test": f.test}
        names = list(sides)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                for what, arr in keys.items():
                    ia, ib = sides[a], sides[b]
                    if what == "sessions":
                        ia, ib = ia[has_session[ia]], ib[has_session[ib]]
                    shared = np.intersect1d(np.asarray(arr)[ia], np.asarray(arr)[ib])
                    if shared.size:
                        problems.append(
                            f"fold {f.name}: {shared.size} {what} shared by {a} and {b} "
                            f"({', '.join(map(str, shared[:3]))})"
                        )
    if problems:
        raise LeakageError("leakage audit failed: " + "; ".join(problems[:5]))
    test_idx = np.unique(np.concatenate([f.test for f in folds_]))
    test_recs = np.unique(np.asarray(sha256)[test_idx])
    seen = sorted(set(test_recs.tolist()) & (pretraining or set()))
    by_sha = dict(zip(np.asarray(sha256).tolist(), np.asarray(recordings).tolist()))
    return {
        "folds_checked": len(folds_),
        "shared": {"subjects": 0, "recordings": 0, "sessions": 0},
        "test_recordings": int(test_recs.size),
        "test_in_pretraining": len(seen),
        "test_in_pretraining_ids": [by_sha[s] for s in seen[:20]],
        "pretraining_corpus_known": pretraining is not None,
    }
