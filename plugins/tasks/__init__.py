"""efm's built-in downstream tasks, registered through the ``efm`` entry-point group like a third
party's (``efm_register_tasks``), and the small reader of the Bonn segments they need.

- ``eegmat-arithmetic``: PhysioNet "EEG During Mental Arithmetic Tasks" (Zyma et al. 2019),
  ``SubjectXX_1.edf`` rest vs ``SubjectXX_2.edf`` arithmetic, 5 s epochs, subject = ``SubjectXX``,
  ``ECG ECG`` and ``EEG A2-A1`` dropped.
- ``eegbci-imagery`` / ``eegbci-left-right``: PhysioNet EEG Motor Movement/Imagery (Schalk et al.
  2004), imagery runs 4/8/12, event-locked 4 s epochs from the EDF+ annotations (T0 rest,
  T1 left fist, T2 right fist), subject = the folder (``S001``); without ``data.root`` the data
  comes from ``mne.datasets.eegbci``.
- ``bonn-seizure``: Bonn segments (Andrzejak et al. 2001), set E (ictal) vs sets A-D; segments are
  not mapped to subjects, so every segment is its own group and no subject-level split is possible.
- ``demo-seizure``: seizure vs background on efm's embedded demo corpus (taxonomy labels).
"""

from __future__ import annotations

from dataclasses import dataclass

import efm

EEGBCI_RUNS = (4, 8, 12)


def _eegbci_fetch():
    """The EEGBCI imagery runs of every subject through ``mne.datasets.eegbci`` (downloads)."""
    from pathlib import Path

    import mne

    paths = mne.datasets.eegbci.load_data(list(range(1, 110)), list(EEGBCI_RUNS), update_path=False)
    return Path(paths[0]).parent.parent


def _demo_fetch():
    """The embedded demo corpus at its demo size (generated once, cached)."""
    from efm.data import demo

    return demo.ensure_corpus(6, 10.0, 0)


def tasks():
    """The built-in tasks, name -> :class:`efm.evaluate.task.Task`."""
    from efm.evaluate.task import Task

    eegbci = dict(
        labels="annotations",
        epochs="events",
        epoch_s=4.0,
        glob="**/*.edf",
        include=r"R(04|08|12)\.edf$",
        subject="parent",
        fetch=_eegbci_fetch,
    )
    return {
        "eegmat-arithmetic": Task(
            labels="file",
            classes=["rest", "arithmetic"],
            label_map={r"_1\.edf$": "rest", r"_2\.edf$": "arithmetic"},
            epoch_s=5.0,
            glob="**/*.edf",
            subject=r"(?P<subject>Subject\d+)",
            exclude=["ECG ECG", "EEG A2-A1"],
            description="EEGMAT rest (_1) vs mental arithmetic (_2), 5 s epochs",
        ),
        "eegbci-imagery": Task(
            classes=["rest", "imagery"],
            label_map={"T0": "rest", "T1": "imagery", "T2": "imagery"},
            description="EEGBCI runs 4/8/12: rest T0 vs imagery T1/T2, event-locked 4 s epochs",
            **eegbci,  # type: ignore[arg-type]
        ),
        "eegbci-left-right": Task(
            classes=["left", "right"],
            label_map={"T1": "left", "T2": "right"},
            description="EEGBCI runs 4/8/12: imagined left (T1) vs right (T2) fist, 4 s epochs",
            **eegbci,  # type: ignore[arg-type]
        ),
        "bonn-seizure": Task(
            labels="file",
            classes=["non-seizure", "seizure"],
            label_map={r"(^|/)E_S/": "seizure", r"(^|/)[A-D]_[A-Z]/": "non-seizure"},
            epoch_s=4.0,
            glob="**/*",
            include=r"(?i)\.txt$",  # set C's files end in .TXT
            reader="bonn",
            subject="recording",
            note="Bonn segments are not mapped to subjects: folds group epochs by segment, no "
            "subject-level split is possible, so scores are optimistic.",
            description="Bonn set E (ictal) vs A-D, 4 s epochs of single-channel segments",
        ),
        "demo-seizure": Task(
            labels="taxonomy",
            classes=["background", "seizure"],
            label_map={"seizure": "seizure"},
            background="background",
            epoch_s=5.0,
            min_overlap=0.5,
            glob="**/*.edf",
            subject=r"(?P<subject>[^/_.]+)[^/]*$",
            fetch=_demo_fetch,
            description="seizure vs background on the embedded demo corpus, 5 s epochs",
        ),
    }


@efm.hookimpl
def efm_register_tasks(register):
    """Register the built-in tasks."""
    for name, task in tasks().items():
        register(name, task, description=task.description)


@dataclass
class BonnConfig:
    """Bonn segments: one integer per line, 173.61 Hz, one channel."""

    sfreq: float = 173.61
    ch_type: str = "eeg"


def _build_bonn(**cfg):
    from efm_plugins.tasks.bonn import BonnReader

    return BonnReader(**cfg)


@efm.hookimpl
def efm_register_readers(register):
    """The Bonn ``.txt`` reader; it claims no extension (only tasks that name it use it)."""
    register("bonn", _build_bonn, BonnConfig, description="Bonn epilepsy segments (.txt)")
